"""LTM's MCP server at /mcp, driven by the MCP SDK's own Streamable HTTP client
against the live service: its tools, their effects, tokens and tenants."""

import asyncio
import json

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from memories.mcp.tools import INSTRUCTIONS, TOOL_DESCRIPTIONS
from memories.models import Memory
from tests.mcp.helpers import call, http_session
from tests.servers import create_tenant, gunicorn, service_env

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream"}


def run(coroutine):
    return asyncio.run(coroutine)


def test_it_lists_the_tools_with_descriptions_for_models(live_server, token):
    async def scenario():
        async with http_session(live_server.url, token) as session:
            return await session.list_tools(), session.initialize_result

    listed, initialized = run(scenario())

    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == {
        "remember",
        "recall",
        "forget",
        "list_recent_memories",
        "delete_memory",
    }
    for name, tool in tools.items():
        assert tool.description == TOOL_DESCRIPTIONS[name]
        for argument in tool.input_schema["properties"].values():
            assert argument["description"]
    assert tools["recall"].annotations.read_only_hint is True
    assert tools["delete_memory"].annotations.destructive_hint is True
    assert tools["recall"].input_schema["required"] == ["query"]
    assert initialized.instructions == INSTRUCTIONS


def test_remembered_words_are_recalled_and_listed_newest_first(live_server, token):
    async def scenario():
        async with http_session(live_server.url, token) as session:
            remembered = await call(
                session, "remember", text="I moved to Lisbon last month."
            )
            await call(session, "remember", text="I am allergic to peanuts.")
            recalled = await call(session, "recall", query="Where do I live?")
            recent = await call(session, "list_recent_memories", kind="fact")
            return remembered, recalled, recent

    remembered, recalled, recent = run(scenario())

    added = remembered["added"]
    assert [memory["text"] for memory in added] == ["I moved to Lisbon last month."]
    # The fact or its episode (the message as said): the same words.
    assert recalled["memories"][0]["text"] == "I moved to Lisbon last month."
    assert added[0]["id"] in {memory["id"] for memory in recalled["memories"]}
    assert [memory["text"] for memory in recent["memories"]] == [
        "I am allergic to peanuts.",
        "I moved to Lisbon last month.",
    ]
    stored = Memory.objects.get(vector_key=added[0]["id"])
    assert (stored.user_id, stored.status) == ("u1", Memory.Status.ACTIVE)


def test_the_header_names_the_end_user(live_server, token):
    async def scenario():
        async with http_session(live_server.url, token, user_id="alice") as session:
            await call(session, "remember", text="I work as a nurse.")
        async with http_session(live_server.url, token, user_id="bob") as session:
            return await call(session, "recall", query="nurse work")

    assert run(scenario())["memories"] == []
    assert Memory.objects.get(kind=Memory.Kind.FACT).user_id == "alice"


def test_forget_removes_what_the_user_asks_to_forget(live_server, token):
    async def scenario():
        async with http_session(live_server.url, token) as session:
            await call(session, "remember", text="I am allergic to peanuts.")
            forgotten = await call(
                session, "forget", request="Forget that I am allergic to peanuts."
            )
            recalled = await call(session, "recall", query="peanuts allergy")
            return forgotten, recalled

    forgotten, recalled = run(scenario())

    assert {(memory["kind"], memory["text"]) for memory in forgotten["forgotten"]} == {
        ("fact", "I am allergic to peanuts."),
        ("episode", "I am allergic to peanuts."),
    }
    assert recalled["memories"] == []
    assert not Memory.objects.filter(text__icontains="peanuts").exists()


def test_delete_memory_deletes_exactly_that_memory(live_server, token):
    async def scenario():
        async with http_session(live_server.url, token) as session:
            lisbon = await call(session, "remember", text="I live in Lisbon.")
            await call(session, "remember", text="I have two cats.")
            memory_id = lisbon["added"][0]["id"]
            deleted = await call(session, "delete_memory", memory_id=memory_id)
            again = await session.call_tool("delete_memory", {"memory_id": memory_id})
            made_up = await session.call_tool("delete_memory", {"memory_id": "nope"})
            recent = await call(session, "list_recent_memories", kind="fact")
            return memory_id, deleted, again, made_up, recent

    memory_id, deleted, again, made_up, recent = run(scenario())

    assert deleted == {"deleted": memory_id}
    assert again.is_error
    assert made_up.is_error
    assert "No memory of this user" in made_up.content[0].text
    assert [memory["text"] for memory in recent["memories"]] == ["I have two cats."]
    assert Memory.objects.get(vector_key=memory_id).status == Memory.Status.DELETED


def test_another_tenants_token_cannot_reach_the_users_memories(
    live_server, token, other_token
):
    async def scenario():
        async with http_session(live_server.url, token) as session:
            kept = await call(session, "remember", text="I live in Lisbon.")
        async with http_session(live_server.url, other_token) as session:
            recalled = await call(session, "recall", query="Lisbon")
            recent = await call(session, "list_recent_memories")
            deleted = await session.call_tool(
                "delete_memory", {"memory_id": kept["added"][0]["id"]}
            )
            forgotten = await call(
                session, "forget", request="Forget everything you know about me."
            )
        return kept, recalled, recent, deleted, forgotten

    kept, recalled, recent, deleted, forgotten = run(scenario())

    assert recalled["memories"] == recent["memories"] == []
    assert deleted.is_error
    assert forgotten["forgottenCount"] == 0
    memory = Memory.objects.get(vector_key=kept["added"][0]["id"])
    assert memory.status == Memory.Status.ACTIVE


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "not_authenticated"),
        ("Bearer ltm_not_a_token", "invalid_token"),
    ],
)
def test_it_answers_401_without_a_valid_token(live_server, authorization, code):
    headers = {**ACCEPT, "X-LTM-User": "u1"}
    if authorization:
        headers["Authorization"] = authorization
    response = httpx.post(f"{live_server.url}/mcp", json=INITIALIZE, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="ltm"'
    assert response.json()["error"]["code"] == code


def test_the_sdk_client_fails_without_a_token(live_server):
    async def scenario():
        async with http_session(live_server.url, None):
            pass  # pragma: no cover - the session cannot start

    with pytest.raises(BaseException) as raised:  # noqa: PT011 - checked below
        run(scenario())

    def leaves(error):
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                yield from leaves(inner)
        else:
            yield error

    # The SDK's transport turns the 401 into an error answer to initialize.
    assert [type(error) for error in leaves(raised.value)] == [MCPError]


def test_it_asks_for_the_end_user_in_a_header(live_server, token):
    headers = {**ACCEPT, "Authorization": f"Bearer {token}"}
    missing = httpx.post(f"{live_server.url}/mcp", json=INITIALIZE, headers=headers)
    too_long = httpx.post(
        f"{live_server.url}/mcp",
        json=INITIALIZE,
        headers={**headers, "X-LTM-User": "u" * 256},
    )

    assert missing.status_code == too_long.status_code == 400
    assert "X-LTM-User" in missing.json()["error"]["details"]["fields"]
    assert too_long.json()["error"]["code"] == "invalid_input"


def test_the_tenants_rate_limit_applies(live_server, token, settings):
    settings.LTM_RATE_LIMIT = "1/min"
    headers = {**ACCEPT, "Authorization": f"Bearer {token}", "X-LTM-User": "u1"}
    first = httpx.post(f"{live_server.url}/mcp", json=INITIALIZE, headers=headers)
    second = httpx.post(f"{live_server.url}/mcp", json=INITIALIZE, headers=headers)

    assert first.status_code == 200
    assert first.json()["result"]["serverInfo"]["name"] == "LTM"
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) >= 1


def test_it_opens_no_stream_and_keeps_no_session(live_server, token):
    headers = {**ACCEPT, "Authorization": f"Bearer {token}", "X-LTM-User": "u1"}
    answered = httpx.post(f"{live_server.url}/mcp", json=INITIALIZE, headers=headers)
    stream = httpx.get(f"{live_server.url}/mcp", headers=headers)

    assert answered.headers["Content-Type"].startswith("application/json")
    assert "mcp-session-id" not in answered.headers
    assert stream.status_code == 405


@pytest.mark.slow
def test_gunicorn_serves_mcp_in_its_sync_workers(tmp_path):
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'ltm.sqlite3'}")
    token = create_tenant(env)

    async def scenario(base):
        async with http_session(base, token) as session:
            await call(session, "remember", text="I moved to Lisbon last month.")
            # More requests than workers: each one's event loop and session
            # manager end with it.
            for _ in range(4):
                recalled = await call(session, "recall", query="Where do I live?")
            return recalled

    with gunicorn(env, workers=2) as base:
        recalled = run(scenario(base))
        listed = httpx.get(
            f"{base}/api/v1/memories",
            params={"userId": "u1", "kind": "fact"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()

    assert recalled["memories"][0]["text"] == "I moved to Lisbon last month."
    assert [memory["text"] for memory in listed["results"]] == [
        "I moved to Lisbon last month."
    ]
    assert json.dumps(recalled)
