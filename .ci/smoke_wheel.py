"""Smoke test of the installed wheel, as a shop gets it: `pip install "django_visual_recs-*.whl[api]"`.

Run by .ci/test-wheel with the clean virtualenv's python, from a throwaway directory outside
the source tree and with `python -I`, so only the installed package can be imported. It is
its own settings module and URLconf: a minimal project on SQLite with the app, the admin and
the REST API. It migrates, runs the system checks, indexes three products with a tiny
extractor defined here (no ResNet50, no TensorFlow, no broker), renders the template tag, and
calls each API URL and the admin's change list with the test client. Any failure raises.
"""

from __future__ import annotations

import importlib.util
import io
import sys
import tempfile
from pathlib import Path

import django
import numpy as np
from django.conf import settings
from django.urls import include, path

from visual_recs.backends.base import BaseExtractor

WORK_DIR = Path(tempfile.mkdtemp(prefix="visual-recs-smoke-"))


class MeanColourExtractor(BaseExtractor):
    """Three numbers per photo, its mean colour: enough to give the lists an order."""

    input_size = (16, 16)
    batch_size = 8
    model_id = "smoke-mean-colour"
    dims = 3

    def extract(self, images: np.ndarray) -> np.ndarray:
        return (images.mean(axis=(1, 2)) / 255.0).astype(np.float32)


urlpatterns: list = []  # filled after setup: importing the admin needs the apps ready


def configure() -> None:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="smoke-test-only",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
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
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,  # the app's similar_items.html must come from the wheel
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(WORK_DIR / "db.sqlite3")}},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        STATIC_URL="static/",
        MEDIA_URL="/media/",
        MEDIA_ROOT=str(WORK_DIR / "media"),
        USE_TZ=True,
        # A broker nobody listens on: saves inside queue.paused() must not need one. Its own
        # database number, as the Quickstart asks of each shop (else check warns, W006).
        CELERY_BROKER_URL="redis://127.0.0.1:1/5",
        VISUAL_RECS={
            # The bundled Product of the opt-in catalog app, by gender, shown when active.
            "MODELS": {"products": "visual_recs.contrib.catalog.CatalogProducts"},
            "EXTRACTOR": {"BACKEND": f"{__name__}.MeanColourExtractor"},
            "NEIGHBOURS": 5,
        },
    )
    django.setup()
    # The project's Celery app, as a shop's yourproject/celery.py makes it (else check W004).
    from celery import Celery

    celery_app = Celery("smoke")
    celery_app.config_from_object("django.conf:settings", namespace="CELERY")
    # A project's app becomes every thread's default through DJANGO_SETTINGS_MODULE (Celery's
    # Django fixup); settings.configure() sets none, so this one says it itself.
    celery_app.set_default()
    from django.contrib import admin

    urlpatterns.extend([
        path("admin/", admin.site.urls),
        path("api/visual-recs/", include("visual_recs.api.urls")),
    ])


def step(message: str) -> None:
    print(f"ok: {message}")


def photo(rgb: tuple[int, int, int]):
    from django.core.files.base import ContentFile
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (30, 40), rgb).save(buffer, "PNG")
    return ContentFile(buffer.getvalue(), name="photo.png")


def main() -> None:
    configure()
    import visual_recs
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.template import Context, Template
    from django.test import Client

    from visual_recs import indexing, queue
    from visual_recs.contrib.catalog.models import Product

    where = Path(visual_recs.__file__).resolve()
    assert "site-packages" in where.parts, f"visual_recs imported from {where}, not from the installed wheel"
    step(f"visual_recs imported from {where.parent} (Django {django.get_version()})")

    call_command("migrate", verbosity=0)
    out = io.StringIO()
    call_command("makemigrations", "visual_recs", "visual_recs_catalog", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue(), out.getvalue()
    step("migrate; the shipped migrations match the models (makemigrations --check)")
    call_command("check", fail_level="WARNING")
    step("manage.py check: no errors, no warnings")

    with queue.paused():  # no broker here: index below, in this process
        products = [
            Product.objects.create(title=title, gender="Men", image=photo(rgb))
            for title, rgb in [("Red shoe", (200, 20, 20)), ("Dark red shoe", (150, 10, 10)), ("Blue shoe", (20, 20, 200))]
        ]
    summary = indexing.index_many(products)
    assert summary.indexed == 3, summary
    red = products[0]
    assert [s.object.title for s in indexing.similar_to(red, limit=2)] == ["Dark red shoe", "Blue shoe"]
    step("indexed 3 products with a tiny extractor; similar_to(red shoe) = dark red, then blue")

    html = Template("{% load visual_recs %}{% similar_items product limit=2 %}").render(Context({"product": red}))
    assert 'class="visual-recs__list"' in html and html.count('class="visual-recs__card"') == 2, html
    step("{% similar_items %} rendered the packaged visual_recs/similar_items.html with 2 cards")

    client = Client()
    similar = client.get(f"/api/visual-recs/products/{red.pk}/similar/?limit=2")
    assert similar.status_code == 200 and similar.json()["status"] == "ready", similar.content
    assert [item["title"] for item in similar.json()["results"]] == ["Dark red shoe", "Blue shoe"]
    upload = photo((190, 15, 15))
    upload.name = "query.png"
    found = client.post("/api/visual-recs/products/search/", {"image": upload, "partition": "Men", "limit": 1})
    assert found.status_code == 200 and found.json()["results"][0]["title"] == "Red shoe", found.content
    assert client.post("/api/visual-recs/products/search/", {}).status_code == 400
    assert client.get("/api/visual-recs/status/").status_code == 403  # staff only
    schema = client.get("/api/visual-recs/schema/?format=json")
    assert schema.status_code == 200, schema.status_code
    assert "/api/visual-recs/{key}/{id}/similar/" in schema.json()["paths"], list(schema.json()["paths"])
    step("API: similar 200, search by photo 200, search without a photo 400, status 403 anonymous, schema 200")

    staff = get_user_model().objects.create_superuser("staff", "staff@example.com", "not-used")
    client.force_login(staff)
    assert client.get("/api/visual-recs/status/").json()["models"]["products"]["partitions"]["Men"]["ready"] == 3
    changelist = client.get("/admin/visual_recs_catalog/product/")
    assert changelist.status_code == 200 and b"Red shoe" in changelist.content
    step("staff: status counts 3 ready; the admin's Product change list renders")
    from visual_recs.backends.fast import FastResNet50Extractor

    assert FastResNet50Extractor().precision == "fp32"
    import openvino  # noqa: F401  (the default extractor's runtime is a dependency of the wheel)

    converters = [name for name in ("tensorflow", "keras", "tf2onnx", "onnx", "nncf") if importlib.util.find_spec(name)]
    assert converters == [], f"the runtime installed the convert extra's {converters}"
    step("the default extractor's module and OpenVINO import from the installed wheel; no TensorFlow, no converters")
    print(f"smoke test of the installed wheel passed (Python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
