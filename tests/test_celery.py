"""The pipeline through a real Redis broker and a real Celery worker process, and with the broker down."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection

from tests.celery_app import app as celery_app
from tests.conftest import ids_of
from tests.processes import stop, wait_for
from visual_recs import tasks
from visual_recs.models import FeatureVector, SimilarItem

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BROKER_URL = django_settings.CELERY_BROKER_URL
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
REPO = Path(__file__).resolve().parents[1]


@contextmanager
def broker(url: str):
    """Publish through a real broker at ``url`` (not eagerly) for the duration of the block."""
    conf = celery_app.conf
    saved = conf.task_always_eager, conf.broker_url

    def drop_connections():
        # Forget the pools so the next publish connects to the new URL (closing them here
        # would break producers that still hold a reference).
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    conf.task_always_eager, conf.broker_url = False, url
    drop_connections()
    try:
        yield
    finally:
        conf.task_always_eager, conf.broker_url = saved
        drop_connections()


@pytest.fixture(scope="module")
def worker_media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("worker-media")


@pytest.fixture(scope="module")
def celery_worker(django_db_setup, django_db_blocker, resnet_weights, worker_media):
    """A real worker process on the app's queue, sharing the test database and media."""
    redis.Redis.from_url(BROKER_URL).flushdb()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "VISUAL_RECS_WORKER_DB": connection.settings_dict["NAME"],
        "VISUAL_RECS_TEST_MEDIA": str(worker_media),
        "VISUAL_RECS_TEST_BROKER": BROKER_URL,
    }
    command = [
        sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
        "-Q", "visual_recs", "--pool", "solo", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", "visual-recs-test@%h",
    ]
    log = open(worker_media / "worker.log", "w")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with broker(BROKER_URL):
            wait_for(lambda: celery_app.control.ping(timeout=0.5), timeout=90, what="the worker to answer a ping")
        yield process
    finally:
        stop(process)
        log.close()
        sys.stdout.write((worker_media / "worker.log").read_text()[-3000:])


@pytest.fixture
def shared_media(settings, worker_media):
    settings.MEDIA_ROOT = str(worker_media)


def vector_status(object_id: str) -> str | None:
    return FeatureVector.objects.filter(object_id=object_id).values_list("status", flat=True).first()


def test_saving_a_product_is_indexed_by_the_worker(celery_worker, shared_media, catalog_rows, make_product):
    men = ids_of(catalog_rows, gender="Men", count=3)
    women = ids_of(catalog_rows, gender="Women", count=2)
    with broker(BROKER_URL):
        products = [make_product(pid) for pid in men + women]
    for product in products:
        wait_for(lambda: vector_status(str(product.pk)) == "ready", timeout=120, what=f"{product.pk} to be indexed")

    vector = FeatureVector.objects.get(object_id=men[0])
    assert vector.dims == 2048 and vector.as_array().shape == (2048,)
    # The list of the first Men's product names both others once they are in: all Men.
    entries = wait_for(
        lambda: list(SimilarItem.objects.filter(source_id=men[0]).values_list("target_id", flat=True)) or None
        if SimilarItem.objects.filter(source_id=men[0]).count() == 2
        else None,
        timeout=60,
        what="the neighbour list to hold both other Men's products",
    )
    assert sorted(entries) == sorted(men[1:])
    for source in men + women:
        targets = SimilarItem.objects.filter(source_id=source).values_list("target_id", flat=True)
        assert {catalog_rows[t]["Gender"] for t in targets} <= {catalog_rows[source]["Gender"]}


def test_with_the_broker_down_the_save_succeeds_and_the_sweep_catches_up(
    celery_worker, shared_media, catalog_rows, make_product
):
    (pid,) = ids_of(catalog_rows, gender="Girls", count=1)
    with broker(CLOSED_PORT_URL):
        started = time.monotonic()
        product = make_product(pid)
        elapsed = time.monotonic() - started
    # Saving does not wait on a broker that is not there (Celery's default would retry for seconds).
    assert elapsed < 2, f"saving took {elapsed:.1f}s with the broker down"
    assert vector_status(str(product.pk)) == "pending"

    with broker(BROKER_URL):
        tasks.sweep.apply_async(queue="visual_recs")
    wait_for(lambda: vector_status(str(product.pk)) == "ready", timeout=120, what="the sweep to index the product")
