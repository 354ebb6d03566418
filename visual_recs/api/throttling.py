"""The search endpoint's rate limit, which works without any REST_FRAMEWORK setting."""

from __future__ import annotations

from collections.abc import Iterator

from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from ..ratelimit import SlidingWindow
from ..utils import client_id

SEARCH_SCOPE = "visual_recs_search"
DEFAULT_SEARCH_RATE = "30/minute"
#: The rate key of all clients together: the scope's key with this after it.
GLOBAL_SUFFIX = "_global"
#: Two searches a second for the whole site. A search takes about 0.1 s of a core with the default
#: extractor (0.2 s with the demo's flipped photo): the demo's two gunicorn workers then spend at
#: most a fifth of their time searching, whatever the number of clients, and four clients at the
#: full per-client rate fit together.
DEFAULT_GLOBAL_SEARCH_RATE = "120/minute"


class SearchRateThrottle(ScopedRateThrottle):
    """Throttles per user, or per client for anonymous requests, then all clients together, with
    counters the cache increments atomically (``visual_recs.ratelimit.SlidingWindow``).

    The client's rate is ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["visual_recs_search"]`` when
    set, else 30/minute; all clients together (every process that shares the cache) get
    ``["visual_recs_search_global"]``, else 120/minute. ``None`` turns either off. Read on each
    request, unlike DRF's class attribute, so a changed setting applies at once.

    The client's own rate is checked first, and a search refused by either takes nothing from
    the other: a client past its rate does not use up everyone's, and a search the shared rate
    refused does not count against the client. A client is its address's ``utils.client_group``
    (an IPv6 /64 is one client), behind ``NUM_PROXIES`` trusted proxies the address they saw.
    """

    # Its own view attribute: a shop's plain ScopedRateThrottle then ignores the search view
    # instead of failing for want of a rate for this scope.
    scope_attr = "visual_recs_throttle_scope"

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope, DEFAULT_SEARCH_RATE)

    def get_global_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope + GLOBAL_SUFFIX, DEFAULT_GLOBAL_SEARCH_RATE)

    def allow_request(self, request, view) -> bool:
        self.scope = getattr(view, self.scope_attr, None)
        self.refused_by: SlidingWindow | None = None
        self.refused_for_everyone = False  # True when the shared rate, not the client's, refused
        if not self.scope:
            return True
        taken: list[SlidingWindow] = []
        for window, for_everyone in self._windows(request, view):
            if not window.take():
                for earlier in taken:
                    earlier.give_back()
                self.refused_by, self.refused_for_everyone = window, for_everyone
                return False
            taken.append(window)
        return True

    def _windows(self, request, view) -> Iterator[tuple[SlidingWindow, bool]]:
        """The client's window, then everyone's (each when its rate is set), as of now; True for everyone's."""
        now = self.timer()
        rate = self.get_rate()
        if rate is not None:
            yield SlidingWindow(self.cache, self.get_cache_key(request, view), *self.parse_rate(rate), now), False
        global_rate = self.get_global_rate()
        if global_rate is not None:
            everyone = self.cache_format % {"scope": self.scope + GLOBAL_SUFFIX, "ident": "all"}
            yield SlidingWindow(self.cache, everyone, *self.parse_rate(global_rate), now), True

    def wait(self) -> float | None:
        """Seconds until one more search fits the rate that refused this one (its Retry-After)."""
        return self.refused_by.wait() if self.refused_by else None

    def get_ident(self, request) -> str:
        """The client: ``utils.client_id``, which reads ``X-Forwarded-For`` only behind ``NUM_PROXIES`` proxies.

        DRF's default (``NUM_PROXIES`` None) takes the whole ``X-Forwarded-For`` header as the
        client, which a client sets freely: one header per request and no limit ever applies.
        Here None trusts no proxy. Behind proxies, set DRF's ``NUM_PROXIES`` to their number:
        the address the outermost of them appended is the client's.
        """
        return client_id(request)
