"""Input and output shapes of POST /v1/chat/completions: OpenAI's, as its
official client sends and reads them."""

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from memories.serializers import StrictCharField, StrictIntegerField, UserIdField

# What the conversation's roles may be; "developer" is OpenAI's newer name for
# "system", and goes to the model as one.
ROLES = ["system", "developer", "user", "assistant"]
FINISH_REASONS = ["stop", "length", "content_filter"]
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 256
MAX_MODEL_NAME_CHARS = 256


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean, never a string or a number read as one."""

    default_error_messages = {"invalid": "Must be a JSON boolean."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictNumberField(serializers.FloatField):
    """A JSON number, never a string or a boolean read as one."""

    default_error_messages = {"invalid": "Must be a JSON number."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        try:
            return super().to_internal_value(data)
        except OverflowError:  # an integer beyond a float's range
            self.fail("invalid")


class TextPartSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["text"])
    text = StrictCharField(max_length=settings.LTM_MAX_MESSAGE_CHARS)


# The two spellings of a message's content: a string, or a list of text parts.
_CONTENT_TEXT = StrictCharField(max_length=settings.LTM_MAX_MESSAGE_CHARS)
_CONTENT_PARTS = serializers.ListField(child=TextPartSerializer(), min_length=1)


class ContentField(serializers.Field):
    """A message's text: a string, or a list of text parts (joined by line
    breaks), 1 to LTM_MAX_MESSAGE_CHARS characters as /message takes."""

    default_error_messages = {
        "invalid": "Must be a string or a list of text parts.",
        "max_length": "The text parts hold more than {max_length} characters.",
    }

    def to_internal_value(self, data):
        if isinstance(data, str):
            return _CONTENT_TEXT.run_validation(data)
        if not isinstance(data, list):
            self.fail("invalid")
        text = "\n".join(part["text"] for part in _CONTENT_PARTS.run_validation(data))
        if len(text) > settings.LTM_MAX_MESSAGE_CHARS:
            self.fail("max_length", max_length=settings.LTM_MAX_MESSAGE_CHARS)
        return text

    def to_representation(self, value):
        return value


def _one_of(auto_schema, direction, *fields) -> list[dict]:
    """Each field's schema, with its lengths, as drf-spectacular states it."""
    schemas = []
    for field in fields:
        schema = auto_schema._map_serializer_field(field, direction)
        auto_schema._insert_field_validators(field, schema)
        schemas.append(schema)
    return schemas


class ContentFieldSchema(OpenApiSerializerFieldExtension):
    """Either spelling, each as its own field states it."""

    target_class = ContentField

    def map_serializer_field(self, auto_schema, direction):
        return {
            "oneOf": _one_of(auto_schema, direction, _CONTENT_TEXT, _CONTENT_PARTS),
            "description": self.target.help_text,
        }


# A stop sequence is taken as sent: "\n" is a common one.
_STOP_TEXT = StrictCharField(max_length=MAX_STOP_CHARS, trim_whitespace=False)
_STOP_LIST = serializers.ListField(child=_STOP_TEXT, max_length=MAX_STOP_SEQUENCES)


class StopField(serializers.Field):
    """Where the model stops writing: one sequence, or a list of up to four."""

    default_error_messages = {"invalid": "Must be a string or a list of strings."}

    def to_internal_value(self, data):
        if isinstance(data, str):
            return (_STOP_TEXT.run_validation(data),)
        if not isinstance(data, list):
            self.fail("invalid")
        return tuple(_STOP_LIST.run_validation(data))

    def to_representation(self, value):
        return list(value)


class StopFieldSchema(OpenApiSerializerFieldExtension):
    target_class = StopField

    def map_serializer_field(self, auto_schema, direction):
        return {
            "oneOf": _one_of(auto_schema, direction, _STOP_TEXT, _STOP_LIST),
            "nullable": True,
            "description": self.target.help_text,
        }


@extend_schema_field(
    {
        "type": "string",
        # A pattern rather than an enum: drf-spectacular names an enum after
        # its field, and "role" names the import's roles already.
        "pattern": f"^({'|'.join(ROLES)})$",
        "description": f"One of {', '.join(ROLES)}; 'developer' is taken as "
        "'system'. Tool messages are not supported.",
    }
)
class RoleField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=ROLES, **kwargs)


class ChatMessageSerializer(serializers.Serializer):
    role = RoleField()
    content = ContentField(help_text="The message's text.")


class StreamOptionsSerializer(serializers.Serializer):
    include_usage = StrictBooleanField(
        required=False,
        default=False,
        help_text="Send one more chunk before `data: [DONE]`, with empty choices "
        "and the usage of the whole answer; the other chunks then carry "
        "`usage: null`.",
    )


def _optional_number(low: float, high: float, help_text: str) -> StrictNumberField:
    return StrictNumberField(
        required=False,
        allow_null=True,
        min_value=low,
        max_value=high,
        help_text=help_text,
    )


class ChatCompletionInputSerializer(serializers.Serializer):
    model = StrictCharField(
        max_length=MAX_MODEL_NAME_CHARS,
        help_text="The model to answer. Used only when the operator lists it in "
        "LTM_CHAT_MODELS; any other is answered by the configured model, which "
        "the response's `model` names.",
    )
    messages = serializers.ListField(
        child=ChatMessageSerializer(),
        min_length=1,
        help_text="The conversation, oldest first. When the last message is the "
        "user's, it is the new turn: memories are recalled for it and it is "
        "remembered once answered. Earlier turns are not remembered again.",
    )
    user = UserIdField(
        error_messages={
            "required": "Name the end user in `user`: your own id for them, whose "
            "memories are recalled and kept (as userId elsewhere in the API)."
        },
        help_text="Your application's own id for the end user (the API's userId, "
        "same rules): whose memories are recalled and kept.",
    )
    stream = StrictBooleanField(
        required=False,
        allow_null=True,
        default=False,
        help_text="Answer as server-sent events (text/event-stream) of "
        "chat.completion.chunk objects, ending with `data: [DONE]`.",
    )
    stream_options = StreamOptionsSerializer(required=False, allow_null=True)
    max_tokens = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Tokens the answer may take, at most LTM_CHAT_MAX_TOKENS "
        f"(default {settings.LTM_CHAT_MAX_TOKENS}), which a larger value gets.",
    )
    max_completion_tokens = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="The same as max_tokens (OpenAI's newer name); the smaller wins.",
    )
    temperature = _optional_number(0, 2, "Passed to the model.")
    top_p = _optional_number(0, 1, "Passed to the model.")
    presence_penalty = _optional_number(
        -2, 2, "Passed to OpenAI-compatible models (not Bedrock)."
    )
    frequency_penalty = _optional_number(
        -2, 2, "Passed to OpenAI-compatible models (not Bedrock)."
    )
    seed = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=-(2**63),
        max_value=2**63 - 1,
        help_text="Passed to OpenAI-compatible models (not Bedrock).",
    )
    stop = StopField(
        required=False,
        allow_null=True,
        help_text="Up to 4 sequences where the model stops writing.",
    )
    n = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=1,
        help_text="One answer per request.",
    )


class ChatUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(
        source="input_tokens",
        help_text="Tokens the model read: the conversation with the memories "
        "shown to it (0 with the offline provider).",
    )
    completion_tokens = serializers.IntegerField(
        source="output_tokens", help_text="Tokens of the answer."
    )
    total_tokens = serializers.IntegerField()


class AssistantMessageSerializer(serializers.Serializer):
    role = StrictCharField(help_text="Always 'assistant'.")
    content = StrictCharField(help_text="The answer.")


class ChatChoiceSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    message = AssistantMessageSerializer()
    finish_reason = serializers.ChoiceField(
        choices=FINISH_REASONS,
        help_text="stop: the answer is complete; length: max_tokens ran out; "
        "content_filter: the model's filter stopped it.",
    )


class ChatCompletionEventSerializer(serializers.Serializer):
    """One server-sent event of a streamed answer, as a client parses it."""

    data = StrictCharField(
        help_text="A chat.completion.chunk object as JSON; `[DONE]` last. A "
        "failure once the stream has begun ends it with an object in the API's "
        'error shape, `{"error": {"code", "message", "details"}}`, instead of '
        "`[DONE]`."
    )


class ChatCompletionSerializer(serializers.Serializer):
    id = StrictCharField()
    object = serializers.ChoiceField(choices=["chat.completion"])
    created = serializers.IntegerField(help_text="Unix time, in seconds.")
    model = StrictCharField(help_text="The model that answered.")
    choices = ChatChoiceSerializer(many=True)
    usage = ChatUsageSerializer(
        help_text="Tokens of the call that answered (the memory call that keeps "
        "the turn is counted in the tenant's totals, not here)."
    )
