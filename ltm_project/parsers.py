"""JSON bodies as the API reads them: a size limit per endpoint (the import
takes far more than a message does), a nesting limit, and strict JSON: no
duplicate keys, no numbers beyond a float's range (1e400 is not "inf"), no NaN
or Infinity, and no unpaired surrogate escapes ("\\ud800", which no database
can store)."""

import json
import math

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# No request of the API nests deeper than a few levels; a body that does is an
# attack on the parser (5,000 nested arrays fit in 10 KB), not a request.
MAX_JSON_DEPTH = 32


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ParseError(f"JSON parse error - the key {repeated!r} appears twice.")
    return found


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ParseError(f"JSON parse error - {text} is beyond a number's range.")
    return value


def _no_constants(name: str):
    raise ParseError(f"JSON parse error - {name} is not JSON.")


def checked_depth(value) -> int:
    """How deep lists and objects nest in a parsed body, counted without
    recursion; also refuses strings with unpaired surrogates on the way."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ParseError(
                    "JSON parse error - a string holds an unpaired surrogate."
                ) from None
            continue
        if isinstance(item, dict):
            pending.extend((key, depth) for key in item)
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        pending.extend((child, depth + 1) for child in children)
    return deepest


class LimitedJSONParser(JSONParser):
    """Refuses (413) a body over the view's `max_body_bytes`, or over
    LTM_MAX_REQUEST_BYTES when the view names none, and (400 malformed_json) a
    body that is not strict JSON or nests deeper than MAX_JSON_DEPTH."""

    def parse(self, stream, media_type=None, parser_context=None):
        view = (parser_context or {}).get("view")
        limit = getattr(view, "max_body_bytes", None) or settings.LTM_MAX_REQUEST_BYTES
        request = (parser_context or {}).get("request")
        length = request.META.get("CONTENT_LENGTH") if request is not None else None
        if length and str(length).isdigit() and int(length) > limit:
            raise RequestDataTooBig("The request body is too large.")
        too_deep = ParseError(
            f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels."
        )
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(
                stream.read().decode(encoding),
                object_pairs_hook=_unique_keys,
                parse_float=_finite,
                parse_constant=_no_constants,
            )
        except RecursionError:
            raise too_deep from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if checked_depth(data) > MAX_JSON_DEPTH:
            raise too_deep
        return data
