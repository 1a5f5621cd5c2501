"""Asynchronous memory (LTM_MEMORY_MODE=async): /message recalls, replies and
answers; what it says is remembered by a worker afterwards.

A user's messages are remembered one at a time and in the order they came:
whoever remembers a message first remembers the user's earlier ones still
pending. A message is claimed, not locked, while its model call runs (no lock
is held across a network call); a claim that outlives a dead worker expires
and the message is taken again. The write itself checks that the claim is
still its own and the message still exists (an erasure may have removed it).
"""

import logging
import time
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException

from memories.models import Message

logger = logging.getLogger(__name__)

# Longer than a memory call's timeouts and retries: a live worker keeps its claim.
CLAIM_SECONDS = 300


class Remembering(StrEnum):
    DONE = "done"  # the message and every earlier one of its user are remembered
    BUSY = "busy"  # another worker holds an earlier one, or this one
    GONE = "gone"  # the message was erased


class MemoryUpdateBusy(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "memory_update_in_progress"
    default_detail = (
        "A worker is still remembering this user's earlier messages; nothing was "
        "forgotten. Retry shortly."
    )


def memory_is_async() -> bool:
    """Async memory needs a worker to remember: without a broker, a message is
    remembered in its request whatever the mode."""
    return settings.LTM_MEMORY_MODE == "async" and not settings.CELERY_TASK_ALWAYS_EAGER


def _not_done(message: Message):
    return (
        Message.objects.filter(tenant_id=message.tenant_id, user_id=message.user_id)
        .exclude(memory_update=Message.MemoryUpdate.DONE)
        .order_by("id")
    )


def _claim(message: Message) -> Message | None:
    now = timezone.now()
    until = now + timedelta(seconds=CLAIM_SECONDS)
    claimed = (
        Message.objects.filter(pk=message.pk)
        .filter(
            Q(memory_update=Message.MemoryUpdate.PENDING)
            | Q(
                memory_update=Message.MemoryUpdate.WORKING, memory_claimed_until__lt=now
            )
        )
        .update(memory_update=Message.MemoryUpdate.WORKING, memory_claimed_until=until)
    )
    if not claimed:
        return None
    message.memory_update = Message.MemoryUpdate.WORKING
    message.memory_claimed_until = until
    return message


def remember_pending(message_pk: int) -> Remembering:
    """Remember the message, and first its user's earlier pending ones."""
    from memories.pipeline.message import remember_claimed

    message = Message.objects.filter(pk=message_pk).first()
    if message is None:
        return Remembering.GONE
    while True:
        earliest = _not_done(message).filter(pk__lte=message_pk).first()
        if earliest is None:
            return Remembering.DONE
        claimed = _claim(earliest)
        if claimed is None:
            return Remembering.BUSY
        remember_claimed(claimed)


def remember_users_pending(*, tenant, user_id: str, wait_seconds: float) -> None:
    """Remember a user's pending messages now, before a request that must see
    them (a forget request); MemoryUpdateBusy when a worker still holds one."""
    deadline = time.monotonic() + wait_seconds
    while True:
        latest = (
            Message.objects.filter(tenant=tenant, user_id=user_id)
            .exclude(memory_update=Message.MemoryUpdate.DONE)
            .order_by("-id")
            .first()
        )
        if latest is None:
            return
        if remember_pending(latest.pk) is not Remembering.BUSY:
            continue
        if time.monotonic() >= deadline:
            raise MemoryUpdateBusy()
        time.sleep(0.2)
