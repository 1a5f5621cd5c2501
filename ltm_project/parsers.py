"""JSON bodies with a size limit per endpoint: the import takes far more than
a message does."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework.parsers import JSONParser


class LimitedJSONParser(JSONParser):
    """Refuses (413) a body over the view's `max_body_bytes`, or over
    LTM_MAX_REQUEST_BYTES when the view names none."""

    def parse(self, stream, media_type=None, parser_context=None):
        view = (parser_context or {}).get("view")
        limit = getattr(view, "max_body_bytes", None) or settings.LTM_MAX_REQUEST_BYTES
        request = (parser_context or {}).get("request")
        length = request.META.get("CONTENT_LENGTH") if request is not None else None
        if length and str(length).isdigit() and int(length) > limit:
            raise RequestDataTooBig("The request body is too large.")
        return super().parse(stream, media_type, parser_context)
