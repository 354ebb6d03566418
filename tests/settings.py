"""Settings of the test suite: the bundled Product and an "existing shop" model, both indexed.

Tasks run eagerly unless a test points Celery at the real broker and worker. The database
is a file (SQLite by default, or DATABASE_URL) so a worker process can share it.
"""

import importlib.util
import os
from pathlib import Path

import dj_database_url
import django

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)  # the SQLite files live here, and a fresh clone has no var/

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]

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
    "visual_recs.contrib.catalog",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# A worker started by the tests gets the test database's name through this variable.
_worker_db = os.environ.get("VISUAL_RECS_WORKER_DB")
DATABASES = {"default": dj_database_url.config(default=f"sqlite:///{VAR_DIR / 'tests.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # VISUAL_RECS_TEST_DB lets two test runs share a checkout without sharing a database.
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("VISUAL_RECS_TEST_DB", str(VAR_DIR / "test-db.sqlite3"))}
    # As a shop on SQLite should: writers wait for each other rather than fail (README, "Settings").
    # transaction_mode is new in Django 5.1; older ones only wait (timeout) on plain writes.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30}
    if django.VERSION >= (5, 1):
        DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
if _worker_db:
    DATABASES["default"]["NAME"] = _worker_db
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "static/"
MEDIA_URL = "/media/"
MEDIA_ROOT = os.environ.get("VISUAL_RECS_TEST_MEDIA", str(VAR_DIR / "test-media"))
USE_TZ = True

CELERY_BROKER_URL = os.environ.get("VISUAL_RECS_TEST_BROKER", "redis://127.0.0.1:6379/15")
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

VISUAL_RECS = {
    "MODELS": {
        "products": "visual_recs.contrib.catalog.CatalogProducts",
        "garments": "tests.testapp.visual.GarmentPhotos",
    },
    "NEIGHBOURS": 20,
}

# With django-oscar installed (the `oscar` extra; CI has it), its apps and visual_recs.contrib.oscar
# are installed too, for tests/test_oscar_*.py; without it those tests are skipped.
if importlib.util.find_spec("oscar") is not None:
    from tests.oscar_shop.installed import *  # noqa: F401,F403

    INSTALLED_APPS += OSCAR_APPS  # noqa: F405

# VISUAL_RECS_TEST_INDEX=pgvector (`make test-pgvector`) runs the suite on PgvectorIndex.
if os.environ.get("VISUAL_RECS_TEST_INDEX") == "pgvector":
    VISUAL_RECS["INDEX"] = {
        "BACKEND": "visual_recs.backends.pgvector.PgvectorIndex",
        "OPTIONS": {"dimensions": 2048, "m": 16, "ef_construction": 64, "ef_search": 100},
    }
