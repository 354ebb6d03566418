"""Settings of the gunicorn that ``bench/abuse.py`` attacks: the demo shop's, as deployed (see the script).

The one change: ``VISUAL_RECS_BENCH_SEARCH_RATE``, when set, is the search throttle's rate
(``"none"``: no limit). The schema fuzzing sets it so that its requests reach the views'
validation instead of stopping at the 30th 429; every other case runs the demo's default.
"""

import os

from demo_shop.settings import *  # noqa: F403

_rate = os.environ.get("VISUAL_RECS_BENCH_SEARCH_RATE")
if _rate:
    REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"visual_recs_search": None if _rate == "none" else _rate}}  # noqa: F405
