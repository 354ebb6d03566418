"""Settings of ``bench/rules.py``: ``bench/scale.py``'s (the demo's, DEBUG off, the run's index) on the
default extractor, so the bench runs on the runtime install (no TensorFlow)."""

from bench.scale_settings import *  # noqa: F403
from bench.scale_settings import VISUAL_RECS
from visual_recs.conf import DEFAULT_EXTRACTOR

VISUAL_RECS = {**VISUAL_RECS, "EXTRACTOR": DEFAULT_EXTRACTOR}
