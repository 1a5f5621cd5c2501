"""The Python SDK (clients/python) against the live service over real HTTP:
every operation, sync and async, its errors, retries and resumed imports."""

import asyncio
import io
import json
import re
from pathlib import Path

import pytest
from ltm_client import (
    ERRORS_BY_CODE,
    Client,
    EndUser,
    ImportMessage,
    InvalidInput,
    InvalidToken,
    LTMError,
    Memory,
    MemoryDetail,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
)
from ltm_client._core import GENERATED_ID_PREFIX, import_batches
from ltm_client.errors import error_class

from memories.models import Memory as MemoryRow
from memories.models import Message
from tests.helpers import database_rows_containing


def _messages(texts, *, ids=False):
    return [
        ImportMessage(
            text=text,
            sent_at=f"2024-03-01T10:{n:02d}:00Z",
            client_message_id=f"c{n}" if ids else "",
        )
        for n, text in enumerate(texts)
    ]


def test_message_search_get_and_delete(client):
    sent = client.message("u1", "I moved to Lisbon last month.")
    assert sent.user_id == "u1"
    assert [m.text for m in sent.added] == ["I moved to Lisbon last month."]
    answer = client.message("u1", "Where do I live?")
    assert "Lisbon" in answer.reply
    assert any("Lisbon" in m.text for m in answer.recalled)

    hits = client.search("u1", "Lisbon", top_k=3, kind="fact").hits
    assert hits[0].text == "I moved to Lisbon last month."
    assert hits[0].provenance[0].message_id == sent.message_id

    detail = client.get_memory(hits[0].id)
    assert isinstance(detail, MemoryDetail)
    assert (detail.user_id, detail.history[0].action) == ("u1", "add")

    assert client.delete_memory(hits[0].id) is None
    assert client.delete_memory(hits[0].id) is None  # again: a no-op
    with pytest.raises(NotFound) as raised:
        client.get_memory(hits[0].id)
    assert (raised.value.code, raised.value.status) == ("not_found", 404)


def test_forget(client):
    client.message("u1", "I am allergic to peanuts.")
    forgotten = client.forget("u1", "Forget that I am allergic to peanuts.")
    assert forgotten.forgotten_count >= 1
    assert database_rows_containing("peanuts") == []


def test_listing_walks_every_page_lazily(client, recorder):
    client.import_messages(
        "u1", _messages([f"Could you tell me about topic {n}?" for n in range(25)])
    )
    recorder.statuses.clear()
    walk = client.memories("u1", page_size=10)
    first = next(walk)
    assert isinstance(first, Memory)
    assert len(recorder.statuses) == 1  # one page fetched so far
    rest = list(walk)
    assert len(recorder.statuses) == 3
    expected = MemoryRow.objects.filter(user_id="u1").order_by("pk")
    assert [m.id for m in [first, *rest]] == [str(m.vector_key) for m in expected]
    assert [m.kind for m in client.memories("u1", kind="fact")] == []


def test_users_export_and_erasure(client, tmp_path):
    for user_id in ("zed", "amy/1", "bob"):
        client.message(user_id, "I live in Lisbon.")
    users = list(client.users(page_size=2))
    assert [user.user_id for user in users] == ["amy/1", "bob", "zed"]
    assert isinstance(users[0], EndUser)
    assert users[0].messages == 1

    export = client.export_user("amy/1")
    assert (export.format, export.version, export.user_id) == (
        "ltm-user-export",
        1,
        "amy/1",
    )
    assert any(m["text"] == "I live in Lisbon." for m in export.memories)
    streamed = io.BytesIO()
    assert client.export_user_to("amy/1", streamed) > 0
    assert json.loads(streamed.getvalue())["userId"] == "amy/1"

    erased = client.erase_user("amy/1")
    assert erased.verified
    assert erased.remaining.vectors == 0
    assert erased.memories_erased == 2
    again = client.erase_user("amy/1")
    assert (again.verified, again.memories_erased) == (True, 0)
    with pytest.raises(NotFound):
        client.export_user("amy/1")


def test_the_async_client_does_the_same(make_async_client):
    async def run():
        async with make_async_client() as client:
            sent = await client.message("u1", "I moved to Lisbon last month.")
            imported = await client.import_messages(
                "u1", _messages(["I own a red bike.", "Could you help?"])
            )
            hits = (await client.search("u1", "bike", top_k=2)).hits
            detail = await client.get_memory(hits[0].id)
            memories = [m async for m in client.memories("u1", page_size=2)]
            users = [u async for u in client.users(page_size=1)]
            export = await client.export_user("u1")
            streamed = io.BytesIO()
            await client.export_user_to("u1", streamed)
            forgotten = await client.forget("u1", "Forget that I own a red bike.")
            await client.delete_memory(sent.added[0].id)
            erased = await client.erase_user("u1")
            with pytest.raises(InvalidInput):
                await client.message("u1", "")
            return locals()

    done = asyncio.run(run())
    assert done["imported"].imported == 2
    assert "bike" in done["detail"].text
    assert len(done["memories"]) == 5  # a fact and an episode, 2 episodes, a fact
    assert [u.user_id for u in done["users"]] == ["u1"]
    assert len(done["export"].messages) == 3
    assert json.loads(done["streamed"].getvalue())["userId"] == "u1"
    assert done["forgotten"].forgotten_count >= 1
    assert done["erased"].verified


def test_an_error_code_is_its_exception_with_code_message_and_details(client):
    with pytest.raises(InvalidInput) as raised:
        client.message(" padded", "Hello")
    error = raised.value
    assert isinstance(error, LTMError)
    assert (error.code, error.status) == ("invalid_input", 400)
    assert error.details["fields"]["userId"][0]["code"] == "whitespace"
    assert "userId" in error.message


def test_every_error_code_of_the_readme_has_its_exception_class():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("**Errors**") : readme.index("**Limits**")]
    rows = re.findall(r"^\| (\d{3}) \| (.+?) \|", table, flags=re.MULTILINE)
    codes = {
        (int(status), code)
        for status, cell in rows
        for code in re.findall(r"`(\w+)`", cell)
    }
    assert len(codes) >= 20
    for status, code in codes:
        cls = ERRORS_BY_CODE[code]
        assert issubclass(cls, LTMError)
        assert cls.code == code
        assert error_class(code, status) is cls
    assert error_class("some_new_code", 503) is ServiceUnavailable
    assert error_class("some_new_code", 418) is LTMError


def test_a_wrong_token_is_invalid_token(live_server):
    with (
        Client("ltm_wrong", live_server.url) as client,
        pytest.raises(InvalidToken) as raised,
    ):
        client.message("u1", "Hello")
    assert raised.value.status == 401


def test_the_token_and_address_come_from_the_environment(
    live_server, token, monkeypatch
):
    monkeypatch.setenv("LTM_API_KEY", token)
    monkeypatch.setenv("LTM_BASE_URL", live_server.url)
    with Client() as client:
        assert client.message("u1", "Hello there.").user_id == "u1"
    monkeypatch.delenv("LTM_API_KEY")
    with pytest.raises(ValueError, match="LTM_API_KEY"):
        Client()


def test_a_429_is_retried_after_the_time_the_server_says(client, recorder, settings):
    settings.LTM_RATE_LIMIT = "2/s"
    for n in range(5):
        client.message("u1", f"Could you tell me a joke number {n}?")
    assert 429 in recorder.statuses
    assert recorder.statuses.count(200) == 5


def test_retries_are_bounded(live_server, token, settings):
    settings.LTM_RATE_LIMIT = "1/min"
    with Client(
        token,
        live_server.url,
        retry=RetryPolicy(max_attempts=2, backoff=0.01, max_total=1.0),
    ) as client:
        client.message("u1", "Hello.")
        with pytest.raises(RateLimited) as raised:
            client.message("u1", "Hello again.")
    assert raised.value.retry_after is not None


@pytest.mark.parametrize("with_ids", [True, False])
def test_an_import_that_runs_out_of_time_is_resumed(
    client, recorder, settings, with_ids
):
    # One message a part and no time for a second part: one message a request.
    settings.LTM_IMPORT_PART_PASSAGES = 1
    settings.LTM_IMPORT_TIME_BUDGET_SECONDS = 1e-6
    texts = [f"I planted a {fruit} tree." for fruit in ("plum", "fig", "pear", "lime")]
    result = client.import_messages(
        "u1",
        _messages(texts, ids=with_ids),
        generate_client_message_ids=with_ids,
    )
    assert result.imported == 4
    assert recorder.statuses == [503, 503, 503, 200]
    assert Message.objects.filter(user_id="u1").count() == 4
    assert sorted(Message.objects.values_list("text", flat=True)) == sorted(texts)
    if with_ids:
        assert set(result.message_ids) == {"c0", "c1", "c2", "c3"}


def test_generated_client_message_ids_make_an_import_idempotent(client):
    batch = _messages(["I own a kayak.", "I own a canoe."])
    first = client.import_messages("u1", batch)
    again = client.import_messages("u1", batch)
    assert first.imported == 2
    assert (again.imported, len(again.skipped)) == (0, 2)
    ids = Message.objects.values_list("client_message_id", flat=True)
    assert all(i.startswith(GENERATED_ID_PREFIX) for i in ids)
    assert set(first.message_ids) == set(ids)


def test_an_import_is_split_within_the_count_and_byte_limits(
    live_server, token, recorder
):
    import httpx

    http = httpx.Client(event_hooks={"response": [recorder.sync]})
    with Client(
        token,
        live_server.url,
        import_max_messages=3,
        import_max_bytes=1_000,
        http_client=http,
    ) as client:
        texts = [f"Message number {n} about nothing much." for n in range(7)]
        texts.append("A long one. " * 60)  # 720 characters: a batch of its own
        result = client.import_messages("u1", _messages(texts))
    assert result.imported == 8
    assert result.requests == len(recorder.statuses) == 4  # 3 + 3 + 1 + 1


def test_batches_keep_order_and_limits():
    messages = [{"text": "x" * size} for size in (10, 10, 10, 500, 10)]
    batches = import_batches("u", messages, max_messages=2, max_bytes=300)
    assert [len(batch) for batch in batches] == [2, 1, 1, 1]
    assert [m for batch in batches for m in batch] == messages
    for batch in batches[:2]:
        body = json.dumps({"userId": "u", "messages": batch}, separators=(",", ":"))
        assert len(body.encode()) <= 300
