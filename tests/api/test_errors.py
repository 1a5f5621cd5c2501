import json

import pytest
from django.test import override_settings

from accounts.services import token_revoke
from memories.models import Memory, Message
from tests.helpers import post_message

pytestmark = pytest.mark.django_db(transaction=True)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.fixture
def nothing_changes(db):
    yield
    assert Message.objects.count() == 0
    assert Memory.objects.count() == 0


@pytest.mark.usefixtures("nothing_changes")
@pytest.mark.parametrize(
    "path", ["/message", "/api/v1/message", "/forget", "/api/v1/forget"]
)
@pytest.mark.parametrize(
    ("body", "field", "field_code"),
    [
        ({"message": "hi"}, "userId", "required"),
        ({"userId": "u1"}, "message", "required"),
        ({"userId": "u1", "message": ""}, "message", "blank"),
        ({"userId": "u1", "message": "   "}, "message", "blank"),
        ({"userId": "", "message": "hi"}, "userId", "blank"),
        ({"userId": "u1", "message": ["hi"]}, "message", "invalid"),
        ({"userId": {"id": 1}, "message": "hi"}, "userId", "invalid"),
        ({"userId": "u1", "message": None}, "message", "null"),
        ({"userId": "u\x00x", "message": "hi"}, "userId", "null_character"),
        ({"userId": "u" * 256, "message": "hi"}, "userId", "max_length"),
        ({"userId": "u1", "message": "x" * 32001}, "message", "max_length"),
        # Counted as sent, as the schema's maxLength is, not after trimming.
        ({"userId": "u1", "message": " " + "x" * 32000}, "message", "max_length"),
        ({"userId": "u1", "message": "\u3000"}, "message", "blank"),
    ],
)
def test_bad_fields_are_refused_with_their_field_and_code(
    client_a, path, body, field, field_code
):
    error = assert_error(client_a.post(path, body, format="json"), 400, "invalid_input")
    assert error["details"]["fields"][field][0]["code"] == field_code


@pytest.mark.usefixtures("nothing_changes")
def test_the_message_size_limit_is_stated_in_the_error(client_a):
    error = assert_error(
        post_message(client_a, "u1", "x" * 32001), 400, "invalid_input"
    )
    assert "32000" in error["message"]


@pytest.mark.usefixtures("nothing_changes")
def test_a_body_that_is_not_an_object_is_refused(client_a):
    response = client_a.post(
        "/api/v1/message", data="[1, 2]", content_type="application/json"
    )
    assert_error(response, 400, "invalid_input")


@pytest.mark.usefixtures("nothing_changes")
def test_malformed_json_is_refused(client_a):
    response = client_a.post(
        "/api/v1/message",
        data='{"userId": "u1", "message": ',
        content_type="application/json",
    )
    assert_error(response, 400, "malformed_json")


@pytest.mark.usefixtures("nothing_changes")
def test_a_form_body_is_refused_as_the_wrong_content_type(client_a):
    response = client_a.post(
        "/api/v1/message",
        data="userId=u1&message=hi",
        content_type="application/x-www-form-urlencoded",
    )
    assert_error(response, 415, "unsupported_media_type")


def test_the_longest_valid_request_fits_the_body_limit_in_any_json_spelling(
    client_a,
):
    # Every character outside the Basic Multilingual Plane, escaped as a
    # surrogate pair as json.dumps does by default: 12 bytes each.
    body = json.dumps(
        {
            "userId": "\U0001f600" * 255,
            "query": "\U0001f600" * 32000,
            "topK": 100,
            "timeRange": {
                "start": "2000-01-01T00:00:00.000000+00:00",
                "end": "2100-01-01T00:00:00.000000+00:00",
            },
            "filters": {
                "speaker": "\U0001f600" * 100,
                "slot": "\U0001f600" * 64,
                "kind": "episode",
                "role": "assistant",
            },
        }
    )
    assert len(body) > 384_000
    response = client_a.post(
        "/api/v1/memories/search", data=body, content_type="application/json"
    )
    assert response.status_code == 200, response.content[:300]


@pytest.mark.usefixtures("nothing_changes")
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_an_oversized_body_is_refused(client_a):
    body = json.dumps({"userId": "u1", "message": "x" * 2000})
    response = client_a.post(
        "/api/v1/message", data=body, content_type="application/json"
    )
    assert_error(response, 413, "request_too_large")


@pytest.mark.usefixtures("nothing_changes")
def test_a_request_without_a_token_is_refused(anonymous_client):
    response = post_message(anonymous_client, "u1", "I live in Lisbon.")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.usefixtures("nothing_changes")
def test_a_wrong_token_is_refused(anonymous_client, tenant_a):
    anonymous_client.credentials(HTTP_AUTHORIZATION="Bearer ltm_not-a-real-token")
    assert_error(post_message(anonymous_client, "u1", "hi"), 401, "invalid_token")


@pytest.mark.usefixtures("nothing_changes")
def test_a_token_in_the_wrong_scheme_is_refused(anonymous_client, tenant_a):
    anonymous_client.credentials(HTTP_AUTHORIZATION="Token abc")
    assert_error(
        post_message(anonymous_client, "u1", "hi"), 401, "invalid_authorization_header"
    )


@pytest.mark.usefixtures("nothing_changes")
def test_a_revoked_token_is_refused(client_a):
    token_revoke(token=client_a.token)
    assert_error(
        post_message(client_a, "u1", "I live in Lisbon."), 401, "token_revoked"
    )


@pytest.mark.usefixtures("nothing_changes")
def test_a_token_of_a_deactivated_tenant_is_refused(client_a, tenant_a):
    tenant_a.is_active = False
    tenant_a.save()
    assert_error(
        post_message(client_a, "u1", "I live in Lisbon."), 401, "tenant_inactive"
    )


@pytest.mark.usefixtures("nothing_changes")
def test_a_wrong_method_is_refused(client_a):
    assert_error(client_a.get("/api/v1/message"), 405, "method_not_allowed")


@pytest.mark.usefixtures("nothing_changes")
def test_an_unknown_memory_id_is_not_found(client_a):
    response = client_a.get("/api/v1/memories/00000000-0000-0000-0000-000000000000")
    assert_error(response, 404, "not_found")


@pytest.mark.usefixtures("nothing_changes")
def test_listing_memories_needs_a_user_id(client_a):
    error = assert_error(client_a.get("/api/v1/memories"), 400, "invalid_input")
    assert "userId" in error["details"]["fields"]


@pytest.mark.usefixtures("nothing_changes")
def test_too_many_requests_are_rate_limited(client_a, settings):
    settings.LTM_RATE_LIMIT = "2/min"
    unknown = "/api/v1/memories/00000000-0000-0000-0000-000000000000"
    for _ in range(2):
        assert client_a.get(unknown).status_code == 404
    response = client_a.get(unknown)
    error = assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1
    assert error["details"]["retry_after_seconds"] > 0


def test_an_unknown_user_id_is_simply_a_new_end_user(client_a):
    response = post_message(client_a, "never-seen-before", "Where do I live?")
    assert response.status_code == 200
    assert response.json()["recalled"] == []


@override_settings(DEBUG=False)
def test_an_unknown_url_gives_the_json_error_shape(client_a):
    assert_error(client_a.get("/no/such/endpoint"), 404, "not_found")
