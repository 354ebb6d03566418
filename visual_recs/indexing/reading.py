"""Lists to pages: the read path a web process runs.

Pages read a product's stored neighbour list and the products that may be shown now, in a
fixed number of queries; no vector and no network is loaded here. A ready product whose list
is missing (being rebuilt) asks the index for its neighbours: one nearest-neighbour query.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from django.db import models
from django.db.models import OuterRef, Subquery

from .. import registry
from ..backends import get_extractor, get_index
from ..conf import app_settings
from ..exceptions import WeightsError
from ..models import FeatureVector, IndexStatus, SimilarItem
from ..registry import IndexedModel
from .space import current_space

logger = logging.getLogger(__name__)

Status = IndexStatus


@dataclass
class Similar:
    """One recommendation: a shown object, its distance to the product, and why it is there.

    ``origin`` is "visual" (a neighbour by photo), "pinned" (a rule put it there) or
    "fallback" (the list ran short after the rules and stock, and the fallback filled it);
    ``rule_id`` is the rule that pinned or boosted it (None otherwise).
    """

    object: models.Model
    distance: float
    rank: int
    origin: str = "visual"
    rule_id: int | None = None


NO_IMAGE = IndexStatus.NO_IMAGE.value
#: Every status ``recommendations`` and ``index_states`` report.
STATUSES = tuple(IndexStatus.values)


@dataclass(frozen=True)
class IndexState:
    """Where one object stands in the index.

    ``status`` is "ready", "pending" (queued, or never indexed yet), "failed" (``error`` says
    why) or "no_image"; ``partition`` is the object's partition now.
    """

    status: str
    partition: str
    error: str = ""
    image_sha256: str = ""


@dataclass
class Recommendations:
    """What a product page shows: the product's index status and its similar items, nearest first.

    While a product is pending, ``items`` are those of its previous photo, if it had one.
    """

    status: str
    partition: str
    items: list[Similar]
    error: str = ""


class _Hit(NamedTuple):
    """A candidate recommendation before the read-time checks."""

    object_id: str
    distance: float
    partition: str | None  # where it was found: still the object's partition to be shown (None: any)
    image_sha256: str = ""


def similar_to(obj: models.Model, limit: int = 5) -> list[Similar]:
    """The nearest shown objects to ``obj`` in its partition, nearest first (see ``recommendations``)."""
    return recommendations(obj, limit).items


def recommendations(obj: models.Model, limit: int = 5) -> Recommendations:
    """The index status of ``obj`` and up to ``limit`` similar shown objects, in three queries.

    The stored neighbour list is read with its targets' photo hashes, then the targets that
    pass the model's filter now and are still in the product's partition: a deleted,
    deactivated or moved product never shows, even before the lists are rebuilt. Photos
    byte-identical to the product's own, or to a nearer item's, are left out unless
    ``EXCLUDE_DUPLICATE_PHOTOS`` is off. A ready product without a list yet (its list is
    being rebuilt), or moved to another partition since its list was made (its task not run
    yet), gets neighbours from its new partition in the index, computed here and not stored.
    """
    indexed_model = registry.for_model(obj)
    object_id = str(obj.pk)
    vector = _state_rows(indexed_model, [object_id]).first()
    state = _state_of(indexed_model, obj, vector)
    if state.status == NO_IMAGE or limit < 1:
        return Recommendations(state.status, state.partition, [], state.error)
    moved = vector is not None and vector.partition != state.partition
    # A moved product's stored list is of its old partition: none of it may be shown.
    hits = [] if moved else _listed_hits(indexed_model, object_id, state.partition)
    if not hits and state.status == Status.READY:
        hits = None if vector.model_id != _current_model_id() else _hits_from_index(
            indexed_model, object_id, state.partition
        )
        if hits is None:
            # Made by another extractor (or missing from the index): the sweep or a reindex will redo it.
            return Recommendations(Status.PENDING.value, state.partition, [])
    same_photo = {state.image_sha256} if state.image_sha256 else set()
    items = _shown(indexed_model, hits, limit, duplicates_of=same_photo)
    return Recommendations(state.status, state.partition, items, state.error)


def _current_model_id() -> str | None:
    """The extractor's ``model_id``, or None when it cannot be known here (a converted network
    missing from this process's machine): the page then shows the product as pending, not an error."""
    try:
        return get_extractor().model_id
    except WeightsError as exc:
        logger.error("visual_recs: %s", exc)
        return None


def index_states(objects: Sequence[models.Model]) -> dict[str, IndexState]:
    """The index state of each of ``objects`` (all of one registered model) by ``str(pk)``, in one query."""
    if not objects:
        return {}
    indexed_model = registry.for_model(objects[0])
    ids = [str(obj.pk) for obj in objects]
    vectors = {vector.object_id: vector for vector in _state_rows(indexed_model, ids)}
    return {object_id: _state_of(indexed_model, obj, vectors.get(object_id)) for obj, object_id in zip(objects, ids)}


def _state_rows(indexed_model: IndexedModel, object_ids: list[str]) -> models.QuerySet:
    return FeatureVector.objects.filter(content_type=indexed_model.content_type, object_id__in=object_ids).only(
        "object_id", "status", "error", "partition", "image_sha256", "model_id"
    )


def _state_of(indexed_model: IndexedModel, obj: models.Model, vector: FeatureVector | None) -> IndexState:
    partition = indexed_model.partition_of(obj)
    if indexed_model.image_of(obj) is None:
        return IndexState(NO_IMAGE, partition)
    if vector is None:
        # A photo but no row yet: the save's task has not run, or the broker was down (the sweep's work).
        return IndexState(Status.PENDING.value, partition)
    error = vector.error if vector.status == Status.FAILED else ""
    return IndexState(vector.status, partition, error, vector.image_sha256)


def _listed_hits(indexed_model: IndexedModel, object_id: str, partition: str) -> list[_Hit]:
    """The stored list of ``object_id``, nearest first, with each target's photo hash from the same query.

    Equal distances are ordered by target id here, as text, the way the lists were built
    (a database's collation may order ids otherwise).
    """
    rows = SimilarItem.objects.filter(content_type=indexed_model.content_type, source_id=object_id).order_by("distance")
    if not app_settings.EXCLUDE_DUPLICATE_PHOTOS:
        hits = [_Hit(target, distance, partition) for target, distance in rows.values_list("target_id", "distance")]
    else:
        target_photo = FeatureVector.objects.filter(
            content_type=OuterRef("content_type"), object_id=OuterRef("target_id")
        ).values("image_sha256")[:1]
        rows = rows.annotate(target_sha256=Subquery(target_photo)).values_list("target_id", "distance", "target_sha256")
        hits = [_Hit(target, distance, partition, sha256 or "") for target, distance, sha256 in rows]
    return sorted(hits, key=lambda hit: (hit.distance, hit.object_id))


def _hits_from_index(indexed_model: IndexedModel, object_id: str, partition: str) -> list[_Hit] | None:
    """The neighbours in ``partition`` (the object's now) of a ready vector, asked of the index
    (one query); None if the index lacks the vector (stale)."""
    index = get_index()
    collection = current_space(indexed_model).collection
    vector = index.vectors(collection, [object_id]).get(object_id)
    if vector is None:
        return None
    found = index.search(collection, partition, vector, app_settings.NEIGHBOURS, exclude={object_id})
    photos: dict[str, str] = {}
    if app_settings.EXCLUDE_DUPLICATE_PHOTOS and found:
        photos = dict(
            FeatureVector.objects.filter(
                content_type=indexed_model.content_type, object_id__in=[hit.object_id for hit in found]
            ).values_list("object_id", "image_sha256")
        )
    return [_Hit(hit.object_id, hit.distance, partition, photos.get(hit.object_id, "")) for hit in found]


def _shown(indexed_model: IndexedModel, hits: list[_Hit], limit: int, *, duplicates_of: set[str]) -> list[Similar]:
    """The first ``limit`` hits that may be shown now, as objects, in one query (none without hits).

    ``duplicates_of``: photo hashes already on the page; hits with these photos, or with the
    photo of a nearer hit, are left out while ``EXCLUDE_DUPLICATE_PHOTOS`` is on.
    """
    to_pk = indexed_model.model._meta.pk.to_python
    candidates = indexed_model.shown().prefetch_related(*indexed_model.prefetch)
    shown = candidates.in_bulk([to_pk(hit.object_id) for hit in hits])
    by_id = {str(pk): obj for pk, obj in shown.items()}
    exclude_duplicates = app_settings.EXCLUDE_DUPLICATE_PHOTOS
    seen_photos = set(duplicates_of) if exclude_duplicates else set()
    results: list[Similar] = []
    for hit in hits:
        obj = by_id.get(hit.object_id)
        if obj is None or (hit.partition is not None and indexed_model.partition_of(obj) != hit.partition):
            continue  # filtered out, deleted, or moved to another partition since it was indexed
        if exclude_duplicates and hit.image_sha256:
            if hit.image_sha256 in seen_photos:
                continue
            seen_photos.add(hit.image_sha256)
        results.append(Similar(obj, hit.distance, len(results) + 1))
        if len(results) == limit:
            break
    return results


# --- what needs work --------------------------------------------------------------------
