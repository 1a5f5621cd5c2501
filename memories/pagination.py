"""Keyset pages of a tenant's memories and end users, with opaque cursors.

A memory's cursor is the row number of the last memory of the page before,
through the keyed permutation of memories/public_ids.py: row numbers are one
sequence for every tenant and would let one tenant count another's rows; the
permuted number reveals nothing, and every cursor of the right shape is some
position, never an error. An end user's cursor is the last user id of the page
before, encoded. Either way the cursor only says where to start: the rows are
always the request's own (tenant, and user for memories), so a cursor can
neither reach nor reveal another tenant's or user's rows.
"""

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from django.db.models import Count, Max, Q

from accounts.models import Tenant
from memories.models import Memory, Message
from memories.public_ids import message_pk, public_message_id

PAGE_DEFAULT = 100
PAGE_MAX = 500

Row = TypeVar("Row")


@dataclass(frozen=True)
class Page(Generic[Row]):
    """One page of rows and the cursor of the next (None after the last)."""

    results: list[Row]
    next_cursor: str | None


# A memory's cursor: 48 bits, 8 characters of base64url; every such string
# is a position. An end user's: base64url of the id's UTF-8, without padding.
MEMORY_CURSOR_PATTERN = "^[A-Za-z0-9_-]{8}$"
USER_CURSOR_PATTERN = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,4})$"
USER_CURSOR_MAX_CHARS = 1400  # 255 characters of four UTF-8 bytes each


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(cursor: str) -> bytes:
    """The bytes of a cursor its pattern accepted."""
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def memory_cursor(memory: Memory) -> str:
    return _encode(public_message_id(memory.pk).to_bytes(6, "big"))


def _memory_after(cursor: str) -> int:
    return message_pk(int.from_bytes(_decode(cursor), "big"))


def user_cursor(user_id: str) -> str:
    return _encode(user_id.encode("utf-8"))


def _user_after(cursor: str) -> str:
    # Any bytes are a position: a cursor the server never gave is only a
    # place in the order. NUL, which no user id holds, PostgreSQL cannot
    # compare.
    return _decode(cursor).decode("utf-8", errors="replace").replace("\x00", "")


def _page(rows: list, limit: int, cursor_of) -> Page:
    if len(rows) > limit:
        return Page(results=rows[:limit], next_cursor=cursor_of(rows[limit - 1]))
    return Page(results=rows, next_cursor=None)


def memory_page(
    *,
    tenant: Tenant,
    user_id: str,
    status: str,
    kind: str | None,
    cursor: str | None,
    limit: int,
) -> Page[Memory]:
    """A page of a user's memories of one status (and kind), in the order they
    were stored, which never changes; one query."""
    rows = Memory.objects.for_user(tenant, user_id).filter(status=status)
    if kind:
        rows = rows.filter(kind=kind)
    rows = rows.order_by("pk")
    if cursor:
        rows = rows.filter(pk__gt=_memory_after(cursor))
    return _page(list(rows[: limit + 1]), limit, memory_cursor)


@dataclass(frozen=True)
class EndUser:
    """One end user of a tenant, with what is stored about them."""

    user_id: str
    memories: int  # active
    facts: int  # active
    episodes: int  # active
    messages: int
    last_message_at: datetime | None


def end_user_page(*, tenant: Tenant, cursor: str | None, limit: int) -> Page[EndUser]:
    """A page of the tenant's end users (anyone with a memory or a message row,
    tombstones included), by user id; two queries."""
    # Without the models' default orders, which a union's parts may not have.
    with_memories = Memory.objects.for_tenant(tenant).order_by().values_list("user_id")
    with_messages = Message.objects.for_tenant(tenant).order_by().values_list("user_id")
    if cursor:
        after = _user_after(cursor)
        with_memories = with_memories.filter(user_id__gt=after)
        with_messages = with_messages.filter(user_id__gt=after)
    # A union is distinct: each user once, whichever table names them.
    page_ids = [
        user_id
        for (user_id,) in with_memories.union(with_messages).order_by("user_id")[
            : limit + 1
        ]
    ]
    shown = page_ids[:limit]
    memory_counts = {
        row["user_id"]: row
        for row in Memory.objects.for_tenant(tenant)
        .filter(user_id__in=shown)
        .values("user_id")
        .annotate(
            active=Count("pk", filter=Q(status=Memory.Status.ACTIVE)),
            facts=Count(
                "pk", filter=Q(status=Memory.Status.ACTIVE, kind=Memory.Kind.FACT)
            ),
        )
    }
    message_counts = {
        row["user_id"]: row
        for row in Message.objects.for_tenant(tenant)
        .filter(user_id__in=shown, kind=Message.Kind.MESSAGE)
        .values("user_id")
        .annotate(count=Count("pk"), last=Max("sent_at"))
    }
    users = []
    for user_id in shown:
        counts = memory_counts.get(user_id, {"active": 0, "facts": 0})
        messages = message_counts.get(user_id, {"count": 0, "last": None})
        users.append(
            EndUser(
                user_id=user_id,
                memories=counts["active"],
                facts=counts["facts"],
                episodes=counts["active"] - counts["facts"],
                messages=messages["count"],
                last_message_at=messages["last"],
            )
        )
    if len(page_ids) > limit:
        return Page(results=users, next_cursor=user_cursor(shown[-1]))
    return Page(results=users, next_cursor=None)
