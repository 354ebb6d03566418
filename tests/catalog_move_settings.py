"""Settings of the migration tests of the bundled Product's move (``tests/test_catalog_move.py``).

A project on ``$DATABASE_URL`` with only ``visual_recs`` installed, or also
``visual_recs.contrib.catalog`` when ``CATALOG_MOVE_WITH_CATALOG=1``, as a shop upgrading from
0.1 has it before and after it reads the upgrade notes.
"""

import os

import dj_database_url

WITH_CATALOG = os.environ.get("CATALOG_MOVE_WITH_CATALOG") == "1"

SECRET_KEY = "tests-only"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "visual_recs",
    *(["visual_recs.contrib.catalog"] if WITH_CATALOG else []),
]
DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
MEDIA_ROOT = os.environ.get("CATALOG_MOVE_MEDIA", "/tmp/catalog-move-media")
CELERY_TASK_ALWAYS_EAGER = True

VISUAL_RECS = {
    "EXTRACTOR": {"BACKEND": "tests.fakes.ColourGridExtractor", "OPTIONS": {}},
    "MODELS": {"products": "visual_recs.contrib.catalog.CatalogProducts"} if WITH_CATALOG else {},
}
