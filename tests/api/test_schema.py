import re
import unicodedata

import jsonschema_rs
import pytest

from ltm_project.schema import NO_NUL_PATTERN, NOT_BLANK_PATTERN
from memories.serializers import USER_ID_PATTERN

pytestmark = pytest.mark.django_db


def test_the_openapi_schema_describes_every_endpoint(anonymous_client):
    response = anonymous_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for path in (
        "/message",
        "/forget",
        "/api/v1/message",
        "/api/v1/forget",
        "/api/v1/memories",
        "/api/v1/memories/{id}",
        "/api/v1/memories/import",
        "/api/v1/memories/search",
        "/api/v1/users",
        "/api/v1/users/{userId}",
        "/api/v1/users/{userId}/export",
    ):
        assert path in schema["paths"], path
    message = schema["paths"]["/api/v1/message"]["post"]
    assert {"200", "400", "401", "415", "429"} <= set(message["responses"])
    assert message["requestBody"]["content"]["application/json"]["examples"]
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    components = schema["components"]["schemas"]
    documented = {
        "MessageInputRequest": ["userId", "message"],
        "ForgetInputRequest": ["userId", "message"],
        "MessageOutput": [
            "reply",
            "messageId",
            "recalled",
            "added",
            "updated",
            "deleted",
        ],
        "ForgetOutput": ["reply", "forgotten"],
        "ErrorDetail": ["code", "message", "details"],
    }
    for component, fields in documented.items():
        properties = components[component]["properties"]
        for field in fields:
            assert properties[field].get("description"), f"{component}.{field}"


def test_the_docs_page_is_served_without_network(anonymous_client):
    response = anonymous_client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/api/schema/" in page
    assert "cdn" not in page.lower()


def test_the_schema_states_the_user_id_rules_the_server_applies(
    anonymous_client, client_a
):
    schema = anonymous_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    user_id = schema["components"]["schemas"]["MessageInputRequest"]["properties"][
        "userId"
    ]
    assert (user_id["minLength"], user_id["maxLength"]) == (1, 255)
    assert user_id["pattern"] == USER_ID_PATTERN
    candidates = ["alice", "a b", "Ana Sofía", "用户7", " alice", "alice ", "\t"]
    candidates += ["ali\u0085ce", "ali\u202ece", "ali\u200bce", "x\ue000"]
    candidates += ["\u3000alice", "alice\u00a0", "a\u3000b", "alice\n", "\U0001f600"]
    for candidate in candidates:
        allowed = re.fullmatch(user_id["pattern"], candidate) is not None
        response = client_a.post(
            "/api/v1/forget",
            {"userId": candidate, "message": "Forget my shoe size."},
            format="json",
        )
        assert (response.status_code == 200) == allowed, candidate


def _hidden(character: str) -> bool:
    # Control, format (bidirectional, zero-width...), private use, line and
    # paragraph separators.
    return unicodedata.category(character) in {"Cc", "Cf", "Co", "Zl", "Zp"}


def test_the_user_id_pattern_is_the_rule_for_every_character():
    """No hidden character anywhere, no white space at either end: checked for
    every character of the Basic Multilingual Plane (surrogates cannot arrive:
    the JSON parser refuses an unpaired one)."""
    pattern = re.compile(USER_ID_PATTERN)
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        character = chr(code)
        # U+2065 is unassigned, amid the invisible operators: refused with them.
        hidden = _hidden(character) or code == 0x2065
        assert (pattern.fullmatch(f"a{character}b") is None) == hidden, hex(code)
        if not hidden:
            expected = not character.isspace()
            assert (pattern.fullmatch(character) is not None) == expected, hex(code)
            assert (pattern.fullmatch(f"a{character}") is not None) == expected


def test_a_json_schema_validator_reads_the_user_id_pattern_as_the_server_does():
    """The pattern compiles in a JSON Schema engine (one that cannot compile it
    drops it, and schema fuzzers then send ids the server refuses) and agrees
    with the server's reading of it."""
    validator = jsonschema_rs.validator_for(
        {"type": "string", "pattern": USER_ID_PATTERN}
    )
    candidates = ["alice", "a b", "Ana Sofía", "用户7", "\U0001f600", "x\U000f0000"]
    candidates += [" alice", "alice ", "alice\n", "\u3000a", "a\u00a0", "ali\u202ece"]
    candidates += ["a\u0000b", "a\u00adb", "a\ufeffb", "a\ue000b", "a\u2065b"]
    for candidate in candidates:
        server = re.fullmatch(USER_ID_PATTERN, candidate) is not None
        assert validator.is_valid(candidate) == server, ascii(candidate)


def test_reading_and_deleting_memories_document_their_errors(anonymous_client):
    schema = anonymous_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    listing = schema["paths"]["/api/v1/memories"]["get"]
    assert {"200", "400", "401", "429"} <= set(listing["responses"])
    user_id = next(p for p in listing["parameters"] if p["name"] == "userId")
    assert user_id["required"]
    assert user_id["schema"]["minLength"] == 1
    status = next(p for p in listing["parameters"] if p["name"] == "status")
    assert status["schema"]["enum"] == ["active", "hidden", "deleted"]
    assert status["schema"]["default"] == "active"
    one = schema["paths"]["/api/v1/memories/{id}"]
    assert {"200", "401", "404", "429"} <= set(one["get"]["responses"])
    assert {"204", "401", "404", "429"} <= set(one["delete"]["responses"])


def test_request_strings_state_that_nul_is_refused(anonymous_client):
    schema = anonymous_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    components = schema["components"]["schemas"]
    message = components["MessageInputRequest"]["properties"]["message"]
    assert message["pattern"] == NOT_BLANK_PATTERN
    imported = components["ImportMessageRequest"]["properties"]
    # A speaker may be blank: only NUL is refused.
    assert imported["speaker"]["pattern"] == NO_NUL_PATTERN
    batch = components["ImportInputRequest"]["properties"]["messages"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 500)
    for pattern in (NO_NUL_PATTERN, NOT_BLANK_PATTERN):
        assert re.fullmatch(pattern, "a\u0000b") is None
        assert re.fullmatch(pattern, "Olá, 世界\n") is not None


def test_a_text_that_may_not_be_blank_says_white_space_alone_is_blank(
    anonymous_client, client_a
):
    schema = anonymous_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    message = schema["components"]["schemas"]["ForgetInputRequest"]["properties"][
        "message"
    ]
    validator = jsonschema_rs.validator_for(message)
    candidates = ["Forget my shoe size.", "  x  ", "\u00a0x", "x\u3000", "\n\tx"]
    candidates += ["", " ", "\u00a0", "\u3000\u2028", "\t\n", "\x1c", "a\u0000"]
    for candidate in candidates:
        allowed = validator.is_valid(candidate)
        assert allowed == (re.fullmatch(message["pattern"], candidate) is not None)
        response = client_a.post(
            "/api/v1/forget", {"userId": "u1", "message": candidate}, format="json"
        )
        assert (response.status_code == 200) == allowed, ascii(candidate)
