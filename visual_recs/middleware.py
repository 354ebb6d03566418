"""``VisitorMiddleware``: an anonymous visitor id for the A/B split, in a first-party cookie.

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

COOKIE_NAME = "visual_recs_visitor"
COOKIE_MAX_AGE = 365 * 24 * 60 * 60
# What the middleware writes (token_urlsafe(16)); anything else in the cookie is replaced.
_VALID = re.compile(r"[A-Za-z0-9_-]{16,64}")


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
