"""The search throttle never unpickles what the cache holds (issue 19, item 5).

A cache's ``get`` unpickles the stored bytes: whoever can write to a Redis the shop shares
could run code in every web process. The throttle reads its counts with ``incr(key, 0)``,
which Redis answers with an integer or refuses. Tested on a real Redis cache.
"""

from __future__ import annotations

import os
import pickle
import time

import pytest
from django.core.cache import cache

pytestmark = pytest.mark.django_db

UNPICKLED: list[str] = []


def record(marker: str) -> str:
    UNPICKLED.append(marker)
    return marker


class Payload:
    """What an attacker with write access to the cache would store: code run when unpickled."""

    def __reduce__(self):
        return record, ("unpickled",)


@pytest.fixture
def redis_cache(settings):
    db = os.environ.get("VISUAL_RECS_TEST_CACHE_DB", "14")
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"redis://127.0.0.1:6379/{db}"}
    }
    cache.clear()
    yield cache
    cache.clear()


def poison(redis_cache, window: int) -> None:
    """A pickle that runs code where the throttle keeps the count of ``window`` for this client."""
    raw = redis_cache._cache.get_client(write=True)
    raw.set(redis_cache.make_key(f"throttle_visual_recs_search_127.0.0.1:{window}"), pickle.dumps(Payload()))


@pytest.fixture
def now(monkeypatch):
    """The throttle's clock, fixed in the middle of a window (the search rate is 30/minute: 60 s windows)."""
    from visual_recs.api.throttling import SearchRateThrottle

    fixed = (int(time.time() // 60)) * 60 + 30.0
    monkeypatch.setattr(SearchRateThrottle, "timer", lambda self: fixed)
    return int(fixed // 60)


def test_the_throttle_reads_the_previous_windows_count_without_unpickling(client, redis_cache, now):
    UNPICKLED.clear()
    poison(redis_cache, now - 1)
    assert client.post("/api/visual-recs/products/search/", {}).status_code == 400  # past the throttle, no photo
    assert UNPICKLED == []


def test_a_window_holding_something_else_starts_its_count_again(client, redis_cache, now):
    UNPICKLED.clear()
    poison(redis_cache, now)
    assert client.post("/api/visual-recs/products/search/", {}).status_code == 400
    assert UNPICKLED == []
    from visual_recs.ratelimit import SlidingWindow

    # A counter of our own is read back as the integer it is.
    redis_cache.set("a-window", 7)
    window = SlidingWindow(redis_cache, "unused", limit=1, duration=60, now=0)
    assert window._read("a-window") == 7 and window._read("no-window") == 0
