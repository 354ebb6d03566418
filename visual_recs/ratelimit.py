"""Rate limits counted in Django's cache: a sliding window, approximated, with atomic counters only.

Each event increments a counter of the current window (``incr``: atomic in Redis, Memcached and
the local-memory cache; not in the database or file caches), and the limit weighs that count
with the previous window's, by how much of the previous window still lies within the last
``duration`` seconds: nobody doubles the rate across a window boundary, and events counted at
the same moment (two workers, two threads) cannot each take the last free place, as they can
with a throttle that reads a history and writes it back (DRF's own).

Counts are read as ``incr(key, 0)``, never with ``get``: a cache's ``get`` unpickles whatever the
key holds, so anyone able to write to the cache (a Redis shared with another service) could run
code in every web process. A value that is not a counter of ours counts as nothing.

Used by the search throttle (``visual_recs.api.throttling``) and the demo shop's sign-in lockout.
"""

from __future__ import annotations

from django.core.cache.backends.base import BaseCache

try:  # what Redis answers to INCR on a value that is not an integer
    from redis.exceptions import ResponseError as NotACounter
except ImportError:  # no Redis client installed: no such answer either
    NotACounter = ValueError


class SlidingWindow:
    """At most ``limit`` events in ``duration`` seconds under ``key``, as seen at the time ``now``.

    One object per decision: it remembers the counts it read, for ``wait``.
    """

    def __init__(self, cache: BaseCache, key: str, limit: int, duration: int, now: float) -> None:
        self.cache = cache
        self.limit = limit
        self.duration = duration
        window, self.into_window = divmod(now, duration)
        self.current_key = f"{key}:{int(window)}"
        self.previous_key = f"{key}:{int(window) - 1}"
        self.count = 0  # this window's events, not counting one refused
        self.previous = 0  # the previous window's

    def take(self) -> bool:
        """Count one event if it fits; if not, False, and nothing stays counted."""
        count = self._increment()
        self.previous = self._read(self.previous_key)
        if self._weighed(count) <= self.limit:
            self.count = count
            return True
        self.count = count - 1
        self.give_back()
        return False

    def give_back(self) -> None:
        """Uncount the event ``take`` counted (a refused one, or one another limit refused)."""
        try:
            self.cache.decr(self.current_key)
        except (ValueError, NotACounter):
            pass  # expired or overwritten meanwhile: nothing left to give back

    def full(self) -> bool:
        """Whether one more event would not fit; counts nothing."""
        self.count = self._read(self.current_key)
        self.previous = self._read(self.previous_key)
        return self._weighed(self.count + 1) > self.limit

    def record(self) -> None:
        """Count one event, whether it fits or not (one that happened: a failed sign-in)."""
        self._increment()

    def wait(self) -> float:
        """Seconds until one more event fits, after ``take`` refused or ``full`` said so (a Retry-After)."""
        room = self.limit - 1  # what the others may weigh for one more to fit
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

    def _weighed(self, count: int) -> float:
        return self.previous * (1 - self.into_window / self.duration) + count

    def _read(self, key: str) -> int:
        """A window's count, read as ``incr(key, 0)``: the cache answers with an integer or refuses."""
        try:
            return int(self.cache.incr(key, 0))
        except (ValueError, NotACounter):  # no such window yet, or not an integer
            return 0

    def _increment(self) -> int:
        """This event's place in the current window's count, counted atomically by the cache."""
        key, timeout = self.current_key, 2 * self.duration  # kept for two windows: the next one weighs it
        if self.cache.add(key, 1, timeout=timeout):
            return 1
        try:
            return self.cache.incr(key)
        except ValueError:  # expired between add and incr
            self.cache.add(key, 1, timeout=timeout)
            return 1
        except NotACounter:  # a value no counter of ours wrote: start the count again, never read it
            self.cache.set(key, 1, timeout=timeout)
            return 1
