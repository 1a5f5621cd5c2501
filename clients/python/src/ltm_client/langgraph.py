"""Long-term memory tools for LangGraph agents (`pip install 'ltm-client[langgraph]'`).

`create_memory_tools()` returns three LangChain tools, each sync (`Client`) and
async (`AsyncClient`), for a LangGraph agent (`ToolNode`, `create_react_agent`):

- `remember(content)`: LTM keeps what is worth keeping from it (facts and the
  episode), as an imported message of this moment, without a reply;
- `search_memory(query, kind=None)`: the user's memories, best first, with ids;
- `forget_memory(memory_id)`: forget one memory the search returned (another
  user's id, or an unknown one, is an error the model reads).

These are tools, not a LangGraph `BaseStore`: a store is a key-value store
(the caller picks namespace and key, `get` returns the value put), while LTM
chooses what to keep from what it is told, keeps its own ids, updates or
supersedes facts, and may keep several memories or none for one message.

The end user is `user_id`, or else the run's `config["configurable"]["user_id"]`,
so one set of tools serves every user of a compiled graph.
"""

from datetime import UTC, datetime
from typing import Any, Literal

try:
    from langchain_core.runnables import RunnableConfig
    from langchain_core.tools import BaseTool, StructuredTool, ToolException
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "ltm_client.langgraph needs langchain-core: pip install 'ltm-client[langgraph]'"
    ) from exc

from ltm_client._async import AsyncClient
from ltm_client._sync import Client
from ltm_client.errors import NotFound
from ltm_client.models import ImportMessage, ImportResult, MemoryDetail, SearchResult

__all__ = ["create_memory_tools"]

REMEMBER = """Store something worth remembering about the user for later \
conversations: a fact, a preference, an event, in the user's own words \
("I moved to Lisbon last month"). Memory keeps what is worth keeping and \
updates older facts it replaces."""
SEARCH = """Search the user's long-term memory: facts and past messages, \
best first, each with its id, kind (fact or episode), score and date."""
FORGET = """Forget one memory of the user, by the id search_memory returned."""


class _Memory:
    """What the tools share: the clients, the user and how many to find."""

    def __init__(
        self,
        *,
        user_id: str | None,
        client: Client | None,
        async_client: AsyncClient | None,
        top_k: int,
    ):
        if client is None and async_client is None:
            client, async_client = Client(), AsyncClient()
        self.user_id = user_id
        self.client = client
        self.async_client = async_client
        self.top_k = top_k

    def user(self, config: RunnableConfig | None) -> str:
        user_id = self.user_id or (config or {}).get("configurable", {}).get("user_id")
        if not user_id:
            raise ValueError(
                "No end user: pass user_id= to create_memory_tools or "
                'run the graph with config={"configurable": {"user_id": ...}}'
            )
        return user_id

    def sync(self) -> Client:
        if self.client is None:
            raise ValueError("These memory tools have no sync client: pass client=")
        return self.client

    def asynchronous(self) -> AsyncClient:
        if self.async_client is None:
            raise ValueError(
                "These memory tools have no async client: pass async_client="
            )
        return self.async_client


def _now_message(content: str) -> list[ImportMessage]:
    return [ImportMessage(text=content, sent_at=datetime.now(UTC))]


def _remembered(result: ImportResult) -> dict[str, Any]:
    return {
        "added": [m.text for m in result.added],
        "updated": [
            {"text": m.text, "previous": m.previous_text} for m in result.updated
        ],
        "episodes": result.episodes,
    }


def _found(result: SearchResult) -> list[dict[str, Any]]:
    return [
        {
            "id": hit.id,
            "text": hit.text,
            "kind": hit.kind,
            "role": hit.role,
            "score": round(hit.score, 4),
            "happened_at": hit.happened_at.isoformat() if hit.happened_at else None,
        }
        for hit in result.hits
    ]


def _check_owner(detail: MemoryDetail | None, memory_id: str, user_id: str) -> None:
    # Ids are the tenant's: a tool run for one user must not reach another's.
    if detail is None or detail.user_id != user_id:
        # The model reads this as the tool's answer (handle_tool_error).
        raise ToolException(f"No memory {memory_id} of this user.")


def create_memory_tools(
    *,
    user_id: str | None = None,
    client: Client | None = None,
    async_client: AsyncClient | None = None,
    top_k: int = 5,
) -> list[BaseTool]:
    """`remember`, `search_memory` and `forget_memory` over LTM, for one end
    user (`user_id`) or the run's `configurable.user_id`. Given neither client,
    both are made from LTM_API_KEY and LTM_BASE_URL."""
    memory = _Memory(
        user_id=user_id, client=client, async_client=async_client, top_k=top_k
    )

    def remember(content: str, config: RunnableConfig) -> dict[str, Any]:
        result = memory.sync().import_messages(
            memory.user(config), _now_message(content)
        )
        return _remembered(result)

    async def aremember(content: str, config: RunnableConfig) -> dict[str, Any]:
        result = await memory.asynchronous().import_messages(
            memory.user(config), _now_message(content)
        )
        return _remembered(result)

    def search_memory(
        query: str,
        config: RunnableConfig,
        kind: Literal["fact", "episode"] | None = None,
    ) -> list[dict[str, Any]]:
        result = memory.sync().search(
            memory.user(config), query, top_k=memory.top_k, kind=kind
        )
        return _found(result)

    async def asearch_memory(
        query: str,
        config: RunnableConfig,
        kind: Literal["fact", "episode"] | None = None,
    ) -> list[dict[str, Any]]:
        result = await memory.asynchronous().search(
            memory.user(config), query, top_k=memory.top_k, kind=kind
        )
        return _found(result)

    def forget_memory(memory_id: str, config: RunnableConfig) -> str:
        ltm = memory.sync()
        try:
            detail = ltm.get_memory(memory_id)
        except NotFound:
            detail = None
        _check_owner(detail, memory_id, memory.user(config))
        ltm.delete_memory(memory_id)
        return f"Forgotten: {memory_id}"

    async def aforget_memory(memory_id: str, config: RunnableConfig) -> str:
        ltm = memory.asynchronous()
        try:
            detail = await ltm.get_memory(memory_id)
        except NotFound:
            detail = None
        _check_owner(detail, memory_id, memory.user(config))
        await ltm.delete_memory(memory_id)
        return f"Forgotten: {memory_id}"

    return [
        StructuredTool.from_function(
            func=remember, coroutine=aremember, name="remember", description=REMEMBER
        ),
        StructuredTool.from_function(
            func=search_memory,
            coroutine=asearch_memory,
            name="search_memory",
            description=SEARCH,
        ),
        StructuredTool.from_function(
            func=forget_memory,
            coroutine=aforget_memory,
            name="forget_memory",
            description=FORGET,
            handle_tool_error=True,
        ),
    ]
