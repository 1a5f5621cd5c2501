from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from memories.api import (
    ErasureJobViewSet,
    ExportJobViewSet,
    ForgetViewSet,
    MemoryViewSet,
    MessageStatusViewSet,
    MessageViewSet,
    UserViewSet,
)


class _Router(SimpleRouter):
    """The router's routes, and the end users' after them.

    A userId may hold '/', so the users' paths take the rest of the path; the
    export's comes before the erasure's, which would otherwise take it.
    """

    def __init__(self, *, with_users: bool):
        super().__init__(trailing_slash=False)
        self.with_users = with_users

    def get_urls(self):
        urls = super().get_urls()
        if not self.with_users:
            return urls
        return [
            *urls,
            path("users", UserViewSet.as_view({"get": "list"}), name="user-list"),
            re_path(
                r"^users/(?P<userId>.+)/export$",
                UserViewSet.as_view({"get": "export"}),
                name="user-export",
            ),
            re_path(
                r"^users/(?P<userId>.+)$",
                UserViewSet.as_view({"delete": "destroy"}),
                name="user-detail",
            ),
        ]


def build_router(*, with_memories: bool) -> SimpleRouter:
    router = _Router(with_users=with_memories)
    router.register("message", MessageViewSet, basename="message")
    router.register("forget", ForgetViewSet, basename="forget")
    if with_memories:
        router.register("memories", MemoryViewSet, basename="memory")
        router.register("messages", MessageStatusViewSet, basename="message-status")
        router.register("erasures", ErasureJobViewSet, basename="erasure")
        router.register("exports", ExportJobViewSet, basename="export")
    return router
