"""Settings of ``bench/faults.py``, its driver and the Celery workers it starts: the demo shop's.

The demo's settings (``DATABASE_URL``, ``CELERY_BROKER_URL`` and ``MEDIA_ROOT`` as the run
gives them, the same for every process), with DEBUG off and two changes for the faults:

- the extractor works in batches of 4 photos, each committed on its own, so a batch task of
  tens of products spends seconds between its first committed vectors and its end: the
  window in which the run kills its worker;
- the Redis transport gives a message back to the queue ``VISUAL_RECS_FAULTS_VISIBILITY``
  seconds after a worker took it without acknowledging it (Celery's default is an hour), and
  looks for such messages every 2 s (kombu's default: every 100 s), so a killed worker's
  batch comes back within the run.
"""

import os

from demo_shop.settings import *  # noqa: F403
from demo_shop.settings import VISUAL_RECS

DEBUG = False
VISUAL_RECS = {
    **VISUAL_RECS,
    "EXTRACTOR": {"BACKEND": "visual_recs.backends.extractors.ResNet50Extractor", "OPTIONS": {"batch_size": 4}},
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("VISUAL_RECS_FAULTS_VISIBILITY", "30")),
    "unacked_restore_interval": 2,
    "unacked_restore_throttle": 1,
}
