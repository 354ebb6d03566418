"""Settings of the demo shop, read from the environment where a deployer expects them.

- DATABASE_URL       default: SQLite at var/demo.sqlite3
- CELERY_BROKER_URL  unset: tasks run eagerly in the web process (no Redis needed)
- MEDIA_ROOT         default: var/media
- DJANGO_SECRET_KEY, DJANGO_DEBUG, DJANGO_ALLOWED_HOSTS for a deployment
- VISUAL_RECS_CACHE_DIR  where the ResNet50 weights are built (default ~/.cache/visual_recs)
- VISUAL_RECS_INDEX  "pgvector": nearest neighbours in PostgreSQL with pgvector (the compose
  stack); unset: the embedded exact index
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)  # the default SQLite database lives here, and a fresh clone has no var/

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "visual_recs",
    "demo_shop.shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_shop.urls"
WSGI_APPLICATION = "demo_shop.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'demo.sqlite3'}", conn_max_age=60
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Unset broker: the embedded default, tasks run in-process right after the save commits.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# One ResNet50 per worker process; a worker does one batch at a time and TensorFlow uses the cores.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {
    "visual-recs-sweep": {"task": "visual_recs.tasks.sweep", "schedule": 300.0, "options": {"queue": "visual_recs"}},
}

VISUAL_RECS = {
    "MODELS": {
        "products": {
            "model": "visual_recs.Product",
            "image_field": "image",
            "partition_field": "gender",
            "filter": {"is_active": True},
        },
    },
    "NEIGHBOURS": 20,
    "QUEUE": "visual_recs",
}
if os.environ.get("VISUAL_RECS_INDEX") == "pgvector":
    VISUAL_RECS["INDEX"] = {
        "BACKEND": "visual_recs.backends.pgvector.PgvectorIndex",
        "OPTIONS": {"dimensions": 2048, "ef_search": 100},
    }

ABSOLUTE_URL_OVERRIDES = {"visual_recs.product": lambda product: f"/products/{product.pk}/"}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"visual_recs": {"handlers": ["console"], "level": "INFO"}},
}
