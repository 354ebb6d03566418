"""The Oscar test shop as a project of its own: what a browser test serves and its worker runs.

The suite's settings (Oscar installed) with the shop's URLs, middleware, templates and the one
``VISUAL_RECS`` entry of Oscar's products; ``DJANGO_DEBUG=1`` serves the photos.
"""

import os

from tests.oscar_shop.installed import SHOP_MODELS, SHOP_SETTINGS
from tests.settings import *  # noqa: F401,F403

globals().update(SHOP_SETTINGS)
VISUAL_RECS = {**VISUAL_RECS, "MODELS": SHOP_MODELS}  # noqa: F405
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
CELERY_TASK_ALWAYS_EAGER = os.environ.get("VISUAL_RECS_EAGER", "1") == "1"
