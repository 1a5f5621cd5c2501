"""Words: the one definition of stop words, content words, stems, the values a
statement names, and the digest that makes two copies of a text the same."""

import hashlib
import re

from memories.extraction.timeexpr import MONTHS, WEEKDAYS

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "i",
        "me",
        "my",
        "we",
        "our",
        "you",
        "your",
        "is",
        "am",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "to",
        "of",
        "in",
        "on",
        "at",
        "for",
        "and",
        "or",
        "that",
        "this",
        "it",
        "its",
        "about",
        "what",
        "with",
        "do",
        "did",
        "does",
        "has",
        "have",
        "had",
        "how",
        "when",
        "where",
        "who",
        "whom",
        "why",
        "which",
        "would",
        "will",
        "can",
        "could",
        "should",
        "there",
        "their",
        "they",
        "them",
        "he",
        "she",
        "his",
        "her",
        "him",
        "by",
        "from",
        "as",
        "so",
        "if",
        "not",
        "no",
        "but",
        "just",
        "than",
        "then",
        "too",
        "very",
        "also",
        "any",
        "some",
        "into",
        "out",
        "up",
        "down",
        "over",
        "after",
        "before",
        "again",
        "here",
        "s",
        "t",
        "everything",
        "all",
        "anything",
        "thing",
        "things",
        "stuff",
    ]
)
# Letters and digits of every script: "Coimbra", "北京", "2024".
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
_NUMBER_WORDS = frozenset(
    [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "sixty",
        "seventy",
        "eighty",
        "ninety",
        "hundred",
        "thousand",
        "million",
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "once",
        "twice",
    ]
)
# Months and weekdays name a time: a statement naming another one says another thing.
_MONTHS = frozenset(MONTHS + WEEKDAYS)
_NUMERAL = re.compile(r"\d+(?:[.,:]\d+)*")


def words(text: str) -> list[str]:
    """The lowercase words of a text, in order, in any script."""
    return [word.lower() for word in _WORD.findall(text)]


def stem(word: str) -> str:
    """A crude English stem, enough to match "peanuts" with "peanut"."""
    for suffix in ("ing", "ies", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def content_words(text: str) -> set[str]:
    """Stems of the words that carry meaning (no stop words)."""
    return {
        stem(word) for word in words(text) if word not in STOP_WORDS and len(word) > 1
    }


def named_values(text: str) -> frozenset[str]:
    """The numbers, names, dates and places a statement names.

    Two statements that differ here say different things however alike they
    read ("I own 4 bikes" / "I own 5 bikes"): the newer one is an update, never
    a repeat. Names are capitalised words other than a sentence's first.
    """
    values = set(_NUMERAL.findall(text))
    tokens = _WORD.findall(text)
    for position, token in enumerate(tokens):
        lower = token.lower()
        if (
            lower in _NUMBER_WORDS
            or lower in _MONTHS
            or position > 0
            and token[:1].isupper()
            and lower not in ("i", "i'm")
        ):
            values.add(lower)
    return frozenset(values)


def digest(*parts: str) -> str:
    """Hash of texts, insensitive to case, spacing and punctuation."""
    normalised = "\x1f".join(" ".join(words(part)) for part in parts)
    return hashlib.sha256(normalised.encode()).hexdigest()


# Scripts written without spaces between words: indexed as overlapping pairs of
# characters, the usual way to search them by keyword without a dictionary.
_UNSPACED = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+"
)
_TERM = re.compile(r"[^\W_]+", re.UNICODE)


def _pairs(match: re.Match) -> str:
    run = match.group(0)
    if len(run) == 1:
        return f" {run} "
    return " " + " ".join(run[i : i + 2] for i in range(len(run) - 1)) + " "


def keyword_text(text: str) -> str:
    """A text as the keyword index reads it: unspaced scripts split into pairs."""
    return _UNSPACED.sub(_pairs, text) if _UNSPACED.search(text) else text


def query_terms(text: str, *, limit: int = 32) -> list[str]:
    """Distinct keyword terms of a query, without stop words, in order."""
    found = [term.lower() for term in _TERM.findall(keyword_text(text))]
    terms = [term for term in dict.fromkeys(found) if term not in STOP_WORDS]
    return terms[:limit]
