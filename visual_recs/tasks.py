"""Celery tasks: short, idempotent shells over ``indexing``, taking plain values only.

They run on the ``VISUAL_RECS["QUEUE"]`` queue (``celery worker -Q visual_recs``). A worker
process loads the network once and keeps it. The indexing tasks are acknowledged when they end
(``acks_late``) and given back to the broker when their worker process dies mid-task
(``reject_on_worker_lost``): a killed worker's batch runs again rather than being lost, which
is safe because indexing is idempotent.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.cache import cache
from django.db import DatabaseError

from . import events, indexing, registry
from .backends import get_index
from .conf import app_settings

logger = logging.getLogger(__name__)

# Passing failures worth another try: the database or the storage was briefly unavailable.
# A photo that cannot be used is not one of them: indexing marks it failed, once.
TRANSIENT_ERRORS = (DatabaseError, OSError)
#: Vectors the sweep compares with their objects per run (the next run goes on from there).
RECONCILE_PER_RUN = 5000


def _retry(task, exc: Exception):
    return task.retry(exc=exc, countdown=2 ** task.request.retries * 5, max_retries=app_settings.MAX_ATTEMPTS)


@shared_task(bind=True, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def index_object(self, app_label: str, model_name: str, pk, force: bool = False) -> str:
    """Index one object (skipped when its photo and the extractor are unchanged)."""
    indexed_model = registry.for_content_type(app_label, model_name)
    obj = indexed_model.all().filter(pk=pk).first()
    if obj is None:
        return "gone"  # deleted since; post_delete has queued its removal
    try:
        return indexing.index(obj, force=force)
    except TRANSIENT_ERRORS as exc:
        raise _retry(self, exc) from exc


@shared_task(bind=True, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def index_batch(self, app_label: str, model_name: str, pks: list, force: bool = False) -> str:
    """Index a batch of objects in one pass of the network (the reindex command queues these)."""
    indexed_model = registry.for_content_type(app_label, model_name)
    try:
        return str(indexing.index_many(indexed_model.all().filter(pk__in=pks), force=force))
    except TRANSIENT_ERRORS as exc:
        raise _retry(self, exc) from exc


@shared_task(bind=True, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def unindex_object(self, app_label: str, model_name: str, pk) -> str:
    """Remove a deleted object's vector and its place in every neighbour list ("back": saved again since)."""
    try:
        return "removed" if indexing.unindex(registry.for_content_type(app_label, model_name), str(pk)) else "back"
    except TRANSIENT_ERRORS as exc:
        raise _retry(self, exc) from exc


@shared_task(ignore_result=True)
def rebuild_partition(key: str, partition: str) -> int:
    """Recompute every neighbour list of one partition of the model registered under ``key``."""
    return indexing.rebuild_partition(registry.get(key), partition)


@shared_task(ignore_result=True)
def sweep() -> str:
    """Index what saves could not enqueue (broker down), vectors of an old extractor, the never
    indexed, and failed photos below ``MAX_ATTEMPTS``; move the vectors of objects moved while
    the broker was down; build the lists that a stopped rebuild left unfinished; reconcile a slice of the vectors with
    their objects (deleted, moved or hidden behind the signals' back, see ``indexing.reconcile``).

    Schedule it with celery beat (every few minutes); ``visual_recs_reindex --pending`` does the same.
    It also lets the index backend drop what it keeps only for a while (``prune_changes``:
    ``ExactIndex``'s change log older than its ``change_retention``), and deletes events older
    than ``EVENT_RETENTION_DAYS`` (``events.prune``: bounded batches, the rest next run).
    """
    get_index().prune_changes()
    pruned_events = events.prune()
    summaries = []
    for indexed_model in registry.indexed_models().values():
        summary = indexing.index_many(indexing.objects_needing_work(indexed_model).iterator(chunk_size=500))
        repaired = indexing.repair_unfinished(indexed_model)
        # A bounded slice of the table per run, resumed where the last run stopped.
        cursor_key = f"visual_recs:reconcile:{indexed_model.key}"
        reconciled = indexing.reconcile(indexed_model, after=cache.get(cursor_key), limit=RECONCILE_PER_RUN)
        cache.set(cursor_key, reconciled.next_after, timeout=None)
        summaries.append(f"{indexed_model.key}: {summary}, {repaired} lists finished, {reconciled}")
    if pruned_events:
        summaries.append(f"{pruned_events} old events deleted")
    logger.info("visual_recs sweep: %s", "; ".join(summaries))
    return "; ".join(summaries)
