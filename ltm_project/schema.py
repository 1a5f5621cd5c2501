"""Rules of the server the generated schema would not state by itself."""

from django.conf import settings

# Every string a client sends refuses NUL (PostgreSQL cannot store it).
NO_NUL_PATTERN = "^[^\\u0000]*$"
# White space as Python's str.isspace() reads it, hence what str.strip() and
# DRF's trimming remove (Unicode White_Space, and the information separators
# U+001C-U+001F). Spelt out rather than \\s, which each regular expression
# engine reads its own way.
WHITE_SPACE = (
    "\\u0009-\\u000d\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
# A text that is trimmed and may not be blank: some character other than white
# space, and no NUL. (The two classes are disjoint, so a validator reads it in
# linear time.)
NOT_BLANK_PATTERN = f"^[{WHITE_SPACE}]*[^\\u0000{WHITE_SPACE}][^\\u0000]*$"


def strings_refuse_nul(result, generator, request, public):
    """drf-spectacular postprocessing hook: request strings without a pattern of
    their own get NO_NUL_PATTERN."""
    components = result.get("components", {}).get("schemas", {})
    for name, component in components.items():
        if name.endswith("Request"):
            _mark(component)
    return result


def import_batch_size(result, generator, request, public):
    """drf-spectacular postprocessing hook: the import's message count, which
    drf-spectacular does not take from a list serializer's lengths."""
    component = (
        result.get("components", {}).get("schemas", {}).get("ImportInputRequest")
    )
    if component is not None:
        component["properties"]["messages"].update(
            minItems=1, maxItems=settings.LTM_IMPORT_MAX_MESSAGES
        )
    return result


def _mark(schema: dict) -> None:
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and not (
        {"pattern", "format", "enum"} & schema.keys()
    ):
        schema["pattern"] = NO_NUL_PATTERN
    for child in schema.get("properties", {}).values():
        _mark(child)
    _mark(schema.get("items"))
    for key in ("allOf", "oneOf", "anyOf"):
        for child in schema.get(key, []):
            _mark(child)
