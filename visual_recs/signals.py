"""Save and delete receivers for the registered models only: they record and enqueue, nothing heavy.

The task is sent after the transaction commits (so the worker sees the row), and only when
the photo, the partition or whether the product may be shown changed. If the broker cannot
be reached the save still succeeds: the vector stays ``pending`` for the sweep.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from collections.abc import Callable
from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from kombu.exceptions import OperationalError as BrokerError

from . import registry, tasks
from .conf import app_settings
from .indexing import photo_sha256
from .models import FeatureVector
from .utils import chunked

logger = logging.getLogger(__name__)

_connected: list[tuple] = []
_state = threading.local()


def enqueue(task, *args) -> bool:
    """Send ``task`` to the app's queue without retrying; False (and a warning) when the broker is down.

    A web request must not wait on a missing broker: Celery's and the Redis client's own
    connection retries add up to seconds, so the connection is tried exactly once here.
    """
    app = task.app
    try:
        if app.conf.task_always_eager:
            task.apply_async(args=args, queue=app_settings.QUEUE)
            return True
        with app.pool.acquire(block=True) as connection:
            connection.ensure_connection(max_retries=0)
            task.apply_async(args=args, queue=app_settings.QUEUE, retry=False, connection=connection)
    except (BrokerError, ConnectionError, OSError) as exc:
        logger.warning("visual_recs: could not queue %s%s (%s); the sweep will pick it up.", task.name, args, exc)
        return False
    return True


def enqueue_indexing(
    model, pks, *, force: bool = False, batch_size: int = 64, progress: Callable[[int], None] | None = None
) -> int:
    """Queue ``index_batch`` tasks for the objects ``pks`` of ``model``, ``batch_size`` a task.

    Returns how many objects were queued: fewer than ``len(pks)`` when the broker could not be
    reached (it stops at the first batch that fails; their vectors stay for the sweep).
    """
    meta = model._meta
    pks = [str(pk) for pk in pks]
    queued = 0
    for batch in chunked(pks, batch_size):
        if not enqueue(tasks.index_batch, meta.app_label, meta.model_name, batch, force):
            break
        queued += len(batch)
        if progress is not None:
            progress(len(batch))
    return queued


@contextmanager
def paused():
    """Within this block saves and deletes of this thread enqueue nothing (bulk imports index in one batch)."""
    previous = getattr(_state, "paused", False)
    _state.paused = True
    try:
        yield
    finally:
        _state.paused = previous


def _on_save(sender, instance, raw: bool = False, **kwargs) -> None:
    if raw or getattr(_state, "paused", False):
        return  # fixtures load raw rows; a paused import indexes in one batch afterwards
    indexed_model = registry.for_model(sender)
    content_type = indexed_model.content_type
    object_id = str(instance.pk)
    existing = FeatureVector.objects.filter(content_type=content_type, object_id=object_id).defer("vector").first()
    image = indexed_model.image_of(instance)
    if image is None:
        if existing is not None:
            _enqueue_on_commit(tasks.index_object, instance)  # the photo was removed: indexing drops the vector
        return
    sha256 = photo_sha256(image)
    partition = indexed_model.partition_of(instance)
    if existing is None or existing.image_sha256 != sha256:
        FeatureVector.objects.update_or_create(
            content_type=content_type,
            object_id=object_id,
            defaults={"status": FeatureVector.Status.PENDING, "partition": partition, "error": ""},
        )
        _enqueue_on_commit(tasks.index_object, instance)
        return
    listed = indexed_model.shown().filter(pk=instance.pk).exists()
    if existing.status == FeatureVector.Status.PENDING or (existing.partition, existing.listed) != (partition, listed):
        _enqueue_on_commit(tasks.index_object, instance)


def _on_delete(sender, instance, **kwargs) -> None:
    if getattr(_state, "paused", False):
        return
    _enqueue_on_commit(tasks.unindex_object, instance)


def _enqueue_on_commit(task, instance) -> None:
    meta = instance._meta
    # Plain values only: the key as text survives any serializer (a UUID would not with JSON).
    transaction.on_commit(partial(enqueue, task, meta.app_label, meta.model_name, str(instance.pk)))


def connect() -> None:
    """(Re)connect the receivers to exactly the registered models; safe to call again."""
    for signal, receiver, sender in _connected:
        signal.disconnect(receiver, sender=sender)
    _connected.clear()
    try:
        models = [indexed_model.model for indexed_model in registry.indexed_models().values()]
    except (LookupError, ValueError, KeyError):
        logger.error("visual_recs: VISUAL_RECS['MODELS'] names a model that does not exist; run `manage.py check`.")
        return
    for model in models:
        for signal, receiver in ((post_save, _on_save), (post_delete, _on_delete)):
            signal.connect(receiver, sender=model, weak=False)
            _connected.append((signal, receiver, model))
