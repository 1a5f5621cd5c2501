"""The message ids a client sees.

Message rows are numbered by one sequence for every tenant, so raw ids would
let one tenant count another's traffic in the gaps between its own. A client
sees each id through a keyed permutation of 48-bit numbers instead (a
four-round Feistel network over HMAC-SHA256): one number per message, stable,
exact in JavaScript (below 2**53), and no ordering or gap to read.
LTM_PUBLIC_ID_KEY keys it; changing it changes every id a client has seen.
"""

import hashlib
import hmac

from django.conf import settings

_HALF_BITS = 24
_HALF_MASK = (1 << _HALF_BITS) - 1
_ROUNDS = 4
LIMIT = 1 << (2 * _HALF_BITS)


def _key() -> bytes:
    key = settings.LTM_PUBLIC_ID_KEY or f"ltm-public-ids:{settings.SECRET_KEY}"
    return key.encode()


def _round(key: bytes, index: int, half: int) -> int:
    digest = hmac.new(key, f"{index}:{half}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") & _HALF_MASK


def public_message_id(pk: int | None) -> int | None:
    """The id a client sees for the message row `pk`."""
    if pk is None:
        return None
    if not 0 <= pk < LIMIT:
        raise ValueError(f"message id {pk} is beyond the public id range")
    key = _key()
    left, right = pk >> _HALF_BITS, pk & _HALF_MASK
    for index in range(_ROUNDS):
        left, right = right, left ^ _round(key, index, right)
    return (left << _HALF_BITS) | right


def message_pk(public_id: int) -> int:
    """The row of a public message id (the permutation's inverse)."""
    if not 0 <= public_id < LIMIT:
        raise ValueError("not a message id")
    key = _key()
    left, right = public_id >> _HALF_BITS, public_id & _HALF_MASK
    for index in reversed(range(_ROUNDS)):
        left, right = right ^ _round(key, index, left), left
    return (left << _HALF_BITS) | right
