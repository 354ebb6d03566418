"""The Celery app of the test suite; a worker runs it with ``celery -A tests.celery_app worker``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("visual_recs_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["visual_recs"])
