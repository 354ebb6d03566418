"""The demo shop as tests/test_events_browser.py serves it: events on, an A/B experiment, and the
colour extractor in place of ResNet50 (what the strip reports is tested, not the network)."""

from demo_shop.settings import *  # noqa: F401,F403
from demo_shop.settings import VISUAL_RECS

VISUAL_RECS = {
    **VISUAL_RECS,
    "EXTRACTOR": {"BACKEND": "tests.fakes.ColourGridExtractor", "OPTIONS": {}},
    "EVENTS": True,
    # Arms without options: the split and the report are tested, whatever the read path offers.
    "EXPERIMENT": {"name": "browser-test", "arms": {"a": {}, "b": {}}},
}
