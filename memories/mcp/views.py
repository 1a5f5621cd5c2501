"""/mcp: LTM's tools over MCP's Streamable HTTP, served by the service itself.

DRF authenticates the request (the API's bearer tokens, the same check),
applies the tenant's rate limit and shapes its errors; then the request goes,
as sent, to the MCP SDK's own Streamable HTTP app, in its stateless JSON mode:
every POST is a whole exchange (no session, no server-sent stream), which is
what a WSGI worker that serves one request at a time can hold.
"""

import anyio
from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from mcp.server.transport_security import TransportSecuritySettings
from rest_framework.exceptions import ValidationError
from rest_framework.views import APIView

from memories.mcp.tools import Acting, acting, build_server
from memories.serializers import UserPathSerializer

# The header naming the end user the tools act for, fixed in the client's
# configuration next to the token.
USER_HEADER = "X-LTM-User"
PATH = "/mcp"

_SERVER = build_server()
# The Host header is Django's to check (ALLOWED_HOSTS), and a browser page on
# another origin cannot send the bearer token: no second check here.
_TRANSPORT_SECURITY = TransportSecuritySettings(enable_dns_rebinding_protection=False)
_DROPPED_HEADERS = {"content-length", "transfer-encoding", "connection"}


def _scope(request) -> dict:
    """The ASGI scope of a Django request, as the MCP app reads it."""
    host, _, port = request.get_host().partition(":")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.scheme,
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": request.META.get("QUERY_STRING", "").encode("latin-1"),
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.items()
        ],
        "server": (host, int(port or (443 if request.is_secure() else 80))),
        "client": (request.META.get("REMOTE_ADDR", ""), 0),
    }


async def _exchange(scope: dict, body: bytes, who: Acting) -> tuple[int, list, bytes]:
    """One request through the MCP app: its status, headers and body.

    The app and its session manager live for this request only: the manager's
    task group needs a running event loop, and a WSGI worker has one only
    while async_to_sync runs this. Stateless, nothing is lost between requests.
    """
    acting.set(who)
    app = _SERVER.streamable_http_app(
        streamable_http_path=PATH,
        json_response=True,
        stateless_http=True,
        max_request_body_size=settings.LTM_MAX_REQUEST_BYTES,
        transport_security=_TRANSPORT_SECURITY,
    )
    answered = anyio.Event()
    sent = False
    status, headers, chunks = 500, [], []

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], message.get("headers", [])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                answered.set()

    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    return status, headers, b"".join(chunks)


class McpView(APIView):
    """MCP's Streamable HTTP endpoint: POST a JSON-RPC message, get its answer."""

    # The body is the MCP app's to read, as sent.
    parser_classes: list = []

    @extend_schema(exclude=True)
    def post(self, request):
        user_id = request.headers.get(USER_HEADER)
        if user_id is None:
            raise ValidationError(
                {USER_HEADER: f"Name the end user in the {USER_HEADER} header."}
            )
        named = UserPathSerializer(data={"userId": user_id})
        named.is_valid(raise_exception=True)
        who = Acting(tenant=request.user, user_id=named.validated_data["userId"])
        status, headers, body = async_to_sync(_exchange)(
            _scope(request), request.body, who
        )
        response = HttpResponse(body, status=status)
        for name, value in headers:
            if name.decode("latin-1").lower() not in _DROPPED_HEADERS:
                response[name.decode("latin-1")] = value.decode("latin-1")
        return response

    # GET (a stream of the server's own messages) and DELETE (the end of a
    # session) are 405, as the protocol lets a server without either answer.
