"""Passages: a long message cut into pieces a small embedding model reads whole.

The local model reads 256 word pieces; a passage of at most `max_words` words
(60 by default, well inside that) keeps each piece's meaning in its vector and
a search hit short enough to hand a language model.
"""

import re

_PARAGRAPH = re.compile(r"\n\s*\n+")
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+|\n+")


def _pieces(text: str, max_words: int) -> list[list[str]]:
    """Sentences as lists of words, none longer than max_words."""
    pieces = []
    for paragraph in _PARAGRAPH.split(text):
        for sentence in _SENTENCE.split(paragraph):
            words = sentence.split()
            for start in range(0, len(words), max_words):
                if words[start : start + max_words]:
                    pieces.append(words[start : start + max_words])
        # A paragraph's end is a place to cut.
        pieces.append([])
    return pieces


def passages_of(text: str, *, max_words: int) -> list[str]:
    """The message's passages, in order: whole sentences packed up to max_words
    words, cut at paragraph ends; the whole message when it is short."""
    words = text.split()
    if len(words) <= max_words:
        return [" ".join(words)] if words else []
    passages: list[str] = []
    current: list[str] = []
    for piece in _pieces(text, max_words):
        if not piece:
            # Close a passage at a paragraph's end once it is half full.
            if len(current) >= max_words // 2:
                passages.append(" ".join(current))
                current = []
            continue
        if current and len(current) + len(piece) > max_words:
            passages.append(" ".join(current))
            current = []
        current.extend(piece)
    if current:
        passages.append(" ".join(current))
    return passages
