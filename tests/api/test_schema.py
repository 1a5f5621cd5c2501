import pytest

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
    import re

    schema = anonymous_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    user_id = schema["components"]["schemas"]["MessageInputRequest"]["properties"][
        "userId"
    ]
    assert (user_id["minLength"], user_id["maxLength"]) == (1, 255)
    candidates = ["alice", "a b", "Ana Sofía", "用户7", " alice", "alice ", "\t"]
    candidates += ["ali\u0085ce", "ali\u202ece", "ali\u200bce", "x\ue000"]
    for candidate in candidates:
        allowed = re.fullmatch(user_id["pattern"], candidate) is not None
        response = client_a.post(
            "/api/v1/forget",
            {"userId": candidate, "message": "Forget my shoe size."},
            format="json",
        )
        assert (response.status_code == 200) == allowed, candidate


def test_reading_and_deleting_memories_document_their_errors(anonymous_client):
    schema = anonymous_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    listing = schema["paths"]["/api/v1/memories"]["get"]
    assert {"200", "400", "401", "429"} <= set(listing["responses"])
    user_id = next(p for p in listing["parameters"] if p["name"] == "userId")
    assert user_id["required"]
    assert user_id["schema"]["minLength"] == 1
    one = schema["paths"]["/api/v1/memories/{id}"]
    assert {"200", "401", "404", "429"} <= set(one["get"]["responses"])
    assert {"204", "401", "404", "429"} <= set(one["delete"]["responses"])


def test_request_strings_state_that_nul_is_refused(anonymous_client):
    import re

    from ltm_project.schema import NO_NUL_PATTERN

    schema = anonymous_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    message = schema["components"]["schemas"]["MessageInputRequest"]["properties"][
        "message"
    ]
    assert message["pattern"] == NO_NUL_PATTERN
    batch = schema["components"]["schemas"]["ImportInputRequest"]["properties"][
        "messages"
    ]
    assert (batch["minItems"], batch["maxItems"]) == (1, 500)
    assert re.fullmatch(message["pattern"], "a\u0000b") is None
    assert re.fullmatch(message["pattern"], "Olá, 世界\n") is not None
