"""Small helpers shared by the app's modules."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

T = TypeVar("T")


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
