"""What the pipeline embeds, and one embedding call per batch of texts."""

import numpy as np
from django.conf import settings

from memories.extraction.passages import passages_of
from memories.providers.embeddings import get_embedder
from memories.text import words


def embedded_text(speaker: str, text: str) -> str:
    # The speaker's name is part of what is embedded: questions name people.
    return f"{speaker}: {text}" if speaker else text


def message_passages(text: str) -> list[str]:
    return passages_of(text, max_words=settings.LTM_PASSAGE_WORDS)


def embed_all(texts: list[str]) -> np.ndarray:
    """Vectors of texts in one call; a text given twice is embedded once (a
    short message and the one fact it states are often the same words)."""
    unique = list(dict.fromkeys(texts))
    if not unique:
        return np.zeros((0, 0), dtype=np.float32)
    vectors = get_embedder().embed(unique)
    row = {text: index for index, text in enumerate(unique)}
    return np.stack([vectors[row[text]] for text in texts])


# Share of a message's words its facts must hold for the message's vector to
# be made from theirs.
FACTS_COVER_MESSAGE = 0.8


def embed_messages(
    items: list[tuple[str, list[str], list[str]]],
) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """Vectors of each message's passages and facts, given (speaker, passages,
    facts) per message, in one embedding call.

    A one-passage message whose facts hold nearly all of its words is not
    embedded again: its vector is the mean of its facts' vectors, weighted by
    their words (the model itself mean-pools word vectors). In a conversation
    between people most messages are such statements, and this halves the cost
    of keeping them as episodes.
    """
    texts: list[str] = []
    plans = []
    for speaker, passages, facts in items:
        fact_rows = [len(texts) + i for i in range(len(facts))]
        texts.extend(embedded_text(speaker, fact) for fact in facts)
        fact_words = sum(len(words(fact)) for fact in facts)
        derived = (
            len(passages) == 1
            and facts
            and fact_words >= FACTS_COVER_MESSAGE * len(words(passages[0]))
        )
        if derived:
            passage_rows = None
        else:
            passage_rows = [len(texts) + i for i in range(len(passages))]
            texts.extend(embedded_text(speaker, passage) for passage in passages)
        plans.append((facts, fact_rows, passage_rows))
    vectors = embed_all(texts)
    passage_vectors, fact_vectors = [], []
    for facts, fact_rows, passage_rows in plans:
        fact_vectors.append([vectors[row] for row in fact_rows])
        if passage_rows is None:
            weights = np.array([len(words(fact)) for fact in facts], dtype=np.float32)
            mean = (vectors[fact_rows] * weights[:, None]).sum(axis=0)
            passage_vectors.append([mean / (np.linalg.norm(mean) or 1.0)])
        else:
            passage_vectors.append([vectors[row] for row in passage_rows])
    return passage_vectors, fact_vectors
