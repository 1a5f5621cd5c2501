"""The bundled embedding model: int8 build, checksums, and what the vectors mean."""

import shutil

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from memories.models import Memory
from memories.providers.embeddings import (
    LOCAL_MODEL_NAME,
    LOCAL_QUANTIZED_MODEL_NAME,
    LocalEmbedder,
    _default_model_path,
    _default_tokenizer_path,
    reset_embedder,
)
from memories.vectorstores import reset_vector_store
from tests.helpers import post_message


def embedder(tmp_path, **options) -> LocalEmbedder:
    return LocalEmbedder(
        model_path=_default_model_path(),
        tokenizer_path=_default_tokenizer_path(),
        cache_dir=tmp_path / "models",
        **options,
    )


def test_the_int8_build_is_made_once_and_reused(tmp_path):
    embedder(tmp_path)
    built = list((tmp_path / "models").glob("*.onnx"))
    assert len(built) == 1
    first_write = built[0].stat().st_mtime_ns

    embedder(tmp_path)

    assert list((tmp_path / "models").glob("*.onnx")) == built
    assert built[0].stat().st_mtime_ns == first_write
    # Nothing half-built is left beside it.
    assert [p.name for p in (tmp_path / "models").iterdir()] == [built[0].name]


def test_int8_vectors_keep_the_meaning_of_the_float32_ones(tmp_path):
    texts = [
        "I moved to Lisbon last month.",
        "My new home is in Portugal's capital.",
        "I am allergic to peanuts.",
    ]
    quantized = embedder(tmp_path).embed(texts)
    exact = embedder(tmp_path, quantize=False).embed(texts)

    agreement = (quantized * exact).sum(axis=1)
    assert agreement.min() > 0.97
    # The paraphrase stays closer to its original than the unrelated fact.
    assert quantized[0] @ quantized[1] > quantized[0] @ quantized[2]


def test_a_tampered_model_file_is_refused(tmp_path):
    copy = tmp_path / "model.onnx"
    shutil.copy(_default_model_path(), copy)
    with copy.open("r+b") as handle:
        handle.seek(-16, 2)
        handle.write(b"\0" * 16)

    with pytest.raises(ImproperlyConfigured, match="Checksum mismatch"):
        LocalEmbedder(
            model_path=copy,
            tokenizer_path=_default_tokenizer_path(),
            cache_dir=tmp_path / "models",
        )


@pytest.mark.parametrize(
    ("quantize", "model_name"),
    [(True, LOCAL_QUANTIZED_MODEL_NAME), (False, LOCAL_MODEL_NAME)],
)
def test_memories_record_which_model_embedded_them(
    client_a, settings, quantize, model_name
):
    settings.LTM_LOCAL_EMBEDDING_QUANTIZE = quantize
    reset_embedder()
    reset_vector_store()
    try:
        response = post_message(client_a, "u1", "I am allergic to peanuts.")
    finally:
        reset_embedder()
    assert response.status_code == 200
    # The fact and the message's episode, both embedded by the same model.
    memories = list(Memory.objects.all())
    assert sorted(memory.kind for memory in memories) == ["episode", "fact"]
    for memory in memories:
        assert memory.embedding_model == model_name
        assert np.frombuffer(memory.embedding, dtype=np.float32).shape == (384,)
