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
