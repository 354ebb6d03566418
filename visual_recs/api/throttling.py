"""The search endpoint's rate limit, which works without any REST_FRAMEWORK setting."""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

SEARCH_SCOPE = "visual_recs_search"
DEFAULT_SEARCH_RATE = "30/minute"


class SearchRateThrottle(ScopedRateThrottle):
    """Throttles per user, or per client IP for anonymous requests.

    The rate is ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["visual_recs_search"]`` when set,
    else 30/minute; ``None`` there turns the limit off. Read on each request, unlike DRF's
    class attribute, so a changed setting applies at once.
    """

    # Its own view attribute: a shop's plain ScopedRateThrottle then ignores the search view
    # instead of failing for want of a rate for this scope.
    scope_attr = "visual_recs_throttle_scope"

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope, DEFAULT_SEARCH_RATE)

    def get_ident(self, request) -> str:
        """The client's address: ``REMOTE_ADDR``, or the one ``NUM_PROXIES`` trusted proxies saw.

        DRF's default (``NUM_PROXIES`` None) takes the whole ``X-Forwarded-For`` header as the
        client, which a client sets freely: one header per request and no limit ever applies.
        Here None trusts no proxy. Behind proxies, set DRF's ``NUM_PROXIES`` to their number:
        the address the outermost of them appended is the client's.
        """
        remote_addr = request.META.get("REMOTE_ADDR", "")
        trusted = api_settings.NUM_PROXIES or 0
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if not trusted or not forwarded:
            return remote_addr
        addresses = [address.strip() for address in forwarded.split(",")]
        return addresses[-min(trusted, len(addresses))]
