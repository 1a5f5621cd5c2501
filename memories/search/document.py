"""The keyword document of a memory: the one definition of what keyword search
reads. The database's full-text indexes (an FTS5 table filled by triggers on
SQLite, a generated tsvector on PostgreSQL) index its two stored parts as they
are, and S3 Vectors' text search gets the same words as metadata."""

from memories.text import keyword_text

# Characters of each neighbouring message kept in a memory's context: enough for
# a question and the start of an answer, not a whole long reply.
NEIGHBOUR_CHARS = 300


def keyword_body(*, speaker: str, text: str) -> str:
    """The part ranked at full weight: who said it, and what."""
    return keyword_text(" ".join(part for part in (speaker, text) if part))


def spoken(*, speaker: str, text: str) -> str:
    """A message's words as they appear in a neighbour's context."""
    if not text:
        return ""
    snippet = text[:NEIGHBOUR_CHARS]
    return keyword_text(f"{speaker}: {snippet}" if speaker else snippet)


def keyword_document(memory) -> str:
    """Everything keyword search ranks a memory by (body, then context)."""
    return " ".join(part for part in (memory.search_body, memory.context_text) if part)
