"""What any end user or client can send never produces a 500."""

import pytest

from memories.models import Memory
from tests.helpers import post_message

IMPORT = "/api/v1/memories/import"
ENDPOINTS = ["/message", "/forget", "/api/v1/message", "/api/v1/forget", IMPORT]


@pytest.mark.parametrize(
    "said",
    [
        "I will move to Berlin in 99999999 days.",
        "I started running 99999999 days ago.",
        "We meet again in 9999999999 weeks.",
        "I was born 99999999999999999999999 years ago.",
    ],
)
def test_times_beyond_the_calendar_are_kept_undated(client_a, said):
    response = post_message(client_a, "u1", said)
    assert response.status_code == 200, response.content
    stored = Memory.objects.filter(user_id="u1", kind="episode").get()
    assert stored.text == said
    assert stored.happened_at is None or stored.happened_at.year <= 9999


@pytest.mark.parametrize(
    ("sent_at", "said"),
    [
        ("0001-01-01T00:00:00Z", "I moved here yesterday."),
        ("0001-01-01T00:00:00Z", "I changed jobs last week."),
        ("9999-12-31T12:00:00Z", "I fly to Lisbon tomorrow."),
        ("9999-12-31T12:00:00Z", "My sister visits next month."),
    ],
)
def test_imports_at_the_ends_of_the_calendar_are_stored(client_a, sent_at, said):
    response = client_a.post(
        IMPORT,
        {"userId": "u1", "messages": [{"text": said, "sentAt": sent_at}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert Memory.objects.filter(user_id="u1", text=said).exists()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_deeply_nested_json_is_malformed_json(client_a, path):
    body = "[" * 5000 + "]" * 5000
    assert len(body) < 10_240
    response = client_a.post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_json_nested_past_the_stated_limit_is_refused(client_a, path):
    inner = '{"userId": "u1", "message": "hello"}'
    body = '{"a": ' * 40 + inner + "}" * 40
    response = client_a.post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert "32" in response.json()["error"]["message"]


def _field_codes(response) -> dict:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    return {
        field: [item["code"] for item in items]
        for field, items in error["details"]["fields"].items()
    }


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"userId": "u1", "message": 0}, "message", "invalid"),
        ({"userId": 123, "message": "hello"}, "userId", "invalid"),
        ({"userId": True, "message": "hello"}, "userId", "invalid"),
        ({"userId": "  alice  ", "message": "hello"}, "userId", "whitespace"),
        ({"userId": "ali\u0085ce", "message": "hello"}, "userId", "hidden_character"),
        ({"userId": "ali\u202ece", "message": "hello"}, "userId", "hidden_character"),
        ({"userId": "ali\u200bce", "message": "hello"}, "userId", "hidden_character"),
        ({"userId": "u1", "message": "a\u0000b"}, "message", "null_character"),
    ],
)
def test_loose_values_are_refused_with_a_field_code(client_a, body, field, code):
    for path in ("/api/v1/message", "/message", "/api/v1/forget"):
        response = client_a.post(path, body, format="json")
        assert _field_codes(response) == {field: [code]}
    assert not Memory.objects.exists()


def test_top_k_must_be_a_json_integer(client_a):
    for top_k in ("5", 5.0, True):
        response = client_a.post(
            "/api/v1/memories/search",
            {"userId": "u1", "query": "garden", "topK": top_k},
            format="json",
        )
        assert _field_codes(response) == {"topK": ["invalid"]}


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ('{"userId": "u1", "message": "a", "message": "b"}', "appears twice"),
        ('{"userId": "u1", "message": "hi", "n": 1e400}', "range"),
        ('{"userId": "u1", "message": "hi", "n": NaN}', "not JSON"),
        ('{"userId": "u1", "message": "\\ud800"}', "surrogate"),
    ],
)
def test_what_is_not_strict_json_is_malformed_json(client_a, body, said):
    for path in ENDPOINTS:
        response = client_a.post(path, body, content_type="application/json")
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["code"] == "malformed_json"
        assert said in error["message"]
