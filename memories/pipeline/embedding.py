"""What the pipeline embeds, and one embedding call per batch of texts."""

import numpy as np
from django.conf import settings

from memories.extraction.passages import passages_of
from memories.providers.embeddings import get_embedder


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
