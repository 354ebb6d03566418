"""Settings of ``bench/scale.py`` and of the gunicorn it starts: the demo shop's, measured as deployed.

The demo's settings (``DATABASE_URL`` as given) with the index backend of the run, from
``VISUAL_RECS_BENCH_INDEX`` (JSON ``{"BACKEND": ..., "OPTIONS": {...}}``), and ``DEBUG`` off:
with it on, Django keeps every query of a request in memory, which would show in the web
processes' resident memory and time.
"""

import json
import os

from demo_shop.settings import *  # noqa: F403
from demo_shop.settings import VISUAL_RECS

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
# The 2,048-d vectors the figures were measured with, searched as they are (no fit, no colour part).
VISUAL_RECS = {
    **VISUAL_RECS,
    "INDEX": json.loads(os.environ["VISUAL_RECS_BENCH_INDEX"]),
    "EXTRACTOR": {"BACKEND": "visual_recs.backends.extractors.ResNet50Extractor", "OPTIONS": {}},
    # The bundled Product as the demo registers it, but learning from nothing (no fit).
    "MODELS": {"products": "visual_recs.contrib.catalog.CatalogProducts"},
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"visual_recs": {"handlers": ["console"], "level": "WARNING"}},
}
