from functools import cache

from django.contrib import admin
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from memories.chat_api import ChatCompletionsView
from memories.urls import build_router


@cache
def _mcp_view():
    from memories.mcp.views import McpView

    return McpView.as_view()


@csrf_exempt
def mcp(request, *args, **kwargs):
    # The MCP SDK and the web stack under it load with the first /mcp request,
    # not in every worker at its first request of any kind (over a second).
    return _mcp_view()(request, *args, **kwargs)


handler400 = "ltm_project.errors.bad_request"
handler404 = "ltm_project.errors.not_found"
handler500 = "ltm_project.errors.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"
    ),
    # The original contract: POST /message and POST /forget.
    path("", include((build_router(with_memories=False).urls, "legacy"))),
    path("api/v1/", include((build_router(with_memories=True).urls, "v1"))),
    # OpenAI's chat completions, for its clients pointed at <LTM>/v1.
    path(
        "v1/chat/completions",
        ChatCompletionsView.as_view(),
        name="chat-completions",
    ),
    # MCP's Streamable HTTP: LTM's tools for a model's client.
    path("mcp", mcp, name="mcp"),
]
