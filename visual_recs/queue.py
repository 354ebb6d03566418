"""Sending work to the Celery worker: once, without waiting on a broker that is down.

Receivers, the admin action, the commands and the import call these; nothing here is heavy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager

from celery import _state as celery_state
from django.conf import settings
from kombu.exceptions import OperationalError as BrokerError

from .conf import app_settings
from .utils import chunked

logger = logging.getLogger(__name__)

_state = threading.local()

#: How a project loads its Celery app with Django (``demo_shop`` does this).
CELERY_APP_HINT = (
    "In yourproject/celery.py: app = Celery('yourproject'); "
    "app.config_from_object('django.conf:settings', namespace='CELERY'); app.autodiscover_tasks(). "
    "In yourproject/__init__.py: from .celery import app as celery_app. "
    "See demo_shop/celery.py and the README's Quickstart."
)
# Whether enqueue has warned about the Celery app: once a process, not once a task.
_warned_about_app = False


def enqueue(task, *args) -> bool:
    """Send ``task`` to the app's queue without retrying; False (and a warning) when the broker is down.

    A web request must not wait on a missing broker: Celery's and the Redis client's own
    connection retries add up to seconds, so the connection is tried exactly once here.
    """
    app = task.app
    _warn_once_about(app)
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


def celery_apps_in_use() -> tuple:
    """The Celery apps shared tasks would be sent with: by this thread, and by a thread that made
    none current (a threaded server's requests). None where Celery would make its fallback app.

    Reads Celery's state the way ``celery._state.get_current_app`` does, without its side effect
    of making the fallback app.
    """
    return celery_state._tls.current_app or celery_state.default_app, celery_state.default_app


def celery_app_problem(app) -> str:
    """Why tasks sent with ``app`` would miss the project's broker ("" when they would not).

    ``app`` None is Celery's fallback app before it is made.
    """
    if app is None or _is_celery_fallback(app):
        return (
            "Tasks are sent with Celery's fallback app, not the project's: it reads no Django settings "
            "and sends to its default broker (amqp://guest@localhost//), where no worker of the project listens."
        )
    if getattr(settings, "CELERY_BROKER_URL", None) and not app.conf.broker_url:
        return (
            f"The Celery app {app.main!r} has no broker though settings.CELERY_BROKER_URL names one: "
            "it did not read the Django settings, and sends to Celery's default broker (amqp://guest@localhost//)."
        )
    return ""


def _is_celery_fallback(app) -> bool:
    # celery._state.get_current_app makes it when no app is current or default, with these
    # arguments: Celery("default", fixups=[], set_as_current=False). An app of a project keeps
    # Celery's fixups (Django's among them) and makes itself current.
    return app.main == "default" and not app.set_as_current and not app.fixups


def _warn_once_about(app) -> None:
    """Log ``celery_app_problem(app)`` once a process: a worker or a server runs no system checks."""
    global _warned_about_app
    if _warned_about_app:
        return
    problem = celery_app_problem(app)
    if problem:
        _warned_about_app = True
        logger.warning("visual_recs: %s %s (visual_recs.W004)", problem, CELERY_APP_HINT)


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
