"""The search endpoint's rate limit, which works without any REST_FRAMEWORK setting."""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from ..utils import client_address

try:  # what Redis answers to INCR on a value that is not an integer
    from redis.exceptions import ResponseError as NotACounter
except ImportError:  # no Redis client installed: no such answer either
    NotACounter = ValueError

SEARCH_SCOPE = "visual_recs_search"
DEFAULT_SEARCH_RATE = "30/minute"


class SearchRateThrottle(ScopedRateThrottle):
    """Throttles per user, or per client IP for anonymous requests, with counters the cache
    increments atomically.

    The rate is ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["visual_recs_search"]`` when set,
    else 30/minute; ``None`` there turns the limit off. Read on each request, unlike DRF's
    class attribute, so a changed setting applies at once.

    DRF's own throttle reads the client's request history, then writes it back: requests of
    one client served at the same moment (two workers, two threads) each see the same free
    place, and a flood of concurrent requests gets well past the rate. Here each request
    increments a counter of the current window (``incr``: atomic in Redis, Memcached and the
    local-memory cache; not in the database or file caches) and is refused when that count
    plus the previous window's, weighted by how much of it still lies within the last
    ``duration`` seconds, exceeds the rate: a sliding window, approximated, so that a client
    cannot double the rate across a window boundary. A refused request does not count.
    """

    # Its own view attribute: a shop's plain ScopedRateThrottle then ignores the search view
    # instead of failing for want of a rate for this scope.
    scope_attr = "visual_recs_throttle_scope"

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope, DEFAULT_SEARCH_RATE)

    def allow_request(self, request, view) -> bool:
        self.scope = getattr(view, self.scope_attr, None)
        self.rate = self.get_rate() if self.scope else None
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        window, self.into_window = divmod(self.timer(), self.duration)
        current = f"{self.key}:{int(window)}"
        count = self._increment(current)
        self.previous = self._count(f"{self.key}:{int(window) - 1}")
        if self.previous * (1 - self.into_window / self.duration) + count <= self.num_requests:
            return True
        self.count = count - 1  # the refused request does not count
        try:
            self.cache.decr(current)
        except ValueError:
            pass  # expired meanwhile: nothing left to give back
        return False

    def wait(self) -> float:
        """Seconds until one more request of this client fits (its Retry-After)."""
        room = self.num_requests - 1  # what the others may weigh for one more to fit
        left_in_window = self.duration - self.into_window
        if self.previous and self.count <= room:
            # Within this window, as the previous window's weight fades.
            fraction = 1 - (room - self.count) / self.previous
            seconds = fraction * self.duration - self.into_window
            if seconds <= left_in_window:
                return max(1.0, seconds)
        # In the next window, as this window's count fades in its turn.
        fading = self.duration * (1 - room / self.count) if self.count else 0.0
        return max(1.0, left_in_window + fading)

    def _count(self, key: str) -> int:
        """A window's count, read as ``incr(key, 0)``: the cache answers with an integer or refuses.

        Never ``get``: a cache's ``get`` unpickles whatever the key holds, so anyone able to write
        to the cache (a Redis shared with another service) could run code in every web process
        on the next search. A value that is not a counter is no count: 0.
        """
        try:
            return int(self.cache.incr(key, 0))
        except (ValueError, NotACounter):  # no such window yet, or not an integer
            return 0

    def _increment(self, key: str) -> int:
        """This request's place in the window's count, counted atomically by the cache."""
        # Kept for two windows: the next window weighs this one's count.
        if self.cache.add(key, 1, timeout=2 * self.duration):
            return 1
        try:
            return self.cache.incr(key)
        except ValueError:  # expired between add and incr
            self.cache.add(key, 1, timeout=2 * self.duration)
            return 1
        except NotACounter:  # a value no counter of ours wrote: start the count again, never read it
            self.cache.set(key, 1, timeout=2 * self.duration)
            return 1

    def get_ident(self, request) -> str:
        """The client's address: ``REMOTE_ADDR``, or the one ``NUM_PROXIES`` trusted proxies saw.

        DRF's default (``NUM_PROXIES`` None) takes the whole ``X-Forwarded-For`` header as the
        client, which a client sets freely: one header per request and no limit ever applies.
        Here None trusts no proxy. Behind proxies, set DRF's ``NUM_PROXIES`` to their number:
        the address the outermost of them appended is the client's.
        """
        return client_address(request.META, api_settings.NUM_PROXIES)
