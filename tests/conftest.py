import ipaddress
import socket

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.services import tenant_create, token_issue
from memories.vectorstores import get_vector_store, reset_vector_store


def _is_loopback(host) -> bool:
    if host is None:  # getaddrinfo(None, port) means this machine
        return True
    if isinstance(host, bytes):
        host = host.decode()
    host = host.strip("[]").split("%")[0].lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


@pytest.fixture(autouse=True)
def block_remote_network(request, monkeypatch):
    """Fail any test that tries to reach a non-loopback host.

    A gap in a mock (moto, say) must not quietly call a real service. pytest.fail
    raises an exception that `except Exception` does not catch, so neither botocore's
    retries nor any other handler can swallow the failure. Name lookups are refused
    too, so the failure is the same with or without DNS on the machine.
    """
    if request.node.get_closest_marker("live"):
        return  # opt-in tests against real AWS (tests/live)
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def refuse(what: str, host) -> None:
        pytest.fail(f"Test tried to {what} {host!r}: only loopback is allowed.")

    def connect(sock, address):
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            refuse("connect to", address[0])
        return real_connect(sock, address)

    def connect_ex(sock, address):
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            refuse("connect to", address[0])
        return real_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            refuse("look up", host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


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
