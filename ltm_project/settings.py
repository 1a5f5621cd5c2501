"""LTM settings, read from the environment (and an optional `.env` file)."""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Core -----------------------------------------------------------------
DEBUG = env.bool("LTM_DEBUG", default=False)
SECRET_KEY = env.str("LTM_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "LTM_SECRET_KEY must be set when LTM_DEBUG is off (see .env.example)."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-LTM_DEBUG-on"  # noqa: S105
ALLOWED_HOSTS = env.list(
    "LTM_ALLOWED_HOSTS",
    default=["127.0.0.1", "localhost", "[::1]", "testserver"] if DEBUG else [],
)
CSRF_TRUSTED_ORIGINS = env.list("LTM_CSRF_TRUSTED_ORIGINS", default=[])
DATA_DIR = Path(env.str("LTM_DATA_DIR", default=str(BASE_DIR / "var")))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "memories",
]

MIDDLEWARE = [
    # X-Request-ID, in every log line of the request.
    "ltm_project.logs.request_id_middleware",
    # Times every request and answers /metrics; then /healthz and /readyz. Both
    # before the host check, the HTTPS redirect and auth: orchestrators and
    # Prometheus call a worker by its address, over plain HTTP, with no token.
    "ltm_project.metrics.metrics_middleware",
    "ltm_project.health.health_middleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and the API docs' static files under gunicorn.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "ltm_project.deadline.deadline_middleware",
]

ROOT_URLCONF = "ltm_project.urls"
WSGI_APPLICATION = "ltm_project.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'ltm.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] != ":memory:":
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets readers work while one process writes; the timeout makes a second
    # writer wait for the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                # Forgotten text is overwritten, not left in free pages.
                "PRAGMA secure_delete=ON; "
                # A 64 MiB page cache rather than 2: a search at 100,000
                # memories reads a few hundred scattered rows. Pages beyond it
                # are read through a memory map of the file (up to 2 GiB), from
                # the page cache every process shares, without a copy each:
                # a message at 100,000 memories took 36 ms instead of 39.
                "PRAGMA cache_size=-65536; PRAGMA mmap_size=2147418112;"
            ),
        }
    )
# SQLite: seconds between the WAL checkpoints each process makes from a thread
# of its own, so that no request makes them (0: SQLite's own, in the commit
# that crosses 1,000 pages of log).
LTM_SQLITE_CHECKPOINT_SECONDS = env.float("LTM_SQLITE_CHECKPOINT_SECONDS", default=1.0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Security (effective when LTM_DEBUG is off) ----------------------------
# Behind a TLS proxy (the expected deployment), the proxy says the request
# came over HTTPS in X-Forwarded-Proto; it must set or strip that header.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Plain HTTP is redirected to HTTPS, and browsers are told to use HTTPS only.
SECURE_SSL_REDIRECT = env.bool("LTM_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("LTM_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("LTM_HSTS_INCLUDE_SUBDOMAINS", default=False)
# Both are the deployer's choice (every subdomain on HTTPS; the browsers' list):
# `check --deploy` names them (W005, W021) until they are set.
SECURE_HSTS_PRELOAD = env.bool("LTM_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("LTM_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Static files ---------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env.str("LTM_STATIC_ROOT", default=str(DATA_DIR / "static"))

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Request limits -------------------------------------------------------
# Characters in one message sent to /message or /forget (a long reply pasted
# into a chat fits; it is kept in passages).
LTM_MAX_MESSAGE_CHARS = env.int("LTM_MAX_MESSAGE_CHARS", default=32_000)
# Characters in one imported message: an assistant's longest answers fit.
LTM_IMPORT_MAX_MESSAGE_CHARS = env.int("LTM_IMPORT_MAX_MESSAGE_CHARS", default=400_000)
# Characters in a userId.
LTM_MAX_USER_ID_CHARS = 255
# Request bodies are refused above these sizes (bytes): every endpoint but the
# import, and the import. 512 KiB holds the longest valid request of the other
# endpoints in any JSON spelling: 32,000 characters each escaped as a surrogate
# pair (12 bytes, as json.dumps writes an emoji) are 384,000 bytes.
LTM_MAX_REQUEST_BYTES = env.int("LTM_MAX_REQUEST_BYTES", default=512 * 1024)
LTM_MAX_IMPORT_BYTES = env.int("LTM_MAX_IMPORT_BYTES", default=8 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(LTM_MAX_REQUEST_BYTES, LTM_MAX_IMPORT_BYTES)

# Keys the permutation that gives clients message ids without the gaps of one
# shared sequence (memories/public_ids.py); derived from LTM_SECRET_KEY if empty.
# Changing it changes every message id clients have seen.
LTM_PUBLIC_ID_KEY = env.str("LTM_PUBLIC_ID_KEY", default="")

# Requests per tenant (all its tokens together), e.g. "600/min"; empty: no limit.
LTM_RATE_LIMIT = env.str("LTM_RATE_LIMIT", default="600/min")
# Failed authentications per client address, after which it is refused (429)
# until the window ends; empty: no limit.
LTM_AUTH_FAILURE_LIMIT = env.str("LTM_AUTH_FAILURE_LIMIT", default="30/min")

# --- REST API -------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.IsTenant"],
    "DEFAULT_PARSER_CLASSES": ["ltm_project.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.throttling.TenantRateThrottle"],
    "EXCEPTION_HANDLER": "ltm_project.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "LTM — long-term memory API",
    "DESCRIPTION": (
        "Send what your users say; LTM keeps the facts worth keeping, recalls them "
        "for the next message, answers with them in context and forgets on request."
        "\n\nAuthenticate with `Authorization: Bearer <token>`. Every error is JSON "
        'of the shape `{"error": {"code", "message", "details"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "ltm_project.schema.strings_refuse_nul",
        "ltm_project.schema.import_batch_size",
    ],
    # Swagger UI's files are served from the installed package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

CACHES = {
    "default": env.cache("LTM_CACHE_URL", default="locmemcache://"),
}

# --- Memory pipeline providers --------------------------------------------
# Embeddings: "local" (bundled MiniLM, offline), "openai", "bedrock" or
# "multilingual" (USE multilingual v3, offline; needs the `multilingual` extra).
LTM_EMBEDDINGS_PROVIDER = env.str("LTM_EMBEDDINGS_PROVIDER", default="local")
# Override where the local model's files are (defaults: the installed packages).
LTM_LOCAL_EMBEDDING_MODEL_PATH = env.str("LTM_LOCAL_EMBEDDING_MODEL_PATH", default="")
LTM_LOCAL_EMBEDDING_TOKENIZER_PATH = env.str(
    "LTM_LOCAL_EMBEDDING_TOKENIZER_PATH", default=""
)
# Texts per model run, and how many runs go side by side (default: the cores).
# Compute the local model in int8 (built once from the installed model, cached).
LTM_LOCAL_EMBEDDING_QUANTIZE = env.bool("LTM_LOCAL_EMBEDDING_QUANTIZE", default=True)
LTM_MODEL_CACHE_DIR = env.str("LTM_MODEL_CACHE_DIR", default=str(DATA_DIR / "models"))
LTM_EMBEDDING_BATCH_SIZE = env.int("LTM_EMBEDDING_BATCH_SIZE", default=8)
LTM_EMBEDDING_THREADS = env.int("LTM_EMBEDDING_THREADS", default=os.cpu_count() or 1)
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
LTM_OPENAI_EMBEDDING_MODEL = env.str(
    "LTM_OPENAI_EMBEDDING_MODEL", default="text-embedding-3-small"
)
LTM_OPENAI_EMBEDDING_DIMENSIONS = env.int(
    "LTM_OPENAI_EMBEDDING_DIMENSIONS", default=1536
)
LTM_OPENAI_TIMEOUT_SECONDS = env.float("LTM_OPENAI_TIMEOUT_SECONDS", default=30.0)
LTM_OPENAI_MAX_RETRIES = env.int("LTM_OPENAI_MAX_RETRIES", default=2)

# Vector store: "local" (exact search in a SQLite file under LTM_DATA_DIR) or
# "s3vectors" (Amazon S3 Vectors; credentials from the standard AWS chain).
LTM_VECTOR_STORE = env.str("LTM_VECTOR_STORE", default="local")
LTM_LOCAL_VECTOR_STORE_PATH = env.str(
    "LTM_LOCAL_VECTOR_STORE_PATH", default=str(DATA_DIR / "vectors.sqlite3")
)
# Each process keeps the vectors of the users it recently searched in memory,
# up to this many MiB (100,000 vectors of 384 dimensions take about 150 MiB); 0
# reads them from the file for every query.
LTM_LOCAL_VECTOR_CACHE_MB = env.int("LTM_LOCAL_VECTOR_CACHE_MB", default=512)
LTM_S3VECTORS_BUCKET = env.str("LTM_S3VECTORS_BUCKET", default="")
LTM_S3VECTORS_REGION = env.str("LTM_S3VECTORS_REGION", default="")
LTM_S3VECTORS_ENDPOINT_URL = env.str("LTM_S3VECTORS_ENDPOINT_URL", default="")
LTM_S3VECTORS_INDEX_PREFIX = env.str("LTM_S3VECTORS_INDEX_PREFIX", default="ltm")
LTM_S3VECTORS_CREATE_INDEXES = env.bool("LTM_S3VECTORS_CREATE_INDEXES", default=True)
LTM_S3VECTORS_TEXT_SEARCH = env.bool("LTM_S3VECTORS_TEXT_SEARCH", default=True)
LTM_S3VECTORS_LIST_SEGMENTS = env.int("LTM_S3VECTORS_LIST_SEGMENTS", default=4)
# A call to S3 Vectors gives up after attempts x (connect + read) seconds, 16 by
# default: a request makes at most three, well inside gunicorn's 60-second timeout.
LTM_S3VECTORS_MAX_ATTEMPTS = env.int("LTM_S3VECTORS_MAX_ATTEMPTS", default=2)
LTM_S3VECTORS_RETRY_MODE = env.str("LTM_S3VECTORS_RETRY_MODE", default="adaptive")
LTM_S3VECTORS_CONNECT_TIMEOUT_SECONDS = env.float(
    "LTM_S3VECTORS_CONNECT_TIMEOUT_SECONDS", default=2.0
)
LTM_S3VECTORS_READ_TIMEOUT_SECONDS = env.float(
    "LTM_S3VECTORS_READ_TIMEOUT_SECONDS", default=6.0
)

# Language model: "offline" (rules and templates, no model), "openai" (or any
# server speaking its API, via OPENAI_BASE_URL) or "bedrock".
LTM_LLM_PROVIDER = env.str("LTM_LLM_PROVIDER", default="offline")
LTM_OPENAI_CHAT_MODEL = env.str("LTM_OPENAI_CHAT_MODEL", default="gpt-4-turbo")
# How the OpenAI-compatible server is asked for JSON of a schema: json_schema,
# json_object (with the schema), tool (a forced tool call) or prompt (the schema
# in the prompt). auto starts with json_schema and moves down that list, once a
# process, when the server answers that it does not take a mode.
LTM_OPENAI_STRUCTURED_OUTPUT = env.str("LTM_OPENAI_STRUCTURED_OUTPUT", default="auto")
LTM_LLM_TIMEOUT_SECONDS = env.float("LTM_LLM_TIMEOUT_SECONDS", default=30.0)
LTM_LLM_MAX_RETRIES = env.int("LTM_LLM_MAX_RETRIES", default=2)
# What the memory call sees besides the new message.
LTM_LLM_RECENT_MESSAGES = env.int("LTM_LLM_RECENT_MESSAGES", default=4)
LTM_LLM_RELATED_MEMORIES = env.int("LTM_LLM_RELATED_MEMORIES", default=10)
# A forget request shows the model only memories this close to it (or sharing a
# keyword): an unrelated memory can never be chosen, whatever its text says.
LTM_LLM_FORGET_MIN_SCORE = env.float("LTM_LLM_FORGET_MIN_SCORE", default=0.2)
# Amazon Bedrock (LTM_LLM_PROVIDER=bedrock, LTM_EMBEDDINGS_PROVIDER=bedrock);
# credentials from the standard AWS chain.
LTM_BEDROCK_REGION = env.str("LTM_BEDROCK_REGION", default="")
LTM_BEDROCK_ENDPOINT_URL = env.str("LTM_BEDROCK_ENDPOINT_URL", default="")
LTM_BEDROCK_CHAT_MODEL = env.str(
    "LTM_BEDROCK_CHAT_MODEL", default="anthropic.claude-3-5-haiku-20241022-v1:0"
)
LTM_BEDROCK_EMBEDDING_MODEL = env.str(
    "LTM_BEDROCK_EMBEDDING_MODEL", default="amazon.titan-embed-text-v2:0"
)
LTM_BEDROCK_EMBEDDING_DIMENSIONS = env.int(
    "LTM_BEDROCK_EMBEDDING_DIMENSIONS", default=1024
)

# --- Chat completions (POST /v1/chat/completions) --------------------------
# Models a request may name (comma-separated). A request naming any other is
# answered by the configured model (LTM_OPENAI_CHAT_MODEL or
# LTM_BEDROCK_CHAT_MODEL), so no tenant spends the operator's key on a model the
# operator did not choose. Empty: always the configured model.
LTM_CHAT_MODELS = env.list("LTM_CHAT_MODELS", default=[])
# Tokens one answer may take; a request asking for more (or naming none) gets
# this many.
LTM_CHAT_MAX_TOKENS = env.int("LTM_CHAT_MAX_TOKENS", default=4096)
# Bytes in one request body: a chat client sends the whole conversation.
LTM_MAX_CHAT_BYTES = env.int("LTM_MAX_CHAT_BYTES", default=4 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(DATA_UPLOAD_MAX_MEMORY_SIZE, LTM_MAX_CHAT_BYTES)

# --- Memory behaviour -----------------------------------------------------
LTM_RECALL_TOP_K = env.int("LTM_RECALL_TOP_K", default=5)
# Cosine similarity below which a memory is not considered related to a message.
LTM_RECALL_MIN_SCORE = env.float("LTM_RECALL_MIN_SCORE", default=0.25)
# At or above this similarity a new fact is the same as a stored one.
LTM_DUPLICATE_SIMILARITY = env.float("LTM_DUPLICATE_SIMILARITY", default=0.92)
# At or above this similarity a forget request names a memory.
LTM_FORGET_MIN_SCORE = env.float("LTM_FORGET_MIN_SCORE", default=0.55)
# For "forget everything about X": the lower bar a memory must reach.
LTM_FORGET_TOPIC_MIN_SCORE = env.float("LTM_FORGET_TOPIC_MIN_SCORE", default=0.3)

# Hybrid search: how many candidates each ranking gives, and how they are fused
# (reciprocal rank fusion: weight / (k + rank), summed over the two rankings).
# Pending vector operations (left by a store failure) a request applies before
# its own work, at most; the rest wait for sync_vectors.
LTM_OUTBOX_REQUEST_RETRIES = env.int("LTM_OUTBOX_REQUEST_RETRIES", default=20)

LTM_SEARCH_CANDIDATES = env.int("LTM_SEARCH_CANDIDATES", default=100)
LTM_SEARCH_RRF_K = env.int("LTM_SEARCH_RRF_K", default=20)
LTM_SEARCH_KEYWORD_WEIGHT = env.float("LTM_SEARCH_KEYWORD_WEIGHT", default=1.0)
LTM_SEARCH_VECTOR_WEIGHT = env.float("LTM_SEARCH_VECTOR_WEIGHT", default=0.7)
# Weight of the neighbouring messages' words against the memory's own words.
LTM_SEARCH_CONTEXT_WEIGHT = env.float("LTM_SEARCH_CONTEXT_WEIGHT", default=0.6)
# Keyword weights are counted over the user's memories plus this many documents
# of everyday language (word frequencies of this language; "" for none), so a
# user with few memories still knows "really" from "Coimbra".
# Keyword ranking counts every repeat of every word with FTS5's bm25() for a
# user of up to this many memories (SQLite; its cost grows with the user's
# memories); beyond, a faster count where the commonest words count once a field.
LTM_SEARCH_EXACT_KEYWORD_MEMORIES = env.int(
    "LTM_SEARCH_EXACT_KEYWORD_MEMORIES", default=20000
)
# Beyond it, only this many of a query's words are ranked: those least common in
# everyday language (each word's rows are read, and common words have many).
LTM_SEARCH_FAST_KEYWORD_TERMS = env.int("LTM_SEARCH_FAST_KEYWORD_TERMS", default=6)
LTM_SEARCH_BACKGROUND_DOCUMENTS = env.int(
    "LTM_SEARCH_BACKGROUND_DOCUMENTS", default=3000
)
LTM_SEARCH_BACKGROUND_LANGUAGE = env.str("LTM_SEARCH_BACKGROUND_LANGUAGE", default="en")
# Put memories from a message already in the results after those from new ones.
LTM_SEARCH_DIVERSIFY = env.bool("LTM_SEARCH_DIVERSIFY", default=True)
# Neighbouring messages whose words are indexed with a memory (keyword search).
LTM_CONTEXT_MESSAGES_BEFORE = env.int("LTM_CONTEXT_MESSAGES_BEFORE", default=2)
LTM_CONTEXT_MESSAGES_AFTER = env.int("LTM_CONTEXT_MESSAGES_AFTER", default=1)
# Messages in one import request.
LTM_IMPORT_MAX_MESSAGES = env.int("LTM_IMPORT_MAX_MESSAGES", default=500)
# Seconds an import request may spend storing. A larger batch is stored in
# parts (whole messages, in order) until the next part would not fit, then the
# answer is 503 import_incomplete and resending the batch goes on from there.
# Well inside gunicorn's documented --timeout 60.
LTM_IMPORT_TIME_BUDGET_SECONDS = env.float(
    "LTM_IMPORT_TIME_BUDGET_SECONDS", default=30.0
)
# Seconds one request may spend in all: calls to language models, embedding APIs
# and S3 Vectors take their timeouts and retries from what is left (a model that
# stalls makes /message fall back to the rules, a store that stalls answers
# 503), so the answer comes before gunicorn's documented --timeout 60.
LTM_REQUEST_TIME_BUDGET_SECONDS = env.float(
    "LTM_REQUEST_TIME_BUDGET_SECONDS", default=45.0
)
# Passages stored in one transaction of an import (its parts).
LTM_IMPORT_PART_PASSAGES = env.int("LTM_IMPORT_PART_PASSAGES", default=200)
# Words in one passage of a long message (an episode each): the local model
# reads 256 word pieces, and ten hits stay short enough to hand a model.
LTM_PASSAGE_WORDS = env.int("LTM_PASSAGE_WORDS", default=60)
# Weight of what an assistant said against what the user said, in search.
LTM_SEARCH_ASSISTANT_WEIGHT = env.float("LTM_SEARCH_ASSISTANT_WEIGHT", default=0.25)
# Weight of episodes (what was said) against facts (what was taken from it).
LTM_SEARCH_EPISODE_WEIGHT = env.float("LTM_SEARCH_EPISODE_WEIGHT", default=1.0)

# --- Background work (Celery) ------------------------------------------------
# A broker (redis://..., amqp://...) sends background work to workers started
# with `celery -A ltm_project worker`. Empty: every task runs at once in the
# process that asks for it (no broker, no worker: the embedded default).
LTM_BROKER_URL = env.str("LTM_BROKER_URL", default="")
CELERY_BROKER_URL = LTM_BROKER_URL or "memory://"
# The queue this deployment's tasks go to (several deployments can share a broker).
LTM_TASK_QUEUE = env.str("LTM_TASK_QUEUE", default="ltm")
CELERY_TASK_DEFAULT_QUEUE = LTM_TASK_QUEUE
CELERY_TASK_ALWAYS_EAGER = not LTM_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged when done: a worker that dies mid-task leaves it to
# another. Every task is idempotent.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A request that cannot hand work to the broker gives up in about a second and
# does the work itself, rather than hanging.
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 2, "socket_connect_timeout": 1}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# Run with `celery -A ltm_project worker --beat` (one worker only): outbox
# entries no task finished, applied once their backoff is over.
LTM_OUTBOX_SWEEP_SECONDS = env.int("LTM_OUTBOX_SWEEP_SECONDS", default=60)
CELERY_BEAT_SCHEDULE = {
    "vector-outbox-sweep": {
        "task": "memories.tasks.sweep_vector_operations",
        "schedule": float(LTM_OUTBOX_SWEEP_SECONDS),
    },
    "pending-messages-sweep": {
        "task": "memories.tasks.sweep_pending_messages",
        "schedule": float(LTM_OUTBOX_SWEEP_SECONDS),
    },
    "expired-exports-sweep": {
        "task": "memories.tasks.sweep_exports",
        "schedule": 60.0,
    },
}
# How long the file of an export run as a task is kept once written (it is
# discarded sooner when the user's data is forgotten or erased).
LTM_EXPORT_RETENTION_SECONDS = env.int("LTM_EXPORT_RETENTION_SECONDS", default=3600)
# "sync": /message remembers, then replies. "async" (needs LTM_BROKER_URL):
# /message recalls and replies; a worker remembers, each user's messages in order.
LTM_MEMORY_MODE = env.str("LTM_MEMORY_MODE", default="sync")
if LTM_MEMORY_MODE not in ("sync", "async"):
    raise ImproperlyConfigured("LTM_MEMORY_MODE is 'sync' or 'async'.")

# --- Metrics (/metrics, Prometheus) -----------------------------------------
LTM_METRICS_ENABLED = env.bool("LTM_METRICS_ENABLED", default=True)
# Who may read /metrics: these networks (Prometheus on the same host or in the
# cluster's own range), or a request bearing this token.
LTM_METRICS_NETWORKS = env.str("LTM_METRICS_NETWORKS", default="127.0.0.0/8,::1/128")
LTM_METRICS_TOKEN = env.str("LTM_METRICS_TOKEN", default="")
# Tenants given their own memories and users series (the rest are "other"),
# counted at most this often.
LTM_METRICS_TENANTS = env.int("LTM_METRICS_TENANTS", default=20)
# A Celery worker serves its task series (wait and run times) on this port
# (0: not served), on this address.
LTM_WORKER_METRICS_PORT = env.int("LTM_WORKER_METRICS_PORT", default=0)
LTM_WORKER_METRICS_ADDRESS = env.str("LTM_WORKER_METRICS_ADDRESS", default="127.0.0.1")
LTM_METRICS_TENANT_SECONDS = env.int("LTM_METRICS_TENANT_SECONDS", default=60)

# "text" or "json" (one object a line, for log collectors).
LTM_LOG_FORMAT = env.str("LTM_LOG_FORMAT", default="text")
if LTM_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured("LTM_LOG_FORMAT is 'text' or 'json'.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "ltm_project.logs.RequestIdFilter"}},
    "formatters": {
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
        },
        "json": {"()": "ltm_project.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": LTM_LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LTM_LOG_LEVEL", "INFO")},
    # It logs every call at INFO, and a traceback before re-raising what we handle.
    "loggers": {
        "langchain_aws": {"level": "CRITICAL"},
        # The MCP SDK logs its session manager's start and stop, once per request
        # of /mcp (stateless: one each), at INFO.
        "mcp": {"level": "WARNING"},
        # faiss says at INFO, on import, which of its builds it could not load.
        "faiss": {"level": "WARNING"},
    },
}
