"""Settings of the gunicorn that ``bench/abuse.py`` attacks: the demo shop's, as deployed (see the script).

The one change: ``VISUAL_RECS_BENCH_SEARCH_RATE``, when set, is the search throttle's rate
per client (``"none"``: no limit, and none for all clients together either). The hostile
PNGs, the schema fuzzing and the search flood set ``"none"``, so that the uploads and the
fuzzer's requests reach the views' decoding and validation instead of stopping at a 429, and
the flood meets only the front's rate and the workers' search slots; the other cases run
the demo's defaults.
"""

import os

from demo_shop.settings import *  # noqa: F403

_rate = os.environ.get("VISUAL_RECS_BENCH_SEARCH_RATE")
if _rate:
    if _rate == "none":
        _rates = {"visual_recs_search": None, "visual_recs_search_global": None}
    else:
        _rates = {"visual_recs_search": _rate}
    REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": _rates}  # noqa: F405
