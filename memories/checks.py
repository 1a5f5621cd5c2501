"""Start-up checks: a misconfigured provider is reported before the first request."""

from django.conf import settings
from django.core.checks import Error, register

EMBEDDINGS_PROVIDERS = ("local", "multilingual", "openai", "bedrock")
LLM_PROVIDERS = ("offline", "openai", "bedrock")


@register()
def embeddings_provider_check(app_configs, **kwargs):
    provider = settings.LTM_EMBEDDINGS_PROVIDER
    if provider not in EMBEDDINGS_PROVIDERS:
        return [
            Error(
                f"LTM_EMBEDDINGS_PROVIDER={provider!r} is not one of "
                f"{', '.join(EMBEDDINGS_PROVIDERS)}.",
                id="memories.E001",
            )
        ]
    if provider == "openai" and not settings.OPENAI_API_KEY:
        return [
            Error(
                "LTM_EMBEDDINGS_PROVIDER=openai needs OPENAI_API_KEY.",
                hint="Set OPENAI_API_KEY (any value for a server that takes none).",
                id="memories.E002",
            )
        ]
    return []


@register()
def language_model_check(app_configs, **kwargs):
    provider = settings.LTM_LLM_PROVIDER
    if provider not in LLM_PROVIDERS:
        return [
            Error(
                f"LTM_LLM_PROVIDER={provider!r} is not one of "
                f"{', '.join(LLM_PROVIDERS)}.",
                id="memories.E003",
            )
        ]
    if provider == "openai" and not settings.OPENAI_API_KEY:
        return [
            Error(
                "LTM_LLM_PROVIDER=openai needs OPENAI_API_KEY.",
                hint="Set OPENAI_API_KEY (any value for a server that takes none).",
                id="memories.E004",
            )
        ]
    uses_bedrock = "bedrock" in (provider, settings.LTM_EMBEDDINGS_PROVIDER)
    if uses_bedrock and not settings.LTM_BEDROCK_REGION:
        return [
            Error(
                "Amazon Bedrock is configured but LTM_BEDROCK_REGION is not set.",
                id="memories.E005",
            )
        ]
    return []
