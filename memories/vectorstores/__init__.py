"""Vector stores: the local exact-search store (default) and Amazon S3 Vectors."""

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from memories.vectorstores.base import (
    Namespace,
    VectorHit,
    VectorRecord,
    VectorStore,
    VectorStoreError,
)

__all__ = [
    "Namespace",
    "VectorHit",
    "VectorRecord",
    "VectorStore",
    "VectorStoreError",
    "get_vector_store",
    "reset_vector_store",
    "use_vector_store",
]

_store: VectorStore | None = None
_lock = threading.Lock()


def build_vector_store(*, dimension: int, model_name: str) -> VectorStore:
    """Build the vector store the settings name."""
    if settings.LTM_VECTOR_STORE == "local":
        from memories.vectorstores.local import LocalVectorStore

        return LocalVectorStore(
            path=settings.LTM_LOCAL_VECTOR_STORE_PATH,
            dimension=dimension,
            model_name=model_name,
            cache_bytes=settings.LTM_LOCAL_VECTOR_CACHE_MB * 2**20,
        )
    if settings.LTM_VECTOR_STORE == "s3vectors":
        from memories.vectorstores.s3vectors import S3VectorsStore

        if not settings.LTM_S3VECTORS_BUCKET:
            raise ImproperlyConfigured(
                "LTM_VECTOR_STORE=s3vectors needs LTM_S3VECTORS_BUCKET."
            )
        return S3VectorsStore(
            bucket=settings.LTM_S3VECTORS_BUCKET,
            dimension=dimension,
            model_name=model_name,
            index_prefix=settings.LTM_S3VECTORS_INDEX_PREFIX,
            region=settings.LTM_S3VECTORS_REGION,
            endpoint_url=settings.LTM_S3VECTORS_ENDPOINT_URL,
            create_indexes=settings.LTM_S3VECTORS_CREATE_INDEXES,
            text_search=settings.LTM_S3VECTORS_TEXT_SEARCH,
            list_segments=settings.LTM_S3VECTORS_LIST_SEGMENTS,
            max_attempts=settings.LTM_S3VECTORS_MAX_ATTEMPTS,
            retry_mode=settings.LTM_S3VECTORS_RETRY_MODE,
            connect_timeout=settings.LTM_S3VECTORS_CONNECT_TIMEOUT_SECONDS,
            read_timeout=settings.LTM_S3VECTORS_READ_TIMEOUT_SECONDS,
        )
    raise ImproperlyConfigured(
        f"Unknown LTM_VECTOR_STORE {settings.LTM_VECTOR_STORE!r}: "
        "use 'local' or 's3vectors'."
    )


def get_vector_store() -> VectorStore:
    """The process-wide vector store, sized for the configured embedder."""
    global _store
    if _store is None:
        from memories.providers.embeddings import get_embedder

        embedder = get_embedder()
        with _lock:
            if _store is None:
                from memories.observability import TimedVectorStore

                _store = TimedVectorStore(
                    build_vector_store(
                        dimension=embedder.dimension, model_name=embedder.model_name
                    ),
                    store=settings.LTM_VECTOR_STORE,
                )
    return _store


def use_vector_store(store: VectorStore) -> None:
    """Make `store` the process-wide store (a wrapper, a store built by hand)."""
    global _store
    with _lock:
        _store = store


def reset_vector_store() -> None:
    """Close and forget the process-wide store (after a settings change)."""
    global _store
    with _lock:
        if _store is not None:
            _store.close()
        _store = None
