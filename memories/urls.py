from rest_framework.routers import SimpleRouter

from memories.api import ForgetViewSet, MemoryViewSet, MessageViewSet


def build_router(*, with_memories: bool) -> SimpleRouter:
    router = SimpleRouter(trailing_slash=False)
    router.register("message", MessageViewSet, basename="message")
    router.register("forget", ForgetViewSet, basename="forget")
    if with_memories:
        router.register("memories", MemoryViewSet, basename="memory")
    return router
