"""Save and delete receivers for the registered models only: they record and enqueue, nothing heavy.

The task is sent after the transaction commits (so the worker sees the row), and only when
the photo, the partition or whether the product may be shown changed. If the broker cannot
be reached the save still succeeds: the vector stays ``pending`` for the sweep.

Rows of a registered model's ``photo_models`` (a shop's product images) are listened to as
well: their saves and deletes make the owner (and its ``dependants``) be looked at again.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from . import registry, tasks
from .indexing import photo_sha256
from .models import FeatureVector
from .queue import enqueue, is_paused
from .registry import IndexedModel, PhotoModel

logger = logging.getLogger(__name__)

_connected: list[tuple] = []


def _on_save(sender, instance, raw: bool = False, **kwargs) -> None:
    if raw or is_paused():
        return  # fixtures load raw rows; a paused import indexes in one batch afterwards
    indexed_model = registry.for_model(sender)
    for obj in (instance, *indexed_model.dependants_of(instance)):
        _reconsider(indexed_model, obj)


def _on_photo_change(key: str, photo_model: PhotoModel, sender, instance, raw: bool = False, **kwargs) -> None:
    """A photo row was saved or deleted: its owner's photo may be another one now.

    Looked at once the transaction commits, when the whole change is in: a shop's formset saves
    the images one by one after the product, and a delete of the owner itself deletes its
    photo rows first (the owner is then gone, and left to its own delete receiver).
    """
    if raw or is_paused():
        return
    owner_pk = photo_model.owner_pk(instance)

    def reconsider_owner() -> None:  # a function, not a partial: Django logs a robust callback's __qualname__
        _reconsider_owner(key, owner_pk)

    # robust: the change is committed by then, so a failure here is logged rather than raised at
    # whoever committed it; the owner's vector then keeps its old photo until a reindex.
    transaction.on_commit(reconsider_owner, robust=True)


def _reconsider_owner(key: str, owner_pk) -> None:
    indexed_model = registry.get(key)
    owner = indexed_model.all().filter(pk=owner_pk).first()
    if owner is None:
        return  # deleted with its photos: never marked again here, so never brought back
    with transaction.atomic():
        for obj in (owner, *indexed_model.dependants_of(owner)):
            _reconsider(indexed_model, obj)


def _reconsider(indexed_model: IndexedModel, instance) -> None:
    """Queue indexing of ``instance`` (after commit) when its photo, partition or visibility changed.

    What it changes is marked first (a new photo: the vector pending with its hash; a removed
    photo or a move: the lists to repair), so the sweep finds it when the task cannot be queued.
    """
    content_type = indexed_model.content_type
    object_id = str(instance.pk)
    existing = FeatureVector.objects.filter(content_type=content_type, object_id=object_id).defer("vector").first()
    image = indexed_model.image_of(instance)
    if image is None:
        if existing is not None:
            # The photo was removed: indexing drops the vector, and the object shows as "no photo".
            FeatureVector.objects.filter(pk=existing.pk).update(list_radius=None)
            _enqueue_on_commit(tasks.index_object, instance)
        return
    sha256 = photo_sha256(image)
    partition = indexed_model.partition_of(instance)
    if existing is None or existing.image_sha256 != sha256:
        _mark_pending(content_type, object_id, partition, sha256)
        _enqueue_on_commit(tasks.index_object, instance)
        return
    listed = indexed_model.shown().filter(pk=instance.pk).exists()
    moved = (existing.partition, existing.listed) != (partition, listed)
    if moved and existing.list_radius is not None:
        # The mark of lists waiting for a repair, saved with the move itself: if the task cannot
        # be queued (broker down), status counts it and the sweep (or `--pending`) finds it.
        FeatureVector.objects.filter(pk=existing.pk).update(list_radius=None)
    if existing.status == FeatureVector.Status.PENDING or moved:
        _enqueue_on_commit(tasks.index_object, instance)


def _mark_pending(content_type, object_id: str, partition: str, sha256: str) -> None:
    """Record that the object's photo is now the one hashed ``sha256`` and waits for its vector.

    The new hash tells a task still working on the old photo that it is superseded. An
    existing row keeps its partition: that is where its index entry still is, until the task
    moves it.
    """
    pending = {"status": FeatureVector.Status.PENDING, "error": "", "image_sha256": sha256}
    rows = FeatureVector.objects.filter(content_type=content_type, object_id=object_id)
    if not rows.update(**pending):
        # get_or_create, not create: a concurrent save may have made the row since the update.
        row, created = FeatureVector.objects.get_or_create(
            content_type=content_type, object_id=object_id, defaults={**pending, "partition": partition}
        )
        if not created:
            rows.update(**pending)


def _on_delete(sender, instance, **kwargs) -> None:
    if is_paused():
        return
    # Until the delete's task has run, the row is no vector to trust: a save of the same key meanwhile
    # (a shop whose keys are SKUs) then queues its own indexing instead of keeping a row that task removes.
    FeatureVector.objects.filter(
        content_type=registry.for_model(sender).content_type, object_id=str(instance.pk)
    ).update(status=FeatureVector.Status.PENDING, image_sha256="")
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
        registered = list(registry.indexed_models().values())
    except (LookupError, ValueError, KeyError, ImportError, TypeError):
        logger.error("visual_recs: VISUAL_RECS['MODELS'] names a model or hook that does not exist or is malformed; run `manage.py check`.")
        return
    for indexed_model in registered:
        for signal, receiver in ((post_save, _on_save), (post_delete, _on_delete)):
            _connect(signal, receiver, indexed_model.model)
        for photo_model in indexed_model.photo_models:
            receiver = partial(_on_photo_change, indexed_model.key, photo_model)
            for signal in (post_save, post_delete):
                _connect(signal, receiver, photo_model.model)


def _connect(signal, receiver, sender) -> None:
    signal.connect(receiver, sender=sender, weak=False)
    _connected.append((signal, receiver, sender))
