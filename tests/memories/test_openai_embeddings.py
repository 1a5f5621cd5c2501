"""Embeddings from OpenAI: the real `openai` client against a local fake server."""

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from memories.models import Memory, Message
from memories.providers.embeddings import (
    EmbeddingError,
    OpenAIEmbedder,
    build_embedder,
    reset_embedder,
)
from memories.vectorstores import reset_vector_store
from tests.fakes.openai_server import FakeOpenAI, fake_embedding
from tests.helpers import post_message

DIMENSION = 64
TWO_FACTS = "I moved to Lisbon last month and I am allergic to peanuts."


@pytest.fixture
def fake_openai():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def openai_embeddings(settings, fake_openai):
    settings.LTM_EMBEDDINGS_PROVIDER = "openai"
    settings.OPENAI_API_KEY = "sk-test-key"
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.LTM_OPENAI_EMBEDDING_MODEL = "text-embedding-3-small"
    settings.LTM_OPENAI_EMBEDDING_DIMENSIONS = DIMENSION
    settings.LTM_OPENAI_MAX_RETRIES = 2
    settings.LTM_OPENAI_TIMEOUT_SECONDS = 5
    reset_embedder()
    reset_vector_store()
    yield fake_openai
    reset_embedder()
    reset_vector_store()


def stored_vector(memory: Memory) -> np.ndarray:
    return np.frombuffer(memory.embedding, dtype=np.float32)


def test_a_message_and_its_facts_are_embedded_in_one_request(
    client_a, openai_embeddings
):
    response = post_message(client_a, "u1", TWO_FACTS)

    assert response.status_code == 200, response.content
    requests = openai_embeddings.embedding_requests()
    assert len(requests) == 1
    sent = requests[0]
    assert sent.headers["authorization"] == "Bearer sk-test-key"
    assert sent.body["model"] == "text-embedding-3-small"
    assert sent.body["dimensions"] == DIMENSION
    added = {item["text"] for item in response.json()["added"]}
    assert len(added) == 2
    assert sent.body["input"][0] == TWO_FACTS
    assert set(sent.body["input"][1:]) == added


def test_each_memory_keeps_the_vector_of_its_own_text(client_a, openai_embeddings):
    response = post_message(client_a, "u1", TWO_FACTS)

    assert response.status_code == 200
    memories = list(Memory.objects.filter(status=Memory.Status.ACTIVE))
    # Two facts, and the message as an episode.
    assert sorted(memory.kind for memory in memories) == ["episode", "fact", "fact"]
    for memory in memories:
        expected = np.asarray(fake_embedding(memory.text, DIMENSION), dtype=np.float32)
        assert np.allclose(stored_vector(memory), expected, atol=1e-5)
        assert memory.embedding_model == "text-embedding-3-small"
        assert memory.embedding_dimension == DIMENSION


def test_vectors_returned_out_of_order_are_matched_by_index(
    client_a, openai_embeddings
):
    openai_embeddings.reverse_order = True

    response = post_message(client_a, "u1", TWO_FACTS)

    assert response.status_code == 200
    for memory in Memory.objects.filter(status=Memory.Status.ACTIVE):
        expected = np.asarray(fake_embedding(memory.text, DIMENSION), dtype=np.float32)
        assert np.allclose(stored_vector(memory), expected, atol=1e-5)


def test_recall_works_with_openai_vectors(client_a, openai_embeddings):
    post_message(client_a, "u1", TWO_FACTS)

    response = post_message(client_a, "u1", "Am I allergic to anything?")

    recalled = [item["text"] for item in response.json()["recalled"]]
    assert any("peanuts" in text for text in recalled), recalled


def test_a_rate_limit_answer_is_retried_and_the_message_is_kept(
    client_a, openai_embeddings
):
    openai_embeddings.fail_next(429)

    response = post_message(client_a, "u1", TWO_FACTS)

    assert response.status_code == 200, response.content
    assert len(openai_embeddings.embedding_requests()) == 2
    active = Memory.objects.filter(status=Memory.Status.ACTIVE)
    assert active.filter(kind=Memory.Kind.FACT).count() == 2
    assert active.filter(kind=Memory.Kind.EPISODE).get().text == TWO_FACTS


def test_a_server_that_keeps_failing_gives_503_and_stores_nothing(
    client_a, openai_embeddings, vector_store
):
    post_message(client_a, "u1", "My name is Ada.")
    before_memories = Memory.objects.count()
    before_messages = Message.objects.count()
    openai_embeddings.fail_always(500)

    response = post_message(client_a, "u1", TWO_FACTS)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "provider_unavailable"
    # One try and the two retries the settings allow.
    assert len(openai_embeddings.embedding_requests()) == 1 + 3
    assert Memory.objects.count() == before_memories
    assert Message.objects.count() == before_messages
    listed = client_a.get("/api/v1/memories", {"userId": "u1"}).json()["results"]
    # The fact and the episode of the first message only.
    assert sorted((item["kind"], item["text"]) for item in listed) == [
        ("episode", "My name is Ada."),
        ("fact", "My name is Ada."),
    ]


def test_vectors_of_the_wrong_dimension_are_refused(client_a, openai_embeddings):
    openai_embeddings.dimension_override = DIMENSION // 2

    response = post_message(client_a, "u1", TWO_FACTS)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "provider_unavailable"
    assert Memory.objects.count() == 0
    assert Message.objects.count() == 0


def test_a_server_that_does_not_answer_in_time_gives_503(
    client_a, openai_embeddings, settings
):
    settings.LTM_OPENAI_TIMEOUT_SECONDS = 0.2
    settings.LTM_OPENAI_MAX_RETRIES = 0
    reset_embedder()
    openai_embeddings.delay_seconds = 1.0

    response = post_message(client_a, "u1", TWO_FACTS)

    assert response.status_code == 503
    assert Memory.objects.count() == 0


def test_an_import_is_embedded_in_batches_within_the_request_limit(fake_openai):
    embedder = OpenAIEmbedder(
        api_key="sk-test-key",
        base_url=fake_openai.base_url,
        model="text-embedding-3-small",
        dimension=DIMENSION,
        batch_size=256,
    )
    texts = [f"fact number {i}" for i in range(600)]

    vectors = embedder.embed(texts)

    sizes = [len(r.body["input"]) for r in fake_openai.embedding_requests()]
    assert sizes == [256, 256, 88]
    assert vectors.shape == (600, DIMENSION)
    expected = np.asarray(fake_embedding(texts[300], DIMENSION), dtype=np.float32)
    assert np.allclose(vectors[300], expected, atol=1e-5)


def test_a_missing_api_key_is_reported_at_start_up(settings):
    settings.LTM_EMBEDDINGS_PROVIDER = "openai"
    settings.OPENAI_API_KEY = ""

    with pytest.raises(SystemCheckError, match="OPENAI_API_KEY"):
        call_command("check")
    with pytest.raises(ImproperlyConfigured, match="OPENAI_API_KEY"):
        build_embedder()


def test_an_unknown_provider_is_reported_at_start_up(settings):
    settings.LTM_EMBEDDINGS_PROVIDER = "word2vec"

    with pytest.raises(SystemCheckError, match="word2vec"):
        call_command("check")


def test_an_empty_answer_is_an_embedding_error(fake_openai):
    fake_openai.dimension_override = 3
    embedder = OpenAIEmbedder(
        api_key="k", base_url=fake_openai.base_url, model="m", dimension=DIMENSION
    )

    with pytest.raises(EmbeddingError, match="dimension"):
        embedder.embed(["anything"])
