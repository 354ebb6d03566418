"""Settings of ``bench/rules.py``: ``bench/scale.py``'s (the demo's, DEBUG off, the run's index) on the
default extractor, so the bench runs on the runtime install (no TensorFlow)."""

from bench.scale_settings import *  # noqa: F403
from bench.scale_settings import VISUAL_RECS
from visual_recs.conf import DEFAULT_EXTRACTOR

# Events on, and one client (the bench) allowed to send as many as it measures.
VISUAL_RECS = {**VISUAL_RECS, "EXTRACTOR": DEFAULT_EXTRACTOR, "EVENTS": True, "EVENTS_RATE": 10**9}
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405  (django.test.Client's host)
# The rate counters in this process's memory: the bench measures the database write, not a Redis round trip.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
