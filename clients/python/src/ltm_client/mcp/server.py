"""`ltm-mcp`: LTM's MCP tools over stdio for local clients, acting for one end
user through a remote LTM (LTM_BASE_URL, LTM_API_KEY, LTM_USER_ID)."""

from __future__ import annotations

import argparse
import os
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from ltm_client import Client, LTMError, NotFound
from ltm_client.mcp.descriptions import (
    DELETE,
    FORGET,
    INSTRUCTIONS,
    LIST_RECENT,
    RECALL,
    REMEMBER,
)
from ltm_client.models import Memory

Text = Annotated[
    str, Field(min_length=1, description="The user's words, as they said them.")
]
Query = Annotated[
    str, Field(min_length=1, description="A question or a few words to look for.")
]
Limit = Annotated[
    int, Field(ge=1, le=50, description="How many memories at most (1-50).")
]
Kind = Annotated[
    Literal["fact", "episode"] | None,
    Field(description="Only 'fact' or only 'episode'; all kinds when omitted."),
]
MemoryId = Annotated[
    str, Field(min_length=1, description="The memory's id, as recall returned it.")
]


def memory_summary(memory: Memory) -> dict[str, Any]:
    """A memory as a model reads it, as the service's /mcp shows it."""
    return {
        "id": memory.id,
        "kind": memory.kind,
        "text": memory.text,
        "happenedAt": memory.happened_at.isoformat() if memory.happened_at else None,
    }


def build_server(client: Client, user_id: str) -> MCPServer:
    """The tools, acting for `user_id` through `client`."""
    server = MCPServer("LTM", instructions=INSTRUCTIONS, version="1.0.0")

    def failing_as_tool_error(call):
        # The service's error, in its words, is what the model should read.
        try:
            return call()
        except LTMError as error:
            raise ToolError(f"{error.code}: {error.message}") from error

    @server.tool(
        description=REMEMBER,
        annotations=ToolAnnotations(title="Remember", destructiveHint=False),
    )
    def remember(text: Text) -> dict:
        # /message: the service's reply is not needed here and is dropped.
        sent = failing_as_tool_error(lambda: client.message(user_id, text))
        return {
            "messageId": sent.message_id,
            "added": [memory_summary(memory) for memory in sent.added],
            "updated": [
                {**memory_summary(memory), "previousText": memory.previous_text}
                for memory in sent.updated
            ],
        }

    @server.tool(
        description=RECALL,
        annotations=ToolAnnotations(title="Recall", readOnlyHint=True),
    )
    def recall(query: Query, limit: Limit = 5) -> dict:
        found = failing_as_tool_error(
            lambda: client.search(user_id, query, top_k=limit)
        )
        return {
            "memories": [
                {**memory_summary(hit), "score": round(hit.score, 4)}
                for hit in found.hits
            ]
        }

    @server.tool(
        description=FORGET,
        annotations=ToolAnnotations(title="Forget", destructiveHint=True),
    )
    def forget(request: Text) -> dict:
        outcome = failing_as_tool_error(lambda: client.forget(user_id, request))
        return {
            "scope": outcome.scope,
            "forgottenCount": outcome.forgotten_count,
            "forgotten": [
                {**memory_summary(memory), "text": memory.previous_text}
                for memory in outcome.forgotten
            ],
        }

    @server.tool(
        description=LIST_RECENT,
        annotations=ToolAnnotations(title="Recent memories", readOnlyHint=True),
    )
    def list_recent_memories(limit: Limit = 20, kind: Kind = None) -> dict:
        # The API's pages run oldest first: the newest are the last ones read.
        memories = failing_as_tool_error(
            lambda: list(client.memories(user_id, kind=kind, page_size=500))
        )
        return {"memories": [memory_summary(m) for m in memories[::-1][:limit]]}

    @server.tool(
        description=DELETE,
        annotations=ToolAnnotations(
            title="Delete a memory", destructiveHint=True, idempotentHint=True
        ),
    )
    def delete_memory(memory_id: MemoryId) -> dict:
        # The token reaches every user of its tenant: the tools only this one's.
        try:
            memory = client.get_memory(memory_id)
        except NotFound as error:
            raise ToolError(
                f"No memory of this user has the id {memory_id!r}."
            ) from error
        if memory.user_id != user_id:
            raise ToolError(f"No memory of this user has the id {memory_id!r}.")
        failing_as_tool_error(lambda: client.delete_memory(memory_id))
        return {"deleted": memory_id}

    return server


def main(argv: list[str] | None = None) -> None:
    """Serve the tools on stdin and stdout until the client closes them."""
    parser = argparse.ArgumentParser(
        prog="ltm-mcp",
        description="LTM's memory tools for a local MCP client, over stdio.",
    )
    parser.add_argument(
        "--user",
        default=os.environ.get("LTM_USER_ID"),
        help="The end user the tools act for (default: LTM_USER_ID).",
    )
    parser.add_argument(
        "--base-url", help="The LTM service's address (default: LTM_BASE_URL)."
    )
    arguments = parser.parse_args(argv)
    if not arguments.user:
        parser.error("name the end user with --user or LTM_USER_ID")
    # The token comes from LTM_API_KEY, never from the command line.
    with Client(base_url=arguments.base_url) as client:
        build_server(client, arguments.user).run("stdio")


if __name__ == "__main__":
    main()
