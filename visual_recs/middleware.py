"""The app's middleware, each opt-in.

``RequestSizeMiddleware``: a request whose declared body is larger than ``MAX_REQUEST_BYTES``
is answered 413 before anything reads it. Put it first in ``MIDDLEWARE``: Django's own
middleware may read the body (``CsrfViewMiddleware`` reads a POST's form, spooling its files
to disk), and a view's own size check comes too late for that. Django reads no more than the
declared ``Content-Length`` of any body (``LimitedStream``), so the declared length is all
there is to check. The front's limit (nginx ``client_max_body_size``) is the first line; this
one holds where a request reaches Django by another way.

``VisitorMiddleware``: an anonymous visitor id for the A/B split, in a first-party cookie.
Add ``"visual_recs.middleware.VisitorMiddleware"`` to ``MIDDLEWARE`` (anywhere) when an
``EXPERIMENT`` runs. The cookie holds 128 random bits and nothing else: no user, no address,
nothing derived from the request. It is set only while an experiment is configured, lasts a
year, is HttpOnly (no script reads it), SameSite=Lax and Secure over https. Without the
middleware the session key is the visitor id where there is a session.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from . import experiments
from .conf import app_settings

COOKIE_NAME = "visual_recs_visitor"
COOKIE_MAX_AGE = 365 * 24 * 60 * 60
# What the middleware writes (token_urlsafe(16)); anything else in the cookie is replaced.
_VALID = re.compile(r"[A-Za-z0-9_-]{16,64}")


class RequestSizeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0  # Django reads a body whose length it cannot parse as empty
        limit = app_settings.MAX_REQUEST_BYTES
        if declared > limit:
            return HttpResponse(
                f"The request body is larger than the {limit / (1024 * 1024):.3g} MB this site accepts.",
                status=413,
                content_type="text/plain; charset=utf-8",
            )
        return self.get_response(request)


class VisitorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if experiments.configured() is None:
            return self.get_response(request)
        visitor = request.COOKIES.get(COOKIE_NAME, "")
        new = not _VALID.fullmatch(visitor)
        if new:
            visitor = secrets.token_urlsafe(16)
        # Read by experiments.visitor_id, on this very request too: the first page is in an arm.
        setattr(request, experiments.VISITOR_ATTRIBUTE, visitor)
        response = self.get_response(request)
        # What a page shows depends on the cookie: a shared cache must not give one arm's page to the other.
        patch_vary_headers(response, ("Cookie",))
        if new:
            response.set_cookie(
                COOKIE_NAME, visitor, max_age=COOKIE_MAX_AGE, secure=request.is_secure(), httponly=True, samesite="Lax"
            )
        return response
