"""Recall on BEAM through the HTTP API, on the embedded defaults (no LLM).

    python bench/beam.py PATH_TO_BEAM_DIR [--data-dir DIR] [--keep-db-url]
                         [--limit-conversations N]

PATH_TO_BEAM_DIR holds one folder per conversation, each with chat.json and
probing_questions.json. For each conversation: a fresh end user, every message
imported oldest first through POST /api/v1/memories/import (its role, its id as
the client message id, dated from its batch's time anchor), in as few requests as
the server's limits allow; then one POST /api/v1/memories/search per question
with evidence (topK 10). recall@k is the share of a question's evidence messages
that the first k hits came from (their provenance). The same questions are also
run against BM25 over the raw messages, all of them and the user's only.
Prints recall per question type and overall, the words the ten hits carry,
ingestion throughput, search latency and memories stored per conversation.
"""

import argparse
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import machine  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
# User messages end with the generator's "->-> session,turn" marker: not words the
# user said, and every user message would share them.
MARKER = re.compile(r"\s*->->\s*\d+\s*,\s*\d+\s*$")
WORD = re.compile(r"[a-z0-9]+")
# A chat without any time anchor still needs a sentAt for each message.
FALLBACK_START = datetime(2024, 1, 1, 9, tzinfo=UTC)
# The body size is estimated with ASCII escapes and spaced separators, which is
# never smaller than what the client sends; the margin covers the rest.
BODY_MARGIN = 0.95
METHODS = ("service", "bm25-all", "bm25-user")
# NLTK's English list, the forms a [a-z0-9]+ tokeniser can produce.
STOP_WORDS = frozenset([
    "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "your",
    "yours", "yourself", "yourselves", "he", "him", "his", "himself", "she", "her",
    "hers", "herself", "it", "its", "itself", "they", "them", "their", "theirs",
    "themselves", "what", "which", "who", "whom", "this", "that", "these", "those",
    "am", "is", "are", "was", "were", "be", "been", "being", "have", "has", "had",
    "having", "do", "does", "did", "doing", "a", "an", "the", "and", "but", "if", "or",
    "because", "as", "until", "while", "of", "at", "by", "for", "with", "about",
    "against", "between", "into", "through", "during", "before", "after", "above",
    "below", "to", "from", "up", "down", "in", "out", "on", "off", "over", "under",
    "again", "further", "then", "once", "here", "there", "when", "where", "why", "how",
    "all", "any", "both", "each", "few", "more", "most", "other", "some", "such", "no",
    "nor", "not", "only", "own", "same", "so", "than", "too", "very", "s", "t", "can",
    "will", "just", "don", "should", "now", "d", "ll", "m", "o", "re", "ve", "y",
    "ain", "aren", "couldn", "didn", "doesn", "hadn", "hasn", "haven", "isn", "ma",
    "mightn", "mustn", "needn", "shan", "shouldn", "wasn", "weren", "won", "wouldn"
])  # fmt: skip


def configure(data_dir: str, keep_db_url: bool) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ltm_project.settings")
    os.environ["LTM_SECRET_KEY"] = "bench-only-secret"  # noqa: S105
    os.environ["LTM_DATA_DIR"] = data_dir
    Path(data_dir, "static").mkdir(exist_ok=True)
    os.environ["LTM_RATE_LIMIT"] = ""
    os.environ["LTM_ALLOWED_HOSTS"] = "testserver"
    # The in-process client speaks plain HTTP; no TLS proxy redirects it.
    os.environ["LTM_SSL_REDIRECT"] = "false"
    if not keep_db_url:
        os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def conversation_dirs(root: Path, limit: int) -> list[Path]:
    found = [path for path in root.iterdir() if (path / "chat.json").is_file()]
    # Numbered folders in numeric order (2 before 10), any others after them.
    found.sort(
        key=lambda path: (
            (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)
        )
    )
    return found[:limit] if limit else found


def chat_messages(chat: list[dict]) -> list[dict]:
    """The conversation's messages, oldest first, marker stripped and dated."""
    messages = []
    clock = None
    for batch in chat:
        batch_messages = [message for turn in batch["turns"] for message in turn]
        if not batch_messages:
            continue
        anchor = batch_messages[0].get("time_anchor") or batch.get("time_anchor")
        if anchor:
            clock = datetime.strptime(anchor, "%B-%d-%Y").replace(hour=9, tzinfo=UTC)
        for message in batch_messages:
            clock = clock or FALLBACK_START
            messages.append(
                {
                    "id": str(message["id"]),
                    "role": message["role"],
                    "text": MARKER.sub("", message["content"]),
                    "sent_at": clock,
                }
            )
            clock += timedelta(minutes=1)
    return messages


def flatten(value) -> list[str]:
    if isinstance(value, dict):
        return [item for inner in value.values() for item in flatten(inner)]
    if isinstance(value, list | tuple):
        return [item for inner in value for item in flatten(inner)]
    return [] if value is None else [str(value)]


def evidence_ids(question: dict) -> set[str]:
    # Evidence lists repeat ids (e.g. [66, 66]): a message counts once.
    return set(flatten(question.get("source_chat_ids")))


def tokens(text: str) -> list[str]:
    return [word for word in WORD.findall(text.lower()) if word not in STOP_WORDS]


class BM25:
    """Okapi BM25 with rank_bm25's BM25Okapi weighting, so figures compare."""

    def __init__(
        self,
        documents: list[list[str]],
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
    ):
        self.k1, self.b = k1, b
        self.lengths = [len(document) for document in documents]
        self.average_length = sum(self.lengths) / max(1, len(documents))
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for index, document in enumerate(documents):
            for word, count in Counter(document).items():
                self.postings[word].append((index, count))
        size = len(documents)
        self.idf = {
            word: math.log(size - len(hits) + 0.5) - math.log(len(hits) + 0.5)
            for word, hits in self.postings.items()
        }
        # A word in more than half the documents would weigh negatively; like
        # rank_bm25, give it a small share of the average weight instead.
        floor = epsilon * sum(self.idf.values()) / max(1, len(self.idf))
        for word, idf in self.idf.items():
            if idf < 0:
                self.idf[word] = floor

    def ranking(self, query: list[str]) -> list[int]:
        scores = [0.0] * len(self.lengths)
        for word in query:
            idf = self.idf.get(word, 0.0)
            for index, count in self.postings.get(word, ()):
                norm = 1 - self.b + self.b * self.lengths[index] / self.average_length
                scores[index] += idf * count * (self.k1 + 1) / (count + self.k1 * norm)
        return sorted(range(len(scores)), key=lambda index: (-scores[index], index))


def import_requests(
    user_id: str, messages: list[dict], max_messages: int, max_bytes: int
) -> list[list[dict]]:
    """Split the messages into bodies within the server's count and size limits.

    A message too large for a body of its own is still sent alone, so the
    server's refusal shows in the report.
    """
    empty = len(json.dumps({"userId": user_id, "messages": []}))
    batches: list[list[dict]] = []
    current: list[dict] = []
    size = empty
    for message in messages:
        extra = len(json.dumps(message)) + 2
        if current and (len(current) >= max_messages or size + extra > max_bytes):
            batches.append(current)
            current, size = [], empty
        current.append(message)
        size += extra
    if current:
        batches.append(current)
    return batches


def incomplete(response) -> bool:
    """Whether an import stopped when its request's time ran out (the rest of
    the batch is stored by sending it again)."""
    return (
        response.status_code == 503
        and response.json()["error"]["code"] == "import_incomplete"
    )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:  # noqa: C901, PLR0912, PLR0915 - a linear report
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a folder of BEAM conversations (<n>/chat.json)")
    parser.add_argument("--data-dir", default="")
    parser.add_argument(
        "--keep-db-url",
        action="store_true",
        help="use DATABASE_URL instead of a fresh SQLite file",
    )
    parser.add_argument(
        "--limit-conversations",
        type=int,
        default=0,
        metavar="N",
        help="only the first N conversations",
    )
    args = parser.parse_args()
    configure(args.data_dir or tempfile.mkdtemp(prefix="ltm-beam-"), args.keep_db_url)

    from django.conf import settings
    from django.db.models import Count
    from rest_framework.test import APIClient

    from accounts.services import tenant_create, token_issue
    from memories.models import Memory
    from memories.providers.embeddings import get_embedder

    max_messages = settings.LTM_IMPORT_MAX_MESSAGES
    max_chars = getattr(
        settings, "LTM_IMPORT_MAX_MESSAGE_CHARS", settings.LTM_MAX_MESSAGE_CHARS
    )
    # LTM_MAX_REQUEST_BYTES reaches Django as DATA_UPLOAD_MAX_MEMORY_SIZE unless
    # settings name it (or an import-specific limit) themselves.
    max_bytes = getattr(
        settings,
        "LTM_MAX_IMPORT_BYTES",
        getattr(
            settings, "LTM_MAX_REQUEST_BYTES", settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        ),
    )
    body_budget = int(max_bytes * BODY_MARGIN)
    memory_kinds = getattr(Memory, "kind", None) is not None

    folders = conversation_dirs(Path(args.path), args.limit_conversations)
    from accounts.models import Tenant

    # With --data-dir, a second run reuses the first's imports (skipped by their
    # ids) and measures search alone, e.g. under other search settings.
    tenant = Tenant.objects.filter(slug="beam").first() or tenant_create(slug="beam")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(tenant=tenant).secret}")
    get_embedder().embed(["warm up"])
    # The first request of a process loads the URLs and the API's modules once;
    # the figures are a warm service's.
    client.post(
        "/api/v1/memories/search",
        {"userId": "warm-up", "query": "warm up"},
        format="json",
    )

    recall = defaultdict(list)  # (method, type, k) -> [recall]
    types: list[str] = []
    words_at_10: list[int] = []
    hit_kinds: Counter = Counter()
    latencies: list[float] = []
    messages_total, requests_total, truncated, import_seconds = 0, 0, 0, 0.0
    longest_import, resumed = 0.0, 0
    per_conversation = []
    for folder in folders:
        user_id = f"beam-{folder.name}"
        messages = chat_messages(json.loads((folder / "chat.json").read_text()))
        outgoing = []
        for message in messages:
            # The server trims the text before checking its length.
            text = message["text"].strip()
            if len(text) > max_chars:
                text = text[:max_chars]
                truncated += 1
            outgoing.append(
                {
                    "role": message["role"],
                    "text": text,
                    "sentAt": message["sent_at"].isoformat(),
                    "clientMessageId": message["id"],
                }
            )
        batches = import_requests(user_id, outgoing, max_messages, body_budget)
        for batch in batches:
            while True:
                started = time.perf_counter()
                response = client.post(
                    "/api/v1/memories/import",
                    {"userId": user_id, "messages": batch},
                    format="json",
                )
                import_seconds += time.perf_counter() - started
                longest_import = max(longest_import, time.perf_counter() - started)
                if not incomplete(response):
                    break
                # The request's time ran out: the same batch goes on.
                resumed += 1
            assert response.status_code == 200, (
                f"import of {len(batch)} messages for {user_id}: "
                f"{response.status_code} {response.content.decode(errors='replace')}"
            )
        messages_total += len(messages)
        requests_total += len(batches)

        stored_rows = Memory.objects.filter(tenant=tenant, user_id=user_id)
        stored = stored_rows.count()
        stored_kinds = (
            # The model's default ordering would split the groups.
            dict(stored_rows.order_by().values_list("kind").annotate(n=Count("id")))
            if memory_kinds
            else {}
        )

        users = [message for message in messages if message["role"] == "user"]
        baselines = {
            "bm25-all": (
                messages,
                BM25([tokens(message["text"]) for message in messages]),
            ),
            "bm25-user": (users, BM25([tokens(message["text"]) for message in users])),
        }
        questions = json.loads((folder / "probing_questions.json").read_text())
        scored = 0
        for question_type, entries in questions.items():
            for question in entries:
                evidence = evidence_ids(question)
                if not evidence:
                    continue
                scored += 1
                if question_type not in types:
                    types.append(question_type)
                started = time.perf_counter()
                response = client.post(
                    "/api/v1/memories/search",
                    {"userId": user_id, "query": question["question"], "topK": 10},
                    format="json",
                )
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.content
                hits = response.json()["hits"]
                words_at_10.append(sum(len(hit["text"].split()) for hit in hits))
                hit_kinds.update(hit["kind"] for hit in hits if "kind" in hit)
                for k in (5, 10):
                    found = {
                        str(source["clientMessageId"])
                        for hit in hits[:k]
                        for source in hit.get("provenance", [])
                    }
                    recall[("service", question_type, k)].append(
                        len(found & evidence) / len(evidence)
                    )
                query = tokens(question["question"])
                for method, (documents, index) in baselines.items():
                    ranking = index.ranking(query)
                    for k in (5, 10):
                        found = {documents[i]["id"] for i in ranking[:k]}
                        recall[(method, question_type, k)].append(
                            len(found & evidence) / len(evidence)
                        )
        per_conversation.append(
            {
                "user": user_id,
                "messages": len(messages),
                "from_user": len(users),
                "requests": len(batches),
                "stored": stored,
                "kinds": stored_kinds,
                "scored": scored,
            }
        )

    print("BEAM recall through the HTTP API (embedded defaults, no language model)")
    print(f"folder: {args.path} ({len(folders)} conversations)")
    print(
        f"machine: {machine.describe()}; database: "
        f"{__import__('django.db').db.connection.vendor}"
    )
    print(
        f"server limits: {max_messages} messages and {max_bytes} bytes per import, "
        f"{max_chars} characters per message"
    )
    print(f"messages truncated to the server's limit: {truncated}")
    print()

    def row(name: str, selected: list[str]) -> str:
        cells = []
        for method in METHODS:
            for k in (5, 10):
                values = [
                    value
                    for question_type in selected
                    for value in recall[(method, question_type, k)]
                ]
                cells.append(f"{statistics.mean(values):>7.3f}")
            cells.append(" ")
        count = sum(len(recall[("service", t, 5)]) for t in selected)
        return f"{name:<26}{count:>5} " + "".join(cells).rstrip()

    print(f"{'':<26}{'':>5} {'service':>14} {'bm25 all':>15} {'bm25 user':>15}")
    print(f"{'question type':<26}{'n':>5} " + " ".join(["    r@5   r@10"] * 3))
    for question_type in types:
        print(row(question_type, [question_type]))
    print(row("overall", types))
    print()
    print(f"questions scored: {len(latencies)}")
    print(
        f"words in the 10 hits returned: mean {statistics.mean(words_at_10):.1f}, "
        f"max {max(words_at_10)}"
    )
    if hit_kinds:
        print(
            "hits of each kind in the top 10, per question: "
            + ", ".join(
                f"{kind} {count / len(latencies):.2f}"
                for kind, count in sorted(hit_kinds.items())
            )
        )
    print(
        f"ingestion: {messages_total} messages in {requests_total} requests, "
        f"{import_seconds:.2f} s = {messages_total / import_seconds:.1f} messages/s; "
        f"longest request {longest_import:.1f} s, {resumed} resumed after "
        "import_incomplete"
    )
    print(
        f"search latency over {len(latencies)} requests: "
        f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1000:.1f} ms"
    )
    for line in per_conversation:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(line["kinds"].items()))
        print(
            f"{line['user']}: {line['messages']} messages ({line['from_user']} from "
            f"the user) in {line['requests']} requests, {line['stored']} memories "
            f"stored{f' ({kinds})' if kinds else ''}, {line['scored']} questions scored"
        )


if __name__ == "__main__":
    main()
