"""Settings of the gunicorn that ``bench/extract.py`` searches by photo in: the demo shop's,
with the extractor named by ``VISUAL_RECS_BENCH_EXTRACTOR`` (a key of ``bench.extract.BACKENDS``)
and the demo's options (mirror image and colour), so the web process does what the demo's does."""

import os

from demo_shop.settings import *  # noqa: F403
from demo_shop.settings import VISUAL_RECS

from bench.extract import BACKENDS

_backend, _options = BACKENDS[os.environ.get("VISUAL_RECS_BENCH_EXTRACTOR", "int8")]
VISUAL_RECS = {
    **VISUAL_RECS,
    "EXTRACTOR": {"BACKEND": _backend, "OPTIONS": {**_options, "flip_average": True, "colour": True}},
}
