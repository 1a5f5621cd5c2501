"""Input and output shapes of the memory API (input and output kept apart)."""

import re

from django.conf import settings
from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from ltm_project.schema import NOT_BLANK_PATTERN, WHITE_SPACE
from memories.pagination import (
    MEMORY_CURSOR_PATTERN,
    PAGE_DEFAULT,
    PAGE_MAX,
    USER_CURSOR_MAX_CHARS,
    USER_CURSOR_PATTERN,
)
from memories.public_ids import public_message_id

# Control and format characters (bidirectional overrides, zero-width ones, the
# soft hyphen), line and paragraph separators and private use: none belongs in
# an id, where they hide or reorder what an operator reads. Surrogates need no
# place here: the JSON parser refuses an unpaired one, and a class naming them
# is one JSON Schema validators cannot compile (schema fuzzers then drop the
# whole pattern). JSON Schema patterns read \\uXXXX escapes alike, so the class
# keeps to the Basic Multilingual Plane.
_HIDDEN = (
    "\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f"
    "\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u206f"
    "\\ue000-\\uf8ff\\ufeff\\ufff9-\\ufffb"
)
# The rule for a userId, one definition for the server and the schema: no
# hidden character, and no white space at either end.
USER_ID_PATTERN = (
    f"^[^{WHITE_SPACE}{_HIDDEN}](?:[^{_HIDDEN}]*[^{WHITE_SPACE}{_HIDDEN}])?$"
)
_USER_ID = re.compile(USER_ID_PATTERN)
_HIDDEN_CHARACTER = re.compile(f"[{_HIDDEN}]")


class StrictCharField(serializers.CharField):
    """A JSON string, never a number or a boolean turned into one; never with
    a NUL character, which PostgreSQL cannot store; at most max_length
    characters as sent (white space it trims included)."""

    default_error_messages = {
        "invalid": "Must be a string.",
        "null_character": "Must not contain the NUL character (U+0000).",
    }

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        if "\x00" in data:
            self.fail("null_character")
        # The length as sent, before trimming: what the schema's maxLength says.
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


class StrictCharFieldSchema(OpenApiSerializerFieldExtension):
    """A StrictCharField's request schema says what its trimming refuses: a
    text that may not be blank may not be white space only either."""

    target_class = StrictCharField

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(
            self.target, direction, bypass_extensions=True
        )
        field = self.target
        if direction == "request" and field.trim_whitespace and not field.allow_blank:
            schema["pattern"] = NOT_BLANK_PATTERN
        return schema


class PublicMessageIdField(serializers.IntegerField):
    """A stored message's id as clients see it (memories/public_ids.py)."""

    def to_representation(self, value):
        return public_message_id(value)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, never a string or a boolean that looks like one."""

    default_error_messages = {"invalid": "Must be a JSON integer."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def _validate_user_id(value: str) -> str:
    # The pattern decides; the checks below only name what it refused.
    if _USER_ID.fullmatch(value):
        return value
    if _HIDDEN_CHARACTER.search(value):
        raise serializers.ValidationError(
            "userId must not contain control, format, bidirectional or "
            "private-use characters.",
            code="hidden_character",
        )
    raise serializers.ValidationError(
        "userId must not begin or end with white space.", code="whitespace"
    )


@extend_schema_field(
    {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": USER_ID_PATTERN,
        "description": "Your application's own id for the end user: 1-255 "
        "characters, kept exactly as sent, with no white space at either end and "
        "no control, format, bidirectional or private-use characters.",
    }
)
class UserIdField(StrictCharField):
    def __init__(self, **kwargs):
        # Kept exactly as sent: "  alice  " is refused, not made "alice".
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("max_length", settings.LTM_MAX_USER_ID_CHARS)
        kwargs.setdefault(
            "help_text",
            "Your application's own id for the end user (1-255 characters). "
            "Memories are kept per (tenant, userId); an id never seen before is a "
            "new end user.",
        )
        kwargs.setdefault("validators", [_validate_user_id])
        super().__init__(**kwargs)


class MessageInputSerializer(serializers.Serializer):
    userId = UserIdField()  # noqa: N815 - the public contract's field name
    message = StrictCharField(
        max_length=settings.LTM_MAX_MESSAGE_CHARS,
        help_text=(
            "What the end user said, 1 to LTM_MAX_MESSAGE_CHARS characters "
            f"(default {settings.LTM_MAX_MESSAGE_CHARS})."
        ),
    )


class ForgetInputSerializer(MessageInputSerializer):
    message = StrictCharField(
        max_length=settings.LTM_MAX_MESSAGE_CHARS,
        help_text=(
            "What to forget, in the user's words, e.g. 'Forget that I am allergic "
            "to peanuts' or 'Forget everything about my job'."
        ),
    )


class MemoryOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="vector_key", help_text="The memory's id.")
    kind = StrictCharField(
        help_text="'fact' (a statement taken from a message) or 'episode' (what "
        "was said, as said: a message or a passage of a long one)."
    )
    role = StrictCharField(
        help_text="Role of the message it came from: 'user', 'assistant' or 'other'."
    )
    text = StrictCharField(help_text="The remembered text (blank once deleted).")
    status = StrictCharField(
        help_text="'active', 'hidden' (by support staff: kept, never recalled) or "
        "'deleted'."
    )
    happenedAt = serializers.DateTimeField(  # noqa: N815
        source="happened_at",
        allow_null=True,
        help_text="When the fact happened: a time the message named, else when it "
        "was said.",
    )
    timeGranularity = StrictCharField(  # noqa: N815
        source="time_granularity",
        help_text="'day', 'week', 'month' or 'year' when the message named a "
        "time; blank when happenedAt is when it was said.",
    )
    createdAt = serializers.DateTimeField(source="created_at")  # noqa: N815
    updatedAt = serializers.DateTimeField(source="updated_at")  # noqa: N815
    sourceMessageId = PublicMessageIdField(  # noqa: N815
        source="source_message_id",
        allow_null=True,
        help_text="The stored message the memory came from.",
    )


# One instance shapes every memory of a list: a serializer per memory would copy
# its fields each time (a tenth of an import's time went there).
_MEMORY_OUTPUT = MemoryOutputSerializer()


class RecalledMemorySerializer(MemoryOutputSerializer):
    score = serializers.FloatField(
        help_text="Relevance: vector and keyword rankings fused (higher is better)."
    )
    similarity = serializers.FloatField(
        help_text="Cosine similarity of the memory to the query or message."
    )

    def to_representation(self, instance):
        data = _MEMORY_OUTPUT.to_representation(instance.memory)
        data["score"] = round(instance.score, 6)
        data["similarity"] = round(instance.similarity, 4)
        return data


class ChangedMemorySerializer(MemoryOutputSerializer):
    previousText = StrictCharField(  # noqa: N815
        help_text="For an update, the text it replaced; for a delete, the text "
        "that was forgotten (returned this once, never stored)."
    )

    def to_representation(self, instance):
        data = _MEMORY_OUTPUT.to_representation(instance.memory)
        data["previousText"] = instance.previous_text
        return data


class LanguageModelCallSerializer(serializers.Serializer):
    purpose = serializers.ChoiceField(
        choices=["memory", "reply", "forget"],
        help_text="memory: the one call that plans a message's memory changes; "
        "reply: the answer; forget: choosing what a forget request names.",
    )
    model = StrictCharField()
    inputTokens = serializers.IntegerField(source="input_tokens")  # noqa: N815
    outputTokens = serializers.IntegerField(source="output_tokens")  # noqa: N815
    outcome = serializers.ChoiceField(
        choices=["ok", "invalid", "failed"],
        help_text="invalid: the answer broke the schema or named an unknown memory "
        "(asked once more, then the offline rules take over); failed: the model "
        "could not be reached.",
    )


class MessageOutputSerializer(serializers.Serializer):
    reply = StrictCharField(help_text="The answer to the end user.")
    userId = StrictCharField()  # noqa: N815
    messageId = PublicMessageIdField(  # noqa: N815
        help_text="Id of the stored message (the provenance of what it added)."
    )
    recalled = RecalledMemorySerializer(
        many=True, help_text="Memories recalled for this message, best first."
    )
    added = ChangedMemorySerializer(many=True, help_text="Memories added.")
    updated = ChangedMemorySerializer(
        many=True, help_text="Memories whose text this message replaced."
    )
    deleted = ChangedMemorySerializer(many=True, help_text="Memories deleted.")
    episodes = MemoryOutputSerializer(
        many=True,
        help_text="The message as kept: one episode, or one per passage when long "
        "(none when the same words were already kept).",
    )
    usage = LanguageModelCallSerializer(
        many=True,
        help_text="Language-model calls made for this message and their tokens "
        "(empty with the offline provider).",
    )
    memoryUpdate = serializers.ChoiceField(  # noqa: N815
        choices=["done", "pending", "working"],
        help_text="'done': added, updated, deleted and episodes say what this "
        "message changed. 'pending' (LTM_MEMORY_MODE=async): a worker remembers "
        "it after this answer, after the user's earlier messages; they are then "
        "empty, and GET /api/v1/messages/{messageId} tells when it is done.",
    )


class MessageStatusSerializer(serializers.Serializer):
    messageId = PublicMessageIdField(source="pk")  # noqa: N815
    userId = StrictCharField(source="user_id")  # noqa: N815
    sentAt = serializers.DateTimeField(source="sent_at")  # noqa: N815
    memoryUpdate = serializers.ChoiceField(  # noqa: N815
        source="memory_update",
        choices=["done", "pending", "working"],
        help_text="Whether what the message says is in the user's memories yet: "
        "'pending' waits for a worker, 'working' is being remembered.",
    )
    memories = MemoryOutputSerializer(
        source="memories_made",
        many=True,
        help_text="The active memories that came from this message.",
    )


class ForgetOutputSerializer(serializers.Serializer):
    reply = StrictCharField(help_text="What was forgotten, in words.")
    userId = StrictCharField()  # noqa: N815
    scope = serializers.ChoiceField(
        choices=["memories", "everything"],
        help_text="'everything' when the request asked to forget all about the "
        "user (erased as forget_user does); else 'memories'.",
    )
    forgottenCount = serializers.IntegerField(  # noqa: N815
        help_text="Memories made tombstones: those named, the episodes of the "
        "messages they came from, and with scope 'everything' all of the user's."
    )
    forgotten = ChangedMemorySerializer(
        many=True,
        help_text="The memories deleted; their vectors and text are gone and "
        "only a tombstone stays.",
    )
    usage = LanguageModelCallSerializer(
        many=True, help_text="Language-model calls made and their tokens."
    )


class MemoryEventSerializer(serializers.Serializer):
    action = StrictCharField()
    oldText = StrictCharField(source="old_text")  # noqa: N815
    newText = StrictCharField(source="new_text")  # noqa: N815
    actor = StrictCharField()
    reason = StrictCharField()
    messageId = PublicMessageIdField(  # noqa: N815
        source="message_id", allow_null=True
    )
    validUntil = serializers.DateTimeField(  # noqa: N815
        source="valid_until",
        allow_null=True,
        help_text="For an update: when the old text stopped being true.",
    )
    createdAt = serializers.DateTimeField(source="created_at")  # noqa: N815


class MemoryDetailSerializer(MemoryOutputSerializer):
    userId = StrictCharField(source="user_id")  # noqa: N815
    history = MemoryEventSerializer(source="events", many=True)


class QueryIntegerField(serializers.IntegerField):
    """An integer in a query string: digits only ("5", never "5.0" or " 5")."""

    default_error_messages = {"invalid": "Must be an integer."}

    def to_internal_value(self, data):
        if not isinstance(data, str) or not re.fullmatch(r"-?[0-9]{1,9}", data):
            self.fail("invalid")
        return super().to_internal_value(data)


def _limit_field() -> QueryIntegerField:
    return QueryIntegerField(
        min_value=1,
        max_value=PAGE_MAX,
        default=PAGE_DEFAULT,
        help_text=f"Rows per page, 1-{PAGE_MAX} (default {PAGE_DEFAULT}).",
    )


def _cursor_field(pattern: str, max_length: int) -> serializers.CharField:
    return serializers.CharField(
        required=False,
        trim_whitespace=False,
        max_length=max_length,
        validators=[RegexValidator(pattern, message="Not a cursor.", code="invalid")],
        help_text="nextCursor of the page before; none for the first page. Opaque.",
    )


class PageQuerySerializer(serializers.Serializer):
    limit = _limit_field()


class MemoryListQuerySerializer(PageQuerySerializer):
    userId = UserIdField()  # noqa: N815
    cursor = _cursor_field(MEMORY_CURSOR_PATTERN, 8)
    kind = serializers.ChoiceField(
        choices=["fact", "episode"], required=False, help_text="Only this kind."
    )
    status = serializers.ChoiceField(
        choices=["active", "hidden", "deleted"],
        default="active",
        help_text="'active' (default); 'hidden' (by support staff: kept, never "
        "recalled); 'deleted': the tombstones of forgotten memories, without "
        "content.",
    )


# One object, though the list action's answer.
@extend_schema_serializer(many=False)
class MemoryPageSerializer(serializers.Serializer):
    results = MemoryOutputSerializer(many=True, help_text="This page, oldest first.")
    nextCursor = serializers.CharField(  # noqa: N815
        allow_null=True,
        help_text="The cursor of the next page; null after the last.",
    )


class UserPathSerializer(serializers.Serializer):
    userId = UserIdField()  # noqa: N815


class UserListQuerySerializer(PageQuerySerializer):
    cursor = _cursor_field(USER_CURSOR_PATTERN, USER_CURSOR_MAX_CHARS)


class EndUserSerializer(serializers.Serializer):
    userId = serializers.CharField(source="user_id")  # noqa: N815
    memories = serializers.IntegerField(help_text="Active memories.")
    facts = serializers.IntegerField(help_text="Active facts.")
    episodes = serializers.IntegerField(help_text="Active episodes.")
    messages = serializers.IntegerField(
        help_text="Messages stored (sent or imported; forget requests not counted)."
    )
    lastMessageAt = serializers.DateTimeField(  # noqa: N815
        source="last_message_at",
        allow_null=True,
        help_text="When the latest message was said.",
    )


# One object, though the list action's answer.
@extend_schema_serializer(many=False)
class EndUserPageSerializer(serializers.Serializer):
    results = EndUserSerializer(many=True, help_text="This page, by userId.")
    nextCursor = serializers.CharField(  # noqa: N815
        allow_null=True,
        help_text="The cursor of the next page; null after the last.",
    )


class RemainingSerializer(serializers.Serializer):
    vectors = serializers.IntegerField(source="remaining.vectors")
    memoriesWithContent = serializers.IntegerField(  # noqa: N815
        source="remaining.memories_with_content"
    )
    historyEventsWithText = serializers.IntegerField(  # noqa: N815
        source="remaining.events_with_text"
    )
    messagesWithText = serializers.IntegerField(  # noqa: N815
        source="remaining.messages_with_text"
    )
    exportFiles = serializers.IntegerField(  # noqa: N815
        source="remaining.export_files",
        help_text="Stored export files of the user (asynchronous exports).",
    )


class UserErasureSerializer(serializers.Serializer):
    userId = serializers.CharField(source="user_id")  # noqa: N815
    memoriesErased = serializers.IntegerField(  # noqa: N815
        source="report.memories_forgotten",
        help_text="Memory rows whose content was erased (0 when already erased).",
    )
    memoriesDeleted = serializers.IntegerField(  # noqa: N815
        source="report.memories_deleted",
        help_text="Of those, memories that were not deleted before.",
    )
    historyEventsBlanked = serializers.IntegerField(  # noqa: N815
        source="report.events_blanked"
    )
    messagesPurged = serializers.IntegerField(  # noqa: N815
        source="report.messages_purged"
    )
    vectorsDeleted = serializers.IntegerField(  # noqa: N815
        source="vectors_deleted",
        help_text="Vector keys deleted: the erased memories' and leftovers.",
    )
    verified = serializers.BooleanField(
        help_text="Always true in a 200: the verification found nothing left."
    )
    remaining = RemainingSerializer(
        source="*", help_text="What the verification counted: all 0."
    )


class ErasureJobSerializer(serializers.Serializer):
    jobId = serializers.UUIDField(source="pk")  # noqa: N815
    userId = serializers.CharField(source="user_id")  # noqa: N815
    state = serializers.ChoiceField(
        choices=["queued", "running", "done", "failed"],
        help_text="'failed' after its retries; sending the DELETE again is safe.",
    )
    memoriesTotal = serializers.IntegerField(  # noqa: N815
        source="memories_total", help_text="Memories to erase, counted when asked."
    )
    memoriesDone = serializers.IntegerField(  # noqa: N815
        source="memories_done", help_text="Of those, erased so far."
    )
    result = serializers.JSONField(
        allow_null=True,
        help_text="When done: what the erasure did and verified, as the 200 of "
        "DELETE /api/v1/users/{userId} says it.",
    )
    error = serializers.CharField(help_text="Why it failed (empty otherwise).")
    createdAt = serializers.DateTimeField(source="created_at")  # noqa: N815
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)  # noqa: N815
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)  # noqa: N815


class ExportJobSerializer(serializers.Serializer):
    jobId = serializers.UUIDField(source="pk")  # noqa: N815
    userId = serializers.CharField(source="user_id")  # noqa: N815
    state = serializers.ChoiceField(
        choices=["queued", "running", "done", "failed", "expired", "discarded"],
        help_text="'done': the file can be downloaded until expiresAt. 'expired': "
        "past that time, or deleted. 'discarded': the user's data was forgotten "
        "or erased after the export was asked for, so its file is gone; ask again. "
        "'failed' after its retries.",
    )
    recordsTotal = serializers.IntegerField(  # noqa: N815
        source="records_total", help_text="Memories and messages, counted when asked."
    )
    recordsDone = serializers.IntegerField(  # noqa: N815
        source="records_done", help_text="Of those, written so far."
    )
    sizeBytes = serializers.IntegerField(  # noqa: N815
        source="size_bytes", help_text="The file's size so far."
    )
    download = serializers.SerializerMethodField(
        help_text="Where to GET the file when done; null otherwise."
    )
    error = serializers.CharField(help_text="Why it failed (empty otherwise).")
    createdAt = serializers.DateTimeField(source="created_at")  # noqa: N815
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)  # noqa: N815
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)  # noqa: N815
    expiresAt = serializers.DateTimeField(source="expires_at", allow_null=True)  # noqa: N815

    def get_download(self, job) -> str | None:
        if job.state != "done":
            return None
        return f"/api/v1/exports/{job.pk}/download"


class UserExportSerializer(serializers.Serializer):
    """The ltm-user-export format, version 1 (README.md: Exporting an end
    user's data); message ids are the public ones."""

    format = serializers.CharField(help_text="'ltm-user-export'.")
    version = serializers.IntegerField(help_text="1.")
    tenant = serializers.CharField(help_text="The tenant's slug.")
    userId = serializers.CharField()  # noqa: N815
    exportedAt = serializers.DateTimeField()  # noqa: N815
    memories = serializers.ListField(
        child=serializers.DictField(),
        help_text="Every memory with its status, text, times, sources and history; "
        "forgotten ones as tombstones.",
    )
    messages = serializers.ListField(
        child=serializers.DictField(),
        help_text="Every message (redacted ones without text), oldest first.",
    )


class ErrorDetailSerializer(serializers.Serializer):
    code = StrictCharField(
        help_text="Stable machine-readable code, e.g. invalid_input, "
        "malformed_json, unsupported_media_type, not_authenticated, "
        "invalid_token, token_revoked, not_found, rate_limited, "
        "request_too_large, provider_unavailable, server_error."
    )
    message = StrictCharField(help_text="What went wrong, for people.")
    details = serializers.DictField(
        help_text="For invalid_input: {'fields': {name: [{code, message}]}}."
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class ImportMessageSerializer(serializers.Serializer):
    text = StrictCharField(
        max_length=settings.LTM_IMPORT_MAX_MESSAGE_CHARS,
        help_text="What was said, up to LTM_IMPORT_MAX_MESSAGE_CHARS characters "
        f"(default {settings.LTM_IMPORT_MAX_MESSAGE_CHARS}); a long message is kept "
        "in passages.",
    )
    sentAt = serializers.DateTimeField(  # noqa: N815
        help_text="When it was said, ISO 8601 with a time zone (UTC if none); "
        "relative times in the text are resolved against it."
    )
    role = serializers.ChoiceField(
        choices=["user", "assistant", "other"],
        default="user",
        help_text="'user' (default), 'assistant' (kept as episodes, no facts "
        "extracted) or 'other'.",
    )
    speaker = StrictCharField(
        max_length=100,
        required=False,
        allow_blank=True,
        default="",
        help_text="Who said it, for conversations between named people. With a "
        "speaker, any informative statement is kept, not only first-person ones.",
    )
    clientMessageId = StrictCharField(  # noqa: N815
        max_length=255,
        required=False,
        allow_blank=True,
        default="",
        help_text="Your id for the message. A message whose id was already "
        "imported for this user is skipped, so a batch can be sent again safely; "
        "so is a later message of the batch repeating an earlier one's id.",
    )


class ImportInputSerializer(serializers.Serializer):
    userId = UserIdField()  # noqa: N815
    messages = ImportMessageSerializer(
        many=True,
        allow_empty=False,
        max_length=settings.LTM_IMPORT_MAX_MESSAGES,
        help_text="The messages, oldest first: 1 to LTM_IMPORT_MAX_MESSAGES "
        f"(default {settings.LTM_IMPORT_MAX_MESSAGES}). One invalid message "
        "rejects the whole batch.",
    )


class ImportOutputSerializer(serializers.Serializer):
    userId = StrictCharField()  # noqa: N815
    imported = serializers.IntegerField(help_text="Messages stored by this call.")
    skipped = serializers.ListField(
        child=StrictCharField(),
        help_text="clientMessageIds already imported, left as they were: by an "
        "earlier call, or by an earlier message of this batch with the same id.",
    )
    messageIds = serializers.DictField(  # noqa: N815
        child=PublicMessageIdField(),
        help_text="The stored message id of each clientMessageId of the batch, "
        "imported now or before.",
    )
    added = ChangedMemorySerializer(many=True, help_text="Facts added.")
    updated = ChangedMemorySerializer(
        many=True, help_text="Facts whose text a newer message replaced."
    )
    episodes = serializers.IntegerField(
        help_text="Episodes stored: every message, in passages when long."
    )


class TimeRangeSerializer(serializers.Serializer):
    start = serializers.DateTimeField(
        required=False, help_text="Only memories that happened at or after this."
    )
    end = serializers.DateTimeField(
        required=False,
        help_text="Only memories that happened before this. An end at or before "
        "the start leaves an empty range: no hits.",
    )


class SearchFiltersSerializer(serializers.Serializer):
    speaker = StrictCharField(
        max_length=100, required=False, help_text="Only what this speaker said."
    )
    slot = StrictCharField(
        max_length=64,
        required=False,
        help_text="Only facts of this slot: name, home, job, age, birthday, "
        "favourite:<thing>.",
    )
    kind = serializers.ChoiceField(
        choices=["fact", "episode"], required=False, help_text="Only this kind."
    )
    role = serializers.ChoiceField(
        choices=["user", "assistant", "other"],
        required=False,
        help_text="Only what this side of the conversation said.",
    )


class SearchInputSerializer(serializers.Serializer):
    userId = UserIdField()  # noqa: N815
    query = StrictCharField(
        max_length=settings.LTM_MAX_MESSAGE_CHARS, help_text="What to look for."
    )
    topK = StrictIntegerField(  # noqa: N815
        min_value=1, max_value=100, default=10, help_text="Hits to return, 1-100."
    )
    timeRange = TimeRangeSerializer(  # noqa: N815
        required=False, help_text="When the memories happened."
    )
    filters = SearchFiltersSerializer(required=False)


class ProvenanceSerializer(serializers.Serializer):
    messageId = PublicMessageIdField(source="pk")  # noqa: N815
    clientMessageId = StrictCharField(source="client_message_id")  # noqa: N815
    sentAt = serializers.DateTimeField(source="sent_at")  # noqa: N815
    speaker = StrictCharField()


class SearchHitSerializer(RecalledMemorySerializer):
    speaker = StrictCharField(help_text="Who said it, if known.")
    provenance = ProvenanceSerializer(
        many=True, help_text="The messages the memory came from, oldest first."
    )
    keywordRank = serializers.IntegerField(  # noqa: N815
        allow_null=True, help_text="Rank in the keyword ranking (1 = best), if any."
    )
    vectorRank = serializers.IntegerField(  # noqa: N815
        allow_null=True, help_text="Rank in the vector ranking (1 = best), if any."
    )

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["speaker"] = instance.memory.speaker
        sources = sorted(
            instance.memory.sources.all(),
            key=lambda message: (message.sent_at, message.pk),
        )
        data["provenance"] = ProvenanceSerializer(sources, many=True).data
        data["keywordRank"] = instance.keyword_rank
        data["vectorRank"] = instance.vector_rank
        return data


class SearchOutputSerializer(serializers.Serializer):
    userId = StrictCharField()  # noqa: N815
    hits = SearchHitSerializer(many=True)
