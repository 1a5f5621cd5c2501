"""REST endpoints: message, forget, memories and end users (thin: validate,
call, shape)."""

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response

from ltm_project.errors import error_body
from memories import selectors
from memories.models import ExportJob, Memory
from memories.pagination import end_user_page, memory_page
from memories.pipeline.decide import Op
from memories.pipeline.forget import forget_handle
from memories.pipeline.importing import (
    ImportOutcome,
    IncomingMessage,
    messages_import,
)
from memories.pipeline.message import message_handle
from memories.public_ids import public_message_id
from memories.search import SearchFilters
from memories.serializers import (
    USER_ID_PATTERN,
    EndUserPageSerializer,
    ErasureJobSerializer,
    ErrorSerializer,
    ExportJobSerializer,
    ForgetInputSerializer,
    ForgetOutputSerializer,
    ImportInputSerializer,
    ImportOutputSerializer,
    MemoryDetailSerializer,
    MemoryListQuerySerializer,
    MemoryOutputSerializer,
    MemoryPageSerializer,
    MessageInputSerializer,
    MessageOutputSerializer,
    MessageStatusSerializer,
    SearchInputSerializer,
    SearchOutputSerializer,
    UserErasureSerializer,
    UserExportSerializer,
    UserListQuerySerializer,
    UserPathSerializer,
)
from memories.user_data import (
    user_data_erase,
    user_data_export_chunks,
    user_data_holds_content,
)
from memories.user_data.exports import (
    export_delete,
    export_file,
    export_is_gone,
    export_job_start,
)
from memories.user_data.jobs import erasure_answer, erasure_job_start
from memories.writes import Actor, memory_delete

_ERRORS = {
    400: OpenApiResponse(
        ErrorSerializer,
        description="invalid_input (missing, empty, wrong-typed or oversized "
        "fields) or malformed_json.",
        examples=[
            OpenApiExample(
                "Oversized message",
                value={
                    "error": {
                        "code": "invalid_input",
                        "message": "message: Ensure this field has no more than "
                        "32000 characters.",
                        "details": {
                            "fields": {
                                "message": [
                                    {
                                        "code": "max_length",
                                        "message": "Ensure this field has no more "
                                        "than 32000 characters.",
                                    }
                                ]
                            }
                        },
                    }
                },
            )
        ],
    ),
    401: OpenApiResponse(
        ErrorSerializer,
        description="not_authenticated, invalid_token, token_revoked or "
        "tenant_inactive.",
    ),
    413: OpenApiResponse(ErrorSerializer, description="request_too_large."),
    415: OpenApiResponse(ErrorSerializer, description="unsupported_media_type."),
    429: OpenApiResponse(ErrorSerializer, description="rate_limited."),
    503: OpenApiResponse(ErrorSerializer, description="provider_unavailable."),
}


def _changes(outcome_changes, operation: Op):
    return [change for change in outcome_changes if change.operation == operation]


def _first_of_each_id(messages: list[dict]) -> tuple[list[int], list[str]]:
    """The positions of the batch's messages to store, and the clientMessageIds
    repeated in it. A later message repeating an earlier one's id is that same
    message sent again, skipped as a retry would be."""
    seen: set[str] = set()
    kept: list[int] = []
    repeated: list[str] = []
    for position, item in enumerate(messages):
        client_id = item["clientMessageId"]
        if client_id in seen:
            if client_id not in repeated:
                repeated.append(client_id)
            continue
        if client_id:
            seen.add(client_id)
        kept.append(position)
    return kept, repeated


def _import_incomplete(outcome: ImportOutcome) -> Response:
    response = Response(
        error_body(
            "import_incomplete",
            f"The time of one request ran out with {outcome.remaining} messages "
            "of the batch not stored; those before them are stored whole. Send the "
            "batch again to go on (stored clientMessageIds are skipped), or send "
            "messages[resumeFrom:].",
            {
                "imported": len(outcome.messages),
                "remaining": outcome.remaining,
                "resumeFrom": outcome.resume_from,
                "messageIds": {
                    client_id: public_message_id(pk)
                    for client_id, pk in outcome.message_ids.items()
                },
            },
        ),
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
    )
    response["Retry-After"] = "0"
    return response


class MessageViewSet(viewsets.ViewSet):
    """Send an end user's message; get a reply that uses their memories."""

    @extend_schema(
        summary="Send a message",
        description="Extracts the facts worth keeping from the message, recalls the "
        "user's related memories and replies with them. The original contract is "
        "`{userId, message}` -> `{reply}`; the other response fields are additions.",
        request=MessageInputSerializer,
        responses={200: MessageOutputSerializer, **_ERRORS},
        examples=[
            OpenApiExample(
                "Telling a fact",
                request_only=True,
                value={
                    "userId": "u1",
                    "message": "I moved to Lisbon last month and I am allergic to "
                    "peanuts.",
                },
            ),
            OpenApiExample(
                "Asking",
                request_only=True,
                value={"userId": "u1", "message": "Where do I live?"},
            ),
        ],
        tags=["memory"],
    )
    def create(self, request):
        data = MessageInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = message_handle(
            tenant=request.user,
            user_id=data.validated_data["userId"],
            text=data.validated_data["message"],
        )
        output = MessageOutputSerializer(
            {
                "reply": outcome.reply,
                "userId": data.validated_data["userId"],
                "messageId": outcome.message.pk,
                "recalled": outcome.recalled,
                "added": _changes(outcome.changes, Op.ADD),
                "updated": _changes(outcome.changes, Op.UPDATE),
                "deleted": _changes(outcome.changes, Op.DELETE),
                "episodes": outcome.episodes,
                "usage": outcome.calls,
                "memoryUpdate": outcome.message.memory_update,
            }
        )
        return Response(output.data, status=status.HTTP_200_OK)


def _prefers_async(request) -> bool:
    """RFC 7240's `Prefer: respond-async`, among the header's preferences."""
    preferences = request.headers.get("Prefer", "")
    return any(
        part.strip().split("=")[0].lower() == "respond-async"
        for part in preferences.replace(";", ",").split(",")
    )


def _prefer_async(work: str) -> OpenApiParameter:
    return OpenApiParameter(
        "Prefer",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description=f"respond-async: run the {work} as a task.",
    )


def _accepted(serializer, job, location: str) -> Response:
    """202 with a job as its serializer shows it, and where to follow it."""
    job.refresh_from_db()
    response = Response(serializer(job).data, status=status.HTTP_202_ACCEPTED)
    response["Location"] = location
    return response


class ExportNotReady(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "export_not_ready"
    default_detail = "The export is still being written; see its state."


class ExportGone(APIException):
    status_code = status.HTTP_410_GONE
    default_code = "export_gone"
    default_detail = (
        "The export's file is gone (expired, deleted, discarded or failed)."
    )


_EXPORT_JOB_ID = OpenApiParameter(
    "jobId",
    OpenApiTypes.UUID,
    OpenApiParameter.PATH,
    description="As the 202 of the export returned it.",
)
_NO_SUCH_EXPORT = OpenApiResponse(
    ErrorSerializer, description="not_found: no such export for this tenant."
)


@extend_schema(tags=["end users"])
class ExportJobViewSet(viewsets.ViewSet):
    """Exports run as tasks: their progress, their file, and its deletion."""

    lookup_field = "jobId"

    def _job(self, request, job_id):
        job = selectors.export_job(tenant=request.user, job_id=job_id)
        if job is None:
            raise NotFound("No such export.")
        return job

    @extend_schema(
        summary="An export's progress",
        description="State, records written of the total, and when done where to "
        "download the file and until when.",
        parameters=[_EXPORT_JOB_ID],
        responses={
            200: ExportJobSerializer,
            404: _NO_SUCH_EXPORT,
            **{code: _ERRORS[code] for code in (401, 429)},
        },
    )
    def retrieve(self, request, jobId=None):  # noqa: N803 - the URL's name
        return Response(ExportJobSerializer(self._job(request, jobId)).data)

    @extend_schema(
        summary="Download an export's file",
        description="The file, in the format of GET /api/v1/users/{userId}/export, "
        "streamed. 409 export_not_ready while it is written; 410 export_gone once "
        "it expired, was deleted, failed, or was discarded because the user's data "
        "was forgotten or erased after it was asked for.",
        parameters=[_EXPORT_JOB_ID],
        responses={
            (200, "application/json"): UserExportSerializer,
            404: _NO_SUCH_EXPORT,
            409: OpenApiResponse(ErrorSerializer, description="export_not_ready"),
            410: OpenApiResponse(ErrorSerializer, description="export_gone"),
            **{code: _ERRORS[code] for code in (401, 429)},
        },
    )
    @action(detail=True, methods=["get"])
    def download(self, request, jobId=None):  # noqa: N803 - the URL's name
        job = self._job(request, jobId)
        if export_is_gone(job):
            raise ExportGone()
        if job.state != ExportJob.State.DONE:
            raise ExportNotReady()
        response = StreamingHttpResponse(
            (text.encode("utf-8") for text in export_file(job)),
            content_type="application/json",
        )
        response["Content-Disposition"] = 'attachment; filename="ltm-user-export.json"'
        return response

    @extend_schema(
        summary="Delete an export's file",
        description="The file goes now rather than at expiresAt; the job stays, "
        "state expired. Idempotent.",
        parameters=[_EXPORT_JOB_ID],
        responses={
            200: ExportJobSerializer,
            404: _NO_SUCH_EXPORT,
            **{code: _ERRORS[code] for code in (401, 429)},
        },
    )
    def destroy(self, request, jobId=None):  # noqa: N803 - the URL's name
        job = self._job(request, jobId)
        export_delete(job)
        return Response(ExportJobSerializer(job).data)


class ErasureJobViewSet(viewsets.ViewSet):
    """How far an erasure run as a task has come."""

    lookup_field = "jobId"

    @extend_schema(
        summary="An erasure's progress",
        description="State (queued, running, done, failed), memories erased of "
        "the total, and when done what the synchronous erasure would have said.",
        parameters=[
            OpenApiParameter(
                "jobId",
                OpenApiTypes.UUID,
                OpenApiParameter.PATH,
                description="As the 202 of the erasure returned it.",
            )
        ],
        responses={
            200: ErasureJobSerializer,
            404: OpenApiResponse(
                ErrorSerializer, description="not_found: no such job for this tenant."
            ),
            **{code: _ERRORS[code] for code in (401, 429)},
        },
        tags=["end users"],
    )
    def retrieve(self, request, jobId=None):  # noqa: N803 - the URL's name
        job = selectors.erasure_job(tenant=request.user, job_id=jobId)
        if job is None:
            raise NotFound("No such erasure.")
        return Response(ErasureJobSerializer(job).data)


class MessageStatusViewSet(viewsets.ViewSet):
    """Whether a message is in the user's memories yet (async memory)."""

    lookup_field = "messageId"
    lookup_value_regex = r"[0-9]+"

    @extend_schema(
        summary="A message's memory update",
        description="With LTM_MEMORY_MODE=async, POST /message answers before its "
        "memories are written; this says when they are, and which they are.",
        parameters=[
            OpenApiParameter(
                "messageId",
                OpenApiTypes.INT,
                OpenApiParameter.PATH,
                description="As POST /message returned it.",
            )
        ],
        responses={
            200: MessageStatusSerializer,
            404: OpenApiResponse(
                ErrorSerializer,
                description="not_found: no such message for this tenant.",
            ),
            **{code: _ERRORS[code] for code in (401, 429)},
        },
        tags=["memory"],
    )
    def retrieve(self, request, messageId=None):  # noqa: N803 - the URL's name
        message = selectors.message_status(tenant=request.user, public_id=messageId)
        if message is None:
            raise NotFound("No such message.")
        return Response(MessageStatusSerializer(message).data)


class ForgetViewSet(viewsets.ViewSet):
    """Forget what an end user asks to have forgotten."""

    @extend_schema(
        summary="Forget memories",
        description="Finds the memories the request refers to and deletes them: "
        "vector, text, history text and the text of the messages they came from. "
        "A tombstone without content stays in the history.",
        request=ForgetInputSerializer,
        responses={200: ForgetOutputSerializer, **_ERRORS},
        examples=[
            OpenApiExample(
                "Forget one fact",
                request_only=True,
                value={
                    "userId": "u1",
                    "message": "Forget that I am allergic to peanuts.",
                },
            )
        ],
        tags=["memory"],
    )
    def create(self, request):
        data = ForgetInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = forget_handle(
            tenant=request.user,
            user_id=data.validated_data["userId"],
            text=data.validated_data["message"],
        )
        output = ForgetOutputSerializer(
            {
                "reply": outcome.reply,
                "userId": data.validated_data["userId"],
                "scope": outcome.scope,
                "forgottenCount": outcome.count,
                "forgotten": outcome.forgotten,
                "usage": outcome.calls,
            }
        )
        return Response(output.data, status=status.HTTP_200_OK)


@extend_schema(tags=["memories"])
class MemoryViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """An end user's memories: list, read with history, delete."""

    lookup_field = "vector_key"

    @property
    def max_body_bytes(self) -> int:
        if self.action == "import_messages":
            return settings.LTM_MAX_IMPORT_BYTES
        return settings.LTM_MAX_REQUEST_BYTES

    lookup_url_kwarg = "id"
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"

    def get_queryset(self):
        memories = Memory.objects.for_tenant(self.request.user)
        if self.action == "retrieve":
            # A deleted memory is gone: 404, as for an id never seen. Its
            # tombstone is listed with status=deleted.
            return memories.exclude(status=Memory.Status.DELETED).prefetch_related(
                "events"
            )
        # Deleting a tombstone again is a no-op (204), so retries are safe.
        return memories

    def get_serializer_class(self):
        if self.action == "retrieve":
            return MemoryDetailSerializer
        return MemoryOutputSerializer

    @extend_schema(
        summary="List a user's memories",
        description="A page of the user's memories of one status (and kind), in "
        "the order they were stored. Send nextCursor back as cursor for the next "
        "page; it is null after the last. The order never changes, so a walk "
        "through the pages sees every memory stored before it began once.",
        parameters=[MemoryListQuerySerializer],
        responses={
            200: MemoryPageSerializer,
            **{code: _ERRORS[code] for code in (400, 401, 429)},
        },
    )
    def list(self, request, *args, **kwargs):
        # A plain dict, so that an empty value (?kind=) is that value, refused
        # as not one of the choices, rather than read as no value at all.
        query = MemoryListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        page = memory_page(
            tenant=request.user,
            user_id=query.validated_data["userId"],
            status=query.validated_data["status"],
            kind=query.validated_data.get("kind"),
            cursor=query.validated_data.get("cursor"),
            limit=query.validated_data["limit"],
        )
        return Response(
            MemoryPageSerializer(
                {"results": page.results, "nextCursor": page.next_cursor}
            ).data
        )

    @extend_schema(
        summary="Read a memory and its history",
        description="An active or hidden memory. A deleted one is not_found; its "
        "tombstone (no content) is listed by GET /api/v1/memories?status=deleted.",
        responses={
            200: MemoryDetailSerializer,
            404: OpenApiResponse(
                ErrorSerializer,
                description="not_found: no such memory for this tenant, or deleted.",
            ),
            **{code: _ERRORS[code] for code in (401, 429)},
        },
    )
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Delete a memory",
        description="Same as a forget of this one memory: vector and content go, a "
        "tombstone stays.",
        responses={
            204: None,
            404: OpenApiResponse(ErrorSerializer, description="not_found."),
            **{code: _ERRORS[code] for code in (401, 429)},
        },
    )
    def destroy(self, request, *args, **kwargs):
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance: Memory) -> None:
        # Deleting a tombstone again is a no-op, so retries are safe.
        memory_delete(memory=instance, actor=Actor.API)

    @extend_schema(
        summary="Import a conversation",
        description="Remembers past messages without replying: the same pipeline as "
        "/message (extract, deduplicate, update, store with provenance), each memory "
        "dated by the time its message was said. Idempotent on clientMessageId. "
        "The whole batch is validated first: one bad message rejects it all and "
        "nothing is stored. A batch that takes longer than one request may spend "
        "(LTM_IMPORT_TIME_BUDGET_SECONDS) is stored in order, whole messages, up "
        "to where the time ran out: the answer is then 503 import_incomplete and "
        "sending the batch again goes on from there.",
        request=ImportInputSerializer,
        responses={
            200: ImportOutputSerializer,
            **_ERRORS,
            503: OpenApiResponse(
                ErrorSerializer,
                description="provider_unavailable, database_busy, or "
                "import_incomplete: details.imported (stored by this request), "
                "details.remaining (not stored yet), details.resumeFrom (position "
                "in messages of the first not stored) and details.messageIds.",
            ),
        },
        examples=[
            OpenApiExample(
                "Two turns",
                request_only=True,
                value={
                    "userId": "conv-1",
                    "messages": [
                        {
                            "speaker": "Rosa",
                            "text": "I went to a woodworking class yesterday.",
                            "sentAt": "2023-05-08T13:56:00Z",
                            "clientMessageId": "D1:3",
                        },
                        {
                            "speaker": "Tomas",
                            "text": "Sounds calming! I painted the old lighthouse.",
                            "sentAt": "2023-05-08T13:57:00Z",
                            "clientMessageId": "D1:4",
                        },
                    ],
                },
            )
        ],
    )
    @action(detail=False, methods=["post"], url_path="import", url_name="import")
    def import_messages(self, request):
        data = ImportInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        messages = data.validated_data["messages"]
        kept, repeated = _first_of_each_id(messages)
        outcome = messages_import(
            tenant=request.user,
            user_id=data.validated_data["userId"],
            incoming=[
                IncomingMessage(
                    text=messages[position]["text"],
                    sent_at=messages[position]["sentAt"],
                    role=messages[position]["role"],
                    speaker=messages[position]["speaker"],
                    client_message_id=messages[position]["clientMessageId"],
                )
                for position in kept
            ],
            time_budget=settings.LTM_IMPORT_TIME_BUDGET_SECONDS,
        )
        if outcome.remaining:
            # A position in the batch as sent.
            outcome.resume_from = kept[outcome.resume_from]
            return _import_incomplete(outcome)
        skipped = outcome.skipped_client_message_ids
        output = ImportOutputSerializer(
            {
                "userId": data.validated_data["userId"],
                "imported": len(outcome.messages),
                "skipped": skipped + [i for i in repeated if i not in skipped],
                "messageIds": outcome.message_ids,
                "added": _changes(outcome.changes, Op.ADD),
                "updated": _changes(outcome.changes, Op.UPDATE),
                "episodes": len(outcome.episodes),
            }
        )
        return Response(output.data)

    @extend_schema(
        summary="Search a user's memories",
        description="Hybrid search: vector similarity and keyword relevance (the "
        "database's full-text index, stemmed) fused by reciprocal rank. Each hit "
        "carries its score, when it happened and the messages it came from.",
        request=SearchInputSerializer,
        responses={200: SearchOutputSerializer, **_ERRORS},
        examples=[
            OpenApiExample(
                "Search",
                request_only=True,
                value={
                    "userId": "conv-1",
                    "query": "When did Rosa go to the woodworking class?",
                    "topK": 5,
                    "timeRange": {"start": "2023-05-01T00:00:00Z"},
                },
            )
        ],
    )
    @action(detail=False, methods=["post"], url_path="search", url_name="search")
    def search(self, request):
        data = SearchInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        time_range = data.validated_data.get("timeRange", {})
        filters = data.validated_data.get("filters", {})
        if time_range.keys() >= {"start", "end"} and (
            time_range["start"] >= time_range["end"]
        ):
            # An empty range (end at or before start) holds no memory.
            return Response({"userId": data.validated_data["userId"], "hits": []})
        hits = selectors.memory_recall(
            tenant=request.user,
            user_id=data.validated_data["userId"],
            query=data.validated_data["query"],
            top_k=data.validated_data["topK"],
            filters=SearchFilters(
                happened_after=time_range.get("start"),
                happened_before=time_range.get("end"),
                speaker=filters.get("speaker"),
                slot=filters.get("slot"),
                kind=filters.get("kind"),
                role=filters.get("role"),
            ),
        )
        output = SearchOutputSerializer(
            {"userId": data.validated_data["userId"], "hits": hits}
        )
        return Response(output.data)


_USER_ID_PARAMETER = OpenApiParameter(
    "userId",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="Your id for the end user, as in request bodies (percent-encoded; "
    "an id ending in '/export' cannot be erased through this path).",
    pattern=USER_ID_PATTERN,
)


def _path_user_id(user_id: str) -> str:
    """The userId of a path, held to the rule of a userId in a body."""
    data = UserPathSerializer(data={"userId": user_id})
    data.is_valid(raise_exception=True)
    return data.validated_data["userId"]


@extend_schema(tags=["users"])
class UserViewSet(viewsets.ViewSet):
    """A tenant's end users: list them, export one's data, erase one."""

    @extend_schema(
        summary="List your end users",
        description="A page of the tenant's end users (anyone with a message or a "
        "memory stored, erased ones included), ordered by userId, with their "
        "counts. Send nextCursor back as cursor for the next page.",
        parameters=[UserListQuerySerializer],
        responses={
            200: EndUserPageSerializer,
            **{code: _ERRORS[code] for code in (400, 401, 429)},
        },
    )
    def list(self, request):
        query = UserListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        page = end_user_page(
            tenant=request.user,
            cursor=query.validated_data.get("cursor"),
            limit=query.validated_data["limit"],
        )
        return Response(
            EndUserPageSerializer(
                {"results": page.results, "nextCursor": page.next_cursor}
            ).data
        )

    @extend_schema(
        summary="Export an end user's data",
        description="Everything stored about the user, streamed as it is read, in "
        "the ltm-user-export format, version 1, of export_user_data (README.md, "
        "'Exporting an end user's data'), with the message ids clients see "
        "elsewhere in the API; forgotten memories are tombstones. A user with no "
        "text left (erased, or never seen) is not_found, as a deleted memory is. "
        "An export cut short by a failure is not valid JSON. With `Prefer: "
        "respond-async` it answers 202 at once with a job whose GET "
        "/api/v1/exports/{jobId} (its Location) tells how far it has come; a worker "
        "writes the file, kept until expiresAt (LTM_EXPORT_RETENTION_SECONDS) and "
        "discarded sooner if the user's data is forgotten or erased meanwhile.",
        parameters=[
            _USER_ID_PARAMETER,
            _prefer_async("export"),
        ],
        responses={
            200: UserExportSerializer,
            202: ExportJobSerializer,
            404: OpenApiResponse(
                ErrorSerializer,
                description="not_found: nothing of the user holds text (erased, "
                "or never seen by this tenant).",
            ),
            **{code: _ERRORS[code] for code in (400, 401, 429)},
        },
    )
    def export(self, request, userId):  # noqa: N803 - the URL's name
        user_id = _path_user_id(userId)
        if not user_data_holds_content(tenant=request.user, user_id=user_id):
            raise NotFound("No data of this user.")
        if _prefers_async(request):
            job = export_job_start(tenant=request.user, user_id=user_id)
            return _accepted(ExportJobSerializer, job, f"/api/v1/exports/{job.pk}")
        response = StreamingHttpResponse(
            (
                chunk.encode("utf-8")
                for chunk in user_data_export_chunks(
                    tenant=request.user,
                    user_id=user_id,
                    message_id=public_message_id,
                )
            ),
            content_type="application/json",
        )
        response["Content-Disposition"] = 'attachment; filename="ltm-user-export.json"'
        return response

    @extend_schema(
        summary="Erase an end user",
        description="Erases everything stored about the user as forget_user does "
        "(memory and message text, history text, vectors; tombstones without "
        "content stay), then verifies that nothing remains. Idempotent: erasing "
        "again erases nothing more and verifies again. If something remains (a "
        "write that arrived meanwhile), the answer is 503 erasure_incomplete with "
        "what remains in details; send it again. With `Prefer: respond-async` it "
        "answers 202 at once with a job whose GET /api/v1/erasures/{jobId} (its "
        "Location) tells how far it has come; a worker erases.",
        parameters=[
            _USER_ID_PARAMETER,
            _prefer_async("erasure"),
        ],
        responses={
            200: UserErasureSerializer,
            202: ErasureJobSerializer,
            **{code: _ERRORS[code] for code in (400, 401, 429)},
            503: OpenApiResponse(
                ErrorSerializer,
                description="provider_unavailable (the vector store failed; what "
                "was erased stays erased, send it again), database_busy, or "
                "erasure_incomplete.",
            ),
        },
    )
    def destroy(self, request, userId):  # noqa: N803 - the URL's name
        user_id = _path_user_id(userId)
        if _prefers_async(request):
            job = erasure_job_start(tenant=request.user, user_id=user_id)
            return _accepted(ErasureJobSerializer, job, f"/api/v1/erasures/{job.pk}")
        outcome = user_data_erase(tenant=request.user, user_id=user_id)
        answer = erasure_answer(user_id, outcome)
        if outcome.remaining.total:
            response = Response(
                error_body(
                    "erasure_incomplete",
                    "Data of the user remains after the erasure; send it again.",
                    {"remaining": answer["remaining"]},
                ),
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
            response["Retry-After"] = "1"
            return response
        return Response(answer)
