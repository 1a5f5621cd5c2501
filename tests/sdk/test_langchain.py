"""The LangChain retriever (ltm_client.langchain) against the live service:
sync and async, filters, user isolation, and langchain-tests' standard
retriever tests."""

import asyncio

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests
from ltm_client import Client
from ltm_client.langchain import LTMRetriever

from tests.sdk.conftest import FAST_RETRIES


@pytest.fixture
def remembered(client):
    client.message("u1", "I moved to Lisbon last month.")
    client.message("u1", "Could you recommend a cafe in Lisbon?")
    client.message("u2", "I moved to Lisbon in 2019 and I teach piano.")


def test_the_retriever_finds_what_the_user_said(client, remembered):
    docs = LTMRetriever(user_id="u1", client=client).invoke("Where does the user live?")
    assert all(isinstance(doc, Document) for doc in docs)
    lisbon = next(doc for doc in docs if doc.metadata["kind"] == "fact")
    assert lisbon.page_content == "I moved to Lisbon last month."
    assert lisbon.id == lisbon.metadata["id"]
    assert lisbon.metadata["role"] == "user"
    assert lisbon.metadata["score"] > 0
    assert lisbon.metadata["happened_at"]
    assert lisbon.metadata["provenance"][0]["message_id"]
    assert client.get_memory(lisbon.id).user_id == "u1"


def test_it_searches_one_user_only(client, remembered):
    for user_id, other in (("u1", "piano"), ("u2", "cafe")):
        docs = LTMRetriever(user_id=user_id, client=client, top_k=10).invoke("Lisbon")
        assert docs
        assert not [doc for doc in docs if other in doc.page_content]


def test_filters_and_top_k_from_the_constructor_or_the_call(client, remembered):
    facts = LTMRetriever(user_id="u1", client=client, kind="fact").invoke("Lisbon")
    assert {doc.metadata["kind"] for doc in facts} == {"fact"}
    episodes = LTMRetriever(user_id="u1", client=client).invoke(
        "Lisbon", kind="episode", top_k=1
    )
    assert [doc.metadata["kind"] for doc in episodes] == ["episode"]
    nothing = LTMRetriever(
        user_id="u1", client=client, start="2001-01-01", end="2001-01-02"
    ).invoke("Lisbon")
    assert nothing == []
    with pytest.raises(TypeError, match="unknown"):
        LTMRetriever(user_id="u1", client=client).invoke("Lisbon", colour="red")


def test_ainvoke_goes_through_the_async_client(client, remembered, make_async_client):
    async def run():
        async with make_async_client() as async_client:
            # No sync client: only the async one can answer.
            retriever = LTMRetriever(user_id="u1", async_client=async_client)
            return retriever, await retriever.ainvoke("Lisbon", role="user")

    retriever, docs = asyncio.run(run())
    assert "I moved to Lisbon last month." in [doc.page_content for doc in docs]
    assert {doc.metadata["role"] for doc in docs} == {"user"}
    with pytest.raises(ValueError, match="no sync client"):
        retriever.invoke("Lisbon")


# The standard tests' one async test needs pytest-asyncio's mark; the class mark
# reaches their sync tests too, which pytest-asyncio warns of and runs as they are.
@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:The test <Function:pytest.PytestWarning")
class TestStandardRetrieverTests(RetrieversIntegrationTests):
    """langchain-tests' own checks of a retriever (k in constructor and call,
    invoke and ainvoke return Documents)."""

    @pytest.fixture(autouse=True)
    def service(self, live_server, token, make_async_client):
        with Client(token, live_server.url, retry=FAST_RETRIES) as client:
            for n in range(4):
                client.message("u1", f"I visited Lisbon in {2010 + n}.")
            self.params = {
                "user_id": "u1",
                "client": client,
                "async_client": make_async_client(),
            }
            yield

    @property
    def retriever_constructor(self) -> type[LTMRetriever]:
        return LTMRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return self.params

    @property
    def retriever_query_example(self) -> str:
        return "When did I visit Lisbon?"

    @property
    def num_results_arg_name(self) -> str:
        return "top_k"
