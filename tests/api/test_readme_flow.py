"""The README's curl flow, over real HTTP with a real token."""

import json
import urllib.request

import pytest

from accounts.services import tenant_create, token_issue


def call(url: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        assert response.status == 200
        return json.loads(response.read())


@pytest.mark.django_db(transaction=True)
def test_the_readme_flow_over_http(live_server):
    token = token_issue(tenant=tenant_create(slug="demo")).secret
    base = live_server.url

    told = call(
        f"{base}/message",
        token,
        {
            "userId": "u1",
            "message": "I moved to Lisbon last month and I am allergic to peanuts.",
        },
    )
    assert len(told["added"]) == 2
    assert [e["kind"] for e in told["episodes"]] == ["episode"]

    asked = call(
        f"{base}/message", token, {"userId": "u1", "message": "Where do I live?"}
    )
    assert "Lisbon" in asked["reply"]

    forgot = call(
        f"{base}/forget",
        token,
        {"userId": "u1", "message": "Forget that I am allergic to peanuts."},
    )
    assert "peanuts" in forgot["reply"]
    assert forgot["scope"] == "memories"
    # The fact, and the episode of the message that said it.
    assert [m["kind"] for m in forgot["forgotten"]] == ["fact", "episode"]
    assert forgot["forgottenCount"] == 2

    again = call(
        f"{base}/api/v1/message",
        token,
        {"userId": "u1", "message": "Am I allergic to peanuts?"},
    )
    assert all("peanut" not in m["text"] for m in again["recalled"])
