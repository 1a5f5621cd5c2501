"""The time one request may still spend.

Calls to outside services (language models, embedding APIs, S3 Vectors) take
their timeouts and retries from what is left, so every request answers, in
JSON, before the server's worker timeout would cut it off with a page of its
own. A request without a deadline (a management command, a test) leaves the
configured timeouts as they are.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from django.conf import settings

_deadline: ContextVar[float | None] = ContextVar("ltm_request_deadline", default=None)

# Below this, a call to an outside service is not started: it could not finish.
SHORTEST_CALL_SECONDS = 0.5

T = TypeVar("T")


class TimeBudgetSpent(Exception):
    """The request has no time left for another call to an outside service."""


@contextmanager
def request_deadline(seconds: float | None) -> Iterator[None]:
    """Give the code inside at most `seconds` (None or 0: no limit)."""
    token = _deadline.set(time.monotonic() + seconds if seconds else None)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Seconds the current request may still spend, or None without a limit."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def has_time_left() -> bool:
    """Whether a short call to an outside service could still finish."""
    left = time_left()
    return left is None or left >= SHORTEST_CALL_SECONDS


def call_limits(timeout: float, retries: int) -> tuple[float, int]:
    """The timeout of one try and the retries that fit in what is left of the
    request: a retry only when another whole try fits after the first.
    Raises TimeBudgetSpent when not even a short try fits."""
    left = time_left()
    if left is None:
        return timeout, retries
    if left < SHORTEST_CALL_SECONDS:
        raise TimeBudgetSpent(f"{max(left, 0):.1f} s left of this request's time")
    per_try = min(timeout, left)
    return per_try, max(0, min(retries, int(left // per_try) - 1))


def deadline_kept(steps: Iterator[T]) -> Iterator[T]:
    """`steps`, each run under the deadline of the request that made them.

    A streamed response is written after its view, and the middleware's
    deadline with it, have returned; what it still calls keeps the request's
    time. Closing the result closes `steps`.
    """
    deadline = _deadline.get()

    def kept() -> Iterator[T]:
        try:
            while True:
                # Set and reset around each step, never across a yield: the
                # consumer runs in its own context between steps.
                token = _deadline.set(deadline)
                try:
                    item = next(steps)
                except StopIteration:
                    return
                finally:
                    _deadline.reset(token)
                yield item
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()

    return kept()


def deadline_middleware(get_response: Callable):
    """Every request gets LTM_REQUEST_TIME_BUDGET_SECONDS."""

    def middleware(request):
        with request_deadline(settings.LTM_REQUEST_TIME_BUDGET_SECONDS):
            return get_response(request)

    return middleware
