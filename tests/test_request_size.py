"""``RequestSizeMiddleware``: a body declared too large is refused before anything reads it.

The demo's search page is a Django form behind ``CsrfViewMiddleware``, which reads a POST's
form (and spools its files to disk) before the view's own size check runs. The requests
here come through Django's real WSGI handler with a ``wsgi.input`` that fails the test if
anything reads it.
"""

from __future__ import annotations

import io
import runpy
from pathlib import Path

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpResponse
from django.test import RequestFactory

from visual_recs.conf import FORM_OVERHEAD_BYTES
from visual_recs.middleware import RequestSizeMiddleware

REPO = Path(__file__).resolve().parents[1]
THREE_GIB = 3 * 1024**3


class UnreadableBody(io.RawIOBase):
    """A request body nobody may read: reading it is the failure under test."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise AssertionError("the request body was read")


def demo_middleware(monkeypatch) -> list[str]:
    monkeypatch.setenv("DJANGO_SECRET_KEY", "a key for reading the settings")
    return runpy.run_path(str(REPO / "demo_shop" / "settings.py"))["MIDDLEWARE"]


@pytest.fixture
def demo_site(settings, monkeypatch):
    """Django serving the demo's URLs with the demo's own middleware, as its settings list it."""
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "demo_shop.shop"]
    settings.ROOT_URLCONF = "demo_shop.urls"
    settings.MIDDLEWARE = demo_middleware(monkeypatch)
    return WSGIHandler()


def post(handler: WSGIHandler, path: str, declared: int | str) -> tuple[str, bytes]:
    environ = RequestFactory().post(path, content_type="multipart/form-data; boundary=x").environ
    environ.update({"CONTENT_LENGTH": str(declared), "wsgi.input": UnreadableBody()})
    status = []
    body = b"".join(handler(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], body


@pytest.mark.django_db
def test_the_demo_search_page_refuses_a_3_gib_body_unread(demo_site):
    status, body = post(demo_site, "/search/", THREE_GIB)
    assert status.startswith("413") and b"larger than the 20.1 MB" in body


def test_the_demo_lists_the_size_check_before_any_middleware_that_reads(monkeypatch):
    assert demo_middleware(monkeypatch)[0] == "visual_recs.middleware.RequestSizeMiddleware"


def test_the_limit_is_the_largest_photo_upload_unless_set(settings, rf):
    def status_of(declared: int | str) -> int:
        request = rf.post("/", content_type="multipart/form-data; boundary=x", CONTENT_LENGTH=str(declared))
        return RequestSizeMiddleware(lambda request: HttpResponse())(request).status_code

    settings.VISUAL_RECS = {"MAX_IMAGE_BYTES": 1000}
    assert status_of(1000 + FORM_OVERHEAD_BYTES) == 200
    assert status_of(1001 + FORM_OVERHEAD_BYTES) == 413
    # Django reads a body of unusable length as empty: nothing to refuse.
    assert status_of("lots") == 200
    settings.VISUAL_RECS = {"MAX_IMAGE_BYTES": 1000, "MAX_REQUEST_BYTES": 50 * 1024**2}
    assert status_of(50 * 1024**2) == 200 and status_of(50 * 1024**2 + 1) == 413

