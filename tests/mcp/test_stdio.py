"""`ltm-mcp`, the stdio server of the SDK's mcp extra, spawned by the MCP SDK's
own stdio client and acting through a live service."""

import asyncio
import json
import os
import shutil
import sys
from contextlib import asynccontextmanager

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from memories.mcp import tools as remote
from memories.models import Memory
from tests.mcp.helpers import call, http_session


@asynccontextmanager
async def stdio_session(base_url: str, token: str, user_id: str = "u1"):
    parameters = StdioServerParameters(
        command=shutil.which("ltm-mcp", path=os.path.dirname(sys.executable)),
        args=["--user", user_id],
        env={**os.environ, "LTM_BASE_URL": base_url, "LTM_API_KEY": token},
    )
    async with (
        stdio_client(parameters) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def test_the_stdio_tools_are_the_remote_tools(live_server, token):
    async def scenario():
        async with stdio_session(live_server.url, token) as local:
            local_tools = (await local.list_tools()).tools
        async with http_session(live_server.url, token) as served:
            served_tools = (await served.list_tools()).tools
        return local_tools, served_tools

    local_tools, served_tools = asyncio.run(scenario())

    def described(tools):
        return [
            (tool.name, tool.description, json.dumps(tool.input_schema))
            for tool in tools
        ]

    assert described(local_tools) == described(served_tools)
    assert {tool.name for tool in local_tools} == set(remote.TOOL_DESCRIPTIONS)


def test_each_stdio_tool_acts_for_its_user_through_the_service(
    live_server, token, other_token
):
    async def scenario():
        async with stdio_session(live_server.url, token) as session:
            lisbon = await call(session, "remember", text="I live in Lisbon.")
            await call(session, "remember", text="I am allergic to peanuts.")
            await call(session, "remember", text="I have two cats.")
            recalled = await call(session, "recall", query="Where do I live?")
            forgotten = await call(
                session, "forget", request="Forget that I am allergic to peanuts."
            )
            deleted = await call(
                session, "delete_memory", memory_id=lisbon["added"][0]["id"]
            )
            recent = await call(session, "list_recent_memories", kind="fact")
        async with stdio_session(live_server.url, token, user_id="u2") as session:
            cats = recent["memories"][0]["id"]
            not_theirs = await session.call_tool("delete_memory", {"memory_id": cats})
        async with stdio_session(live_server.url, other_token) as session:
            other_tenant = await call(session, "recall", query="cats")
        return lisbon, recalled, forgotten, deleted, recent, not_theirs, other_tenant

    lisbon, recalled, forgotten, deleted, recent, not_theirs, other_tenant = (
        asyncio.run(scenario())
    )

    lisbon_id = lisbon["added"][0]["id"]
    assert recalled["memories"][0]["text"] == "I live in Lisbon."
    assert lisbon_id in {memory["id"] for memory in recalled["memories"]}
    assert "I am allergic to peanuts." in {m["text"] for m in forgotten["forgotten"]}
    assert deleted == {"deleted": lisbon_id}
    assert [memory["text"] for memory in recent["memories"]] == ["I have two cats."]
    assert not_theirs.is_error
    assert other_tenant["memories"] == []
    assert Memory.objects.get(vector_key=lisbon_id).status == Memory.Status.DELETED
    assert Memory.objects.filter(
        text="I have two cats.", status=Memory.Status.ACTIVE
    ).exists()
