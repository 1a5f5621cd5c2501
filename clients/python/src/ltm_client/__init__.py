"""LTM's Python client: `Client` (sync) and `AsyncClient` (asyncio)."""

from ltm_client._async import AsyncClient
from ltm_client._core import RetryPolicy
from ltm_client._sync import Client
from ltm_client.errors import *  # noqa: F403
from ltm_client.errors import ERRORS_BY_CODE, LTMError
from ltm_client.models import *  # noqa: F403

__all__ = ["ERRORS_BY_CODE", "AsyncClient", "Client", "LTMError", "RetryPolicy"]
__version__ = "0.1.0"
