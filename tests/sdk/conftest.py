import httpx
import pytest
from ltm_client import AsyncClient, Client, RetryPolicy

from accounts.services import token_issue

# Short waits, so that retries do not slow the suite down.
FAST_RETRIES = RetryPolicy(max_attempts=6, backoff=0.05, max_backoff=2.0)


@pytest.fixture
def token(tenant_a) -> str:
    return token_issue(tenant=tenant_a).secret


@pytest.fixture
def other_token(tenant_b) -> str:
    return token_issue(tenant=tenant_b).secret


class Recorder:
    """The statuses of every response the SDK received, retries included."""

    def __init__(self):
        self.statuses: list[int] = []

    def sync(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)

    async def asynchronous(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(live_server, token, recorder):
    http = httpx.Client(event_hooks={"response": [recorder.sync]})
    with Client(token, live_server.url, retry=FAST_RETRIES, http_client=http) as client:
        yield client


@pytest.fixture
def make_async_client(live_server, token, recorder):
    def make() -> AsyncClient:
        http = httpx.AsyncClient(event_hooks={"response": [recorder.asynchronous]})
        return AsyncClient(token, live_server.url, retry=FAST_RETRIES, http_client=http)

    return make
