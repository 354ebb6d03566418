"""Save and delete receivers for the registered models only: they mark and enqueue, nothing heavy.

A save reads no photo: it compares what the database row and the object tell (the photo's
stored name, whether a file was uploaded by this save, the partition, whether the product may
be shown) with the object's ``FeatureVector``, marks what changed (``indexing.mark_changed``)
and queues the task after the transaction commits (so the worker sees the row). The worker
hashes the photo, and skips the network when it is the one the vector was made from. If the
broker cannot be reached the save still succeeds: the vector stays ``pending`` for the sweep.

Rows of a registered model's ``photo_models`` (a shop's product images) are listened to as
well: their saves and deletes make the owner (and its ``dependants``) be looked at again once
the transaction commits, once per owner however many of its photo rows the transaction saved.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import models, transaction
from django.db.models.signals import post_delete, post_save, pre_save

from . import registry, tasks
from .indexing import mark_changed
from .models import FeatureVector
from .queue import enqueue, is_paused
from .registry import IndexedModel, PhotoModel

logger = logging.getLogger(__name__)

_connected: list[tuple] = []
# Set on an instance by pre_save when the save is about to store a newly assigned file: its name
# may be the old one (a storage that overwrites), so only this tells that the photo changed.
_UPLOADING = "_visual_recs_uploading"


class _OwnersAfterCommit:
    """The photo owners one transaction's photo rows changed, looked at again once after its commit.

    One per transaction (see ``_owners_after_commit``): N image rows of one product saved in one
    transaction look at the product once, and so queue one task.
    """

    def __init__(self) -> None:
        self.owners: dict[tuple[str, object], None] = {}  # (key, owner pk), in order
        self.uploaded: set[str] = set()  # names of the files this transaction's photo rows uploaded
        self.done = False

    def __call__(self) -> None:
        self.done = True
        with transaction.atomic():
            for key, owner_pk in self.owners:
                _reconsider_owner(key, owner_pk, self.uploaded)


def _owners_after_commit() -> _OwnersAfterCommit:
    """This transaction's ``_OwnersAfterCommit``, registered with ``on_commit`` when it is the first.

    Found among the transaction's commit callbacks, so a rollback, which drops them, drops it
    too. Outside a transaction (autocommit) a fresh one is returned for the caller to run.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        return _OwnersAfterCommit()
    for _savepoints, callback, _robust in connection.run_on_commit:
        if isinstance(callback, _OwnersAfterCommit) and not callback.done:
            return callback
    owners = _OwnersAfterCommit()
    # robust: the change is committed by then, so a failure here is logged rather than raised at
    # whoever committed it; the owner's vector then keeps its old photo until a reindex.
    transaction.on_commit(owners, robust=True)
    return owners


def _note_upload(sender, instance, raw: bool = False, **kwargs) -> None:
    """pre_save: remember whether this save stores a newly assigned file (``FieldFile._committed`` is False until then)."""
    uploading = not raw and any(
        not getattr(instance, field.attname)._committed
        for field in instance._meta.concrete_fields
        if isinstance(field, models.FileField) and getattr(instance, field.attname)
    )
    instance.__dict__[_UPLOADING] = uploading


def _uploaded_names(instance) -> set[str]:
    """The stored names of the files this save of ``instance`` uploaded (see ``_note_upload``)."""
    if not instance.__dict__.pop(_UPLOADING, False):
        return set()
    return {
        getattr(instance, field.attname).name
        for field in instance._meta.concrete_fields
        if isinstance(field, models.FileField) and getattr(instance, field.attname)
    }


def _on_save(sender, instance, raw: bool = False, **kwargs) -> None:
    uploaded = _uploaded_names(instance)
    if raw or is_paused():
        return  # fixtures load raw rows; a paused import indexes in one batch afterwards
    indexed_model = registry.for_model(sender)
    for obj in (instance, *indexed_model.dependants_of(instance)):
        _reconsider(indexed_model, obj, uploaded)


def _on_photo_change(key: str, photo_model: PhotoModel, sender, instance, raw: bool = False, **kwargs) -> None:
    """A photo row was saved or deleted: its owner's photo may be another one now.

    Looked at once the transaction commits, when the whole change is in: a shop's formset saves
    the images one by one after the product, and a delete of the owner itself deletes its
    photo rows first (the owner is then gone, and left to its own delete receiver).
    """
    uploaded = _uploaded_names(instance)
    if raw or is_paused():
        return
    owners = _owners_after_commit()
    owners.uploaded |= uploaded
    owners.owners[(key, photo_model.owner_pk(instance))] = None
    if not transaction.get_connection().in_atomic_block:
        owners()


def _reconsider_owner(key: str, owner_pk, uploaded: set[str]) -> None:
    indexed_model = registry.get(key)
    owner = indexed_model.all().filter(pk=owner_pk).first()
    if owner is None:
        return  # deleted with its photos: never marked again here, so never brought back
    for obj in (owner, *indexed_model.dependants_of(owner)):
        _reconsider(indexed_model, obj, uploaded)


def _reconsider(indexed_model: IndexedModel, instance, uploaded: set[str]) -> None:
    """Queue indexing of ``instance`` (after commit) when its photo, partition or visibility changed.

    Decided without reading the photo: a photo under another stored name, or one this
    transaction uploaded, is marked changed (``mark_changed``); the worker's hash then tells
    whether it really is another picture. A removed photo or a move marks the lists to repair.
    The marks are written with the change, so the sweep finds them when the task cannot be queued.
    """
    object_id = str(instance.pk)
    existing = (
        FeatureVector.objects.filter(content_type=indexed_model.content_type, object_id=object_id)
        .only("pk", "status", "partition", "listed", "image_name", "list_radius")
        .first()
    )
    image = indexed_model.image_of(instance)
    if image is None:
        if existing is not None:
            # The photo was removed: indexing drops the vector, and the object shows as "no photo".
            _mark_lists(existing)
            _enqueue_on_commit(tasks.index_object, instance)
        return
    partition = indexed_model.partition_of(instance)
    if existing is None or existing.image_name != image.name or image.name in uploaded:
        mark_changed(indexed_model, [object_id], image_name=image.name, partition=partition)
        _enqueue_on_commit(tasks.index_object, instance)
        return
    listed = indexed_model.shown().filter(pk=instance.pk).exists()
    moved = (existing.partition, existing.listed) != (partition, listed)
    if moved:
        # The mark of lists waiting for a repair, saved with the move itself: if the task cannot
        # be queued (broker down), status counts it and the sweep (or `--pending`) finds it.
        _mark_lists(existing)
    if existing.status == FeatureVector.Status.PENDING or moved:
        _enqueue_on_commit(tasks.index_object, instance)


def _mark_lists(existing: FeatureVector) -> None:
    """Mark the object's lists as waiting for a repair (the sweep repairs what its task does not)."""
    if existing.list_radius is not None:
        FeatureVector.objects.filter(pk=existing.pk).update(list_radius=None)


def _on_delete(sender, instance, **kwargs) -> None:
    if is_paused():
        return
    # Until the delete's task has run, the row is no vector to trust: a save of the same key meanwhile
    # (a shop whose keys are SKUs) marks its photo again and queues its own indexing, instead of
    # keeping a row that task removes.
    mark_changed(registry.for_model(sender), [str(instance.pk)])
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
        for signal, receiver in ((pre_save, _note_upload), (post_save, _on_save), (post_delete, _on_delete)):
            _connect(signal, receiver, indexed_model.model)
        for photo_model in indexed_model.photo_models:
            _connect(pre_save, _note_upload, photo_model.model)
            receiver = partial(_on_photo_change, indexed_model.key, photo_model)
            for signal in (post_save, post_delete):
                _connect(signal, receiver, photo_model.model)


def _connect(signal, receiver, sender) -> None:
    signal.connect(receiver, sender=sender, weak=False)
    _connected.append((signal, receiver, sender))
