"""Sending work to the Celery worker: once, without waiting on a broker that is down.

Receivers, the admin action, the commands and the import call these; nothing here is heavy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager

from kombu.exceptions import OperationalError as BrokerError

from .conf import app_settings
from .utils import chunked

logger = logging.getLogger(__name__)

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
    from . import tasks  # tasks import the indexing service; queueing must not need it loaded first

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
    previous = is_paused()
    _state.paused = True
    try:
        yield
    finally:
        _state.paused = previous


def is_paused() -> bool:
    """Whether this thread is inside ``paused()``."""
    return getattr(_state, "paused", False)
