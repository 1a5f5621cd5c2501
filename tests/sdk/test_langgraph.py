"""The LangGraph memory tools (ltm_client.langgraph) run by a LangGraph graph
against the live service: a scripted chat model calls them through ToolNode,
sync and async, for the user of the run's config."""

import asyncio

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from ltm_client.langgraph import create_memory_tools

from memories.models import Memory


def _call(name, **args):
    return {"name": name, "args": args, "id": f"call-{name}", "type": "tool_call"}


def _agent(tools, script):
    """A graph as LangGraph agents are built: model, tools, model, ... end.
    The model is scripted: each turn the next AIMessage of `script`."""
    model = GenericFakeChatModel(messages=iter(script))

    def call_model(state: MessagesState):
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", call_model)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile()


def _tool_messages(state) -> dict[str, ToolMessage]:
    return {m.name: m for m in state["messages"] if isinstance(m, ToolMessage)}


def _script(*calls):
    return [AIMessage(content="", tool_calls=[call]) for call in calls] + [
        AIMessage(content="Done.")
    ]


def test_an_agent_remembers_and_searches_for_the_user_of_the_run(client):
    client.message("u2", "I moved to Madrid last year.")
    agent = _agent(
        create_memory_tools(client=client),
        _script(
            _call("remember", content="I moved to Lisbon last month."),
            _call("search_memory", query="Where do I live?", kind="fact"),
        ),
    )
    state = agent.invoke(
        {"messages": [("user", "I moved to Lisbon last month.")]},
        {"configurable": {"user_id": "u1"}},
    )
    assert state["messages"][-1].content == "Done."
    results = _tool_messages(state)
    assert "I moved to Lisbon last month." in results["remember"].content
    assert "Lisbon" in results["search_memory"].content
    assert "Madrid" not in results["search_memory"].content
    assert Memory.objects.filter(user_id="u1", text__contains="Lisbon").exists()


def test_the_async_tools_forget_only_the_users_own_memories(client, make_async_client):
    mine = client.message("u1", "I am allergic to peanuts.").added[0].id
    theirs = client.message("u2", "I am allergic to cats.").added[0].id

    async def run():
        async with make_async_client() as async_client:
            tools = create_memory_tools(user_id="u1", async_client=async_client)
            agent = _agent(
                tools,
                _script(
                    _call("forget_memory", memory_id=theirs),
                    _call("search_memory", query="allergic"),
                ),
            )
            first = await agent.ainvoke({"messages": [("user", "Forget cats.")]})
            agent = _agent(tools, _script(_call("forget_memory", memory_id=mine)))
            second = await agent.ainvoke({"messages": [("user", "Forget peanuts.")]})
            return first, second

    first, second = asyncio.run(run())
    refused = _tool_messages(first)["forget_memory"]
    assert refused.status == "error"
    assert refused.content == f"No memory {theirs} of this user."
    assert client.get_memory(theirs).text == "I am allergic to cats."
    assert "peanuts" in _tool_messages(first)["search_memory"].content
    assert _tool_messages(second)["forget_memory"].content == f"Forgotten: {mine}"
    assert not Memory.objects.filter(user_id="u1", text__contains="peanuts").exists()


def test_without_a_user_the_tools_say_so(client):
    remember, _, forget = create_memory_tools(client=client)
    with pytest.raises(ValueError, match="No end user"):
        remember.invoke({"content": "I live in Lisbon."})
    unknown = forget.invoke(
        {"memory_id": "00000000-0000-0000-0000-000000000000"},
        {"configurable": {"user_id": "u1"}},
    )
    assert unknown == "No memory 00000000-0000-0000-0000-000000000000 of this user."
