"""JSON bodies with a size limit per endpoint (the import takes far more than a
message does) and a nesting limit."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# No request of the API nests deeper than a few levels; a body that does is an
# attack on the parser (5,000 nested arrays fit in 10 KB), not a request.
MAX_JSON_DEPTH = 32


def nesting_depth(value) -> int:
    """How deep lists and objects nest in a parsed body, counted without
    recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
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
    body nested deeper than MAX_JSON_DEPTH."""

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
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if nesting_depth(data) > MAX_JSON_DEPTH:
            raise too_deep
        return data
