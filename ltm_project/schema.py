"""Rules of the server the generated schema would not state by itself."""

# Every string a client sends refuses NUL (PostgreSQL cannot store it).
NO_NUL_PATTERN = "^[^\\u0000]*$"


def strings_refuse_nul(result, generator, request, public):
    """drf-spectacular postprocessing hook: request strings without a pattern of
    their own get NO_NUL_PATTERN."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request"):
            _mark(component)
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
