"""The admin's sign-in, locked for a while after repeated failures: Django's own hooks, counts in the cache.

Each failed sign-in (Django's ``user_login_failed`` signal) counts against the client (its address as
``visual_recs.utils.client_id`` reads it: ``NUM_PROXIES``-aware, an IPv6 /64 as one) and against the
username, in sliding windows kept in the cache with ``add``/``incr`` only (``visual_recs.ratelimit``).
Once either holds its limit of failures within ``WINDOW_SECONDS``, ``SignInLockoutBackend``, first in
``AUTHENTICATION_BACKENDS``, refuses every sign-in of that client or username before any backend looks
at the password: a right password is not checked either, so the lockout tells an attacker nothing, and
the password hasher runs at most the limit's times per window.

Per address, so that one attacker gets a few guesses a window; per username too, so that many addresses
(a botnet) together do not get more for one account. Refused sign-ins do not count: a lock ends when the
failures that made it have left the window, and an attacker cannot keep one going by hammering it.

Settings: ``SIGN_IN_LOCKOUT = {"FAILURES_PER_ADDRESS": 5, "FAILURES_PER_USERNAME": 20, "WINDOW_SECONDS": 900}``
(those are the defaults). Several web processes need a shared cache (Redis), as the search throttle does.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils.translation import ngettext

from visual_recs.ratelimit import SlidingWindow
from visual_recs.utils import client_id

logger = logging.getLogger(__name__)

DEFAULTS = {"FAILURES_PER_ADDRESS": 5, "FAILURES_PER_USERNAME": 20, "WINDOW_SECONDS": 15 * 60}
#: Set on a request the lockout refused: the seconds until a sign-in may be tried again.
LOCKED_FOR = "sign_in_locked_for"

timer = time.time  # the windows' clock


def _windows(request: HttpRequest | None, username: str | None) -> list[SlidingWindow]:
    """The failure counts that apply to a sign-in: its client's (with a request) and its username's (with one)."""
    limits = {**DEFAULTS, **getattr(settings, "SIGN_IN_LOCKOUT", {})}
    now, duration = timer(), limits["WINDOW_SECONDS"]
    windows = []
    if request is not None:
        address_key = f"sign_in_failures:address:{client_id(request)}"
        windows.append(SlidingWindow(cache, address_key, limits["FAILURES_PER_ADDRESS"], duration, now))
    if username:
        # Any text a form lets through, as a key every cache accepts; "Admin" and "admin" are one.
        username_key = f"sign_in_failures:username:{hashlib.sha256(username.casefold().encode()).hexdigest()}"
        windows.append(SlidingWindow(cache, username_key, limits["FAILURES_PER_USERNAME"], duration, now))
    return windows


def _username(credentials: dict) -> str | None:
    """The username a sign-in names: ``username``, as the admin's form sends it, or the user model's own field."""
    username = credentials.get("username") or credentials.get(get_user_model().USERNAME_FIELD)
    return str(username) if username else None


class SignInLockoutBackend:
    """Refuses (``PermissionDenied``: Django stops there) every sign-in of a client or username with too
    many recent failures; otherwise authenticates nobody, and the next backend checks the password.

    Only ``authenticate``: no ``get_user`` (nor ``BaseBackend``, which has one that finds nobody), so
    that Django never takes this backend for the one that signed a user in. ``Client.force_login``
    and ``login()`` pick the first backend with ``get_user``; with this one's, the session would
    name a backend that loads no user, and the signed-in user would be anonymous on the next request.
    """

    def authenticate(self, request: HttpRequest | None, **credentials) -> None:
        locked = [window for window in _windows(request, _username(credentials)) if window.full()]
        if locked:
            if request is not None:
                setattr(request, LOCKED_FOR, max(window.wait() for window in locked))
            raise PermissionDenied
        return None


# Connected when Django imports this module as a backend, before the first sign-in it could count.
@receiver(user_login_failed, dispatch_uid="demo_shop.sign_in.count_failure")
def count_failure(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    """Count a failed sign-in against its client and username; not one the lockout refused (no password was tried)."""
    if request is not None and hasattr(request, LOCKED_FOR):
        return
    for window in _windows(request, _username(credentials)):
        window.record()
        if window.full():
            logger.warning("Sign-ins locked after repeated failures (%s) for %d s", window.current_key, window.wait())


class SignInForm(AdminAuthenticationForm):
    """The admin's sign-in form, saying so when the lockout refused a sign-in."""

    def get_invalid_login_error(self) -> ValidationError:
        seconds = getattr(self.request, LOCKED_FOR, None)
        if seconds is None:
            return super().get_invalid_login_error()
        minutes = max(1, math.ceil(seconds / 60))
        message = ngettext(
            "Too many failed sign-ins; try again in %(minutes)d minute.",
            "Too many failed sign-ins; try again in %(minutes)d minutes.",
            minutes,
        )
        return ValidationError(message, code="locked_out", params={"minutes": minutes})
