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
