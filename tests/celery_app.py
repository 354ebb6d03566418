"""The Celery app of the test suite; a worker runs it with ``celery -A tests.celery_app worker``."""

import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("visual_recs_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["visual_recs"])


@task_prerun.connect
def _forget_content_types(**kwargs):
    # Transactional tests flush the database between tests, and the flush recreates content
    # types under new ids; a production worker never sees ids change, this test worker does.
    from django.contrib.contenttypes.models import ContentType

    ContentType.objects.clear_cache()
