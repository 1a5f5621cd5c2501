import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.services import tenant_create, token_issue
from memories.vectorstores import get_vector_store, reset_vector_store


@pytest.fixture(autouse=True)
def fresh_vector_store(tmp_path, settings):
    """Each test gets its own local vector store file."""
    settings.LTM_LOCAL_VECTOR_STORE_PATH = str(tmp_path / "vectors.sqlite3")
    reset_vector_store()
    yield
    reset_vector_store()


@pytest.fixture(autouse=True)
def clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def vector_store():
    return get_vector_store()


@pytest.fixture
def tenant_a(db):
    return tenant_create(slug="tenant-a", name="Tenant A")


@pytest.fixture
def tenant_b(db):
    return tenant_create(slug="tenant-b", name="Tenant B")


def _client_for(tenant) -> APIClient:
    issued = token_issue(tenant=tenant)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    client.token = issued.token
    return client


@pytest.fixture
def client_a(tenant_a) -> APIClient:
    return _client_for(tenant_a)


@pytest.fixture
def client_b(tenant_b) -> APIClient:
    return _client_for(tenant_b)


@pytest.fixture
def anonymous_client() -> APIClient:
    return APIClient()
