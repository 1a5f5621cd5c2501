"""Input and output shapes of the memory API (input and output kept apart)."""

import re

from django.conf import settings
from rest_framework import serializers

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _validate_user_id(value: str) -> str:
    if _CONTROL_CHARACTERS.search(value):
        raise serializers.ValidationError(
            "userId must not contain control characters.", code="invalid"
        )
    return value


class UserIdField(serializers.CharField):
    def __init__(self, **kwargs):
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
    message = serializers.CharField(
        max_length=settings.LTM_MAX_MESSAGE_CHARS,
        help_text=(
            "What the end user said, 1 to LTM_MAX_MESSAGE_CHARS characters "
            f"(default {settings.LTM_MAX_MESSAGE_CHARS})."
        ),
    )


class ForgetInputSerializer(MessageInputSerializer):
    message = serializers.CharField(
        max_length=settings.LTM_MAX_MESSAGE_CHARS,
        help_text=(
            "What to forget, in the user's words, e.g. 'Forget that I am allergic "
            "to peanuts' or 'Forget everything about my job'."
        ),
    )


class MemoryOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="vector_key", help_text="The memory's id.")
    text = serializers.CharField(help_text="The remembered fact (blank once deleted).")
    status = serializers.CharField(help_text="'active' or 'deleted'.")
    happenedAt = serializers.DateTimeField(  # noqa: N815
        source="happened_at",
        allow_null=True,
        help_text="When the fact happened: a time the message named, else when it "
        "was said.",
    )
    timeGranularity = serializers.CharField(  # noqa: N815
        source="time_granularity",
        help_text="'day', 'week', 'month' or 'year' when the message named a "
        "time; blank when happenedAt is when it was said.",
    )
    createdAt = serializers.DateTimeField(source="created_at")  # noqa: N815
    updatedAt = serializers.DateTimeField(source="updated_at")  # noqa: N815
    sourceMessageId = serializers.IntegerField(  # noqa: N815
        source="source_message_id",
        allow_null=True,
        help_text="The stored message the memory came from.",
    )


class RecalledMemorySerializer(MemoryOutputSerializer):
    score = serializers.FloatField(help_text="Cosine similarity to the message.")

    def to_representation(self, instance):
        data = MemoryOutputSerializer(instance.memory).data
        data["score"] = round(instance.score, 4)
        return data


class ChangedMemorySerializer(MemoryOutputSerializer):
    previousText = serializers.CharField(  # noqa: N815
        help_text="For an update, the text it replaced; for a delete, the text "
        "that was forgotten (returned this once, never stored)."
    )

    def to_representation(self, instance):
        data = MemoryOutputSerializer(instance.memory).data
        data["previousText"] = instance.previous_text
        return data


class MessageOutputSerializer(serializers.Serializer):
    reply = serializers.CharField(help_text="The answer to the end user.")
    userId = serializers.CharField()  # noqa: N815
    messageId = serializers.IntegerField(  # noqa: N815
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


class ForgetOutputSerializer(serializers.Serializer):
    reply = serializers.CharField(help_text="What was forgotten, in words.")
    userId = serializers.CharField()  # noqa: N815
    forgotten = ChangedMemorySerializer(
        many=True,
        help_text="The memories deleted; their vectors and text are gone and "
        "only a tombstone stays.",
    )


class MemoryEventSerializer(serializers.Serializer):
    action = serializers.CharField()
    oldText = serializers.CharField(source="old_text")  # noqa: N815
    newText = serializers.CharField(source="new_text")  # noqa: N815
    actor = serializers.CharField()
    reason = serializers.CharField()
    messageId = serializers.IntegerField(  # noqa: N815
        source="message_id", allow_null=True
    )
    createdAt = serializers.DateTimeField(source="created_at")  # noqa: N815


class MemoryDetailSerializer(MemoryOutputSerializer):
    userId = serializers.CharField(source="user_id")  # noqa: N815
    history = MemoryEventSerializer(source="events", many=True)


class MemoryListQuerySerializer(serializers.Serializer):
    userId = UserIdField()  # noqa: N815


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="Stable machine-readable code, e.g. invalid_input, "
        "malformed_json, unsupported_media_type, not_authenticated, "
        "invalid_token, token_revoked, not_found, rate_limited, "
        "request_too_large, provider_unavailable, server_error."
    )
    message = serializers.CharField(help_text="What went wrong, for people.")
    details = serializers.DictField(
        help_text="For invalid_input: {'fields': {name: [{code, message}]}}."
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
