"""Small helpers shared by the app's modules."""

from __future__ import annotations

import ipaddress
import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

from django.conf import settings
from django.http import HttpRequest

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: The one client every address that is not an IP address counts as.
UNREADABLE_ADDRESS = "unreadable-address"
_unreadable_logged = False


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter), consumed lazily."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def client_address(meta: Mapping[str, str], trusted_proxies: int | None) -> str:
    """The client's address: ``REMOTE_ADDR``, or the one the outermost of ``trusted_proxies`` proxies saw.

    ``X-Forwarded-For`` is set freely by any client, so it is read only when the shop says how
    many proxies stand in front of Django (DRF's ``NUM_PROXIES``; docs/deploy.md), and then
    only the address the outermost of them appended. None or 0 trusts no proxy.
    """
    remote_addr = meta.get("REMOTE_ADDR", "")
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    if not trusted_proxies or not forwarded:
        return remote_addr
    addresses = [address.strip() for address in forwarded.split(",")]
    return addresses[-min(trusted_proxies, len(addresses))]


def client_group(address: str) -> str:
    """Who the rate limits count ``address`` as: itself for IPv4, its /64 for IPv6.

    One host holds a whole IPv6 /64 (a customer's network) and may take any address in it, so
    the /64 is one client. An IPv4 address a dual-stack server sees mapped (``::ffff:203.0.113.5``)
    is that IPv4 address. Anything that is not an IP address (no ``REMOTE_ADDR``, a
    ``NUM_PROXIES`` larger than the proxies really in front, so that the client's own
    ``X-Forwarded-For`` text is read) is one shared client, ``UNREADABLE_ADDRESS``: varying the
    text makes no new client, and no client's text reaches a cache key. Logged once a process.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        global _unreadable_logged
        if not _unreadable_logged:
            _unreadable_logged = True
            logger.warning(
                "visual_recs: the client address %r is not an IP address; every such client counts as one for the "
                "rate limits. Check NUM_PROXIES against the proxies in front of Django (docs/deploy.md).",
                address[:60],
            )
        return UNREADABLE_ADDRESS
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 4:
        return str(ip)
    return str(ipaddress.ip_network((ip, 64), strict=False))


def client_id(request: HttpRequest) -> str:
    """Who the rate limits (search, events, sign-in) count ``request`` as: its address's ``client_group``.

    The address is ``REMOTE_ADDR``, or behind ``REST_FRAMEWORK["NUM_PROXIES"]`` declared proxies
    the one they saw (``client_address``); read from the settings, not DRF's, so that the events
    endpoint works without DRF installed.
    """
    trusted_proxies = getattr(settings, "REST_FRAMEWORK", {}).get("NUM_PROXIES")
    return client_group(client_address(request.META, trusted_proxies))
