"""Learning a model's search space from its own catalog (``visual_recs_fit``).

A fit reads the stored vectors of the ready products and their ``learn_from`` labels, learns
a projection (``visual_recs.learning``), stores it as a ``Fit``, fills the fit's own index
collection from the stored vectors (the network does not run) and rebuilds every list in it.
Only then does it become current; saves made meanwhile went to the previous space, and are
carried over right after the switch. Until a fit succeeds nothing changes: a fit that fails
(labels that cannot be learned from, no ready vectors) leaves the index and the lists as they
were.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from django.utils import timezone

from .. import learning
from ..backends import get_extractor, get_index
from ..exceptions import LearningError
from ..models import FeatureVector, Fit
from ..registry import IndexedModel
from ..utils import chunked
from . import neighbours
from .pipeline import rebuild_index
from .space import Space, current_space, space_of

#: Stored vectors read (and objects asked for their labels) per query.
READ_BATCH = 2000


@dataclass
class FitSummary:
    """What one fit learned from and did."""

    fit: Fit
    labelled: dict[str, int]  # per field, the products with a label
    classes: dict[str, int]  # per field, the distinct labels
    learn_seconds: float
    total_seconds: float
    carried_over: int  # vectors saved or removed during the fit, carried into its space

    def __str__(self) -> str:
        fields = ", ".join(
            f"{name} ({self.labelled[name]} labelled, {self.classes[name]} values)" for name in self.labelled
        )
        return (
            f"fit {self.fit.version} on {self.fit.products} products from {fields}: learned in "
            f"{self.learn_seconds:.1f} s, index and lists rebuilt, {self.total_seconds:.1f} s in all"
            + (f"; {self.carried_over} changes made meanwhile carried over" if self.carried_over else "")
        )


def fit(indexed_model: IndexedModel, *, progress: Callable[[int], None] | None = None) -> FitSummary:
    """Learn, store and switch to a new search space for ``indexed_model``; see the module.

    ``progress`` is called with the number of vectors loaded into the new space, batch by
    batch. Raises ``LearningError`` (nothing changed) when the model has no ``learn_from``,
    no ready vectors, or labels that cannot be learned from.
    """
    if not indexed_model.learn_from:
        raise LearningError(
            f"VISUAL_RECS['MODELS'][{indexed_model.key!r}] has no 'learn_from': name the fields to learn "
            f"from on {type(indexed_model.declaration).__name__}, e.g. learn_from = [\"product_type\", \"colour\"]."
        )
    started_at, started = timezone.now(), time.perf_counter()
    model_id = get_extractor().model_id
    object_ids, features = _stored_vectors(indexed_model)
    labels = _labels(indexed_model, object_ids)
    learning_started = time.perf_counter()
    projection = learning.fit_projection(features, labels, weights=indexed_model.learn_weights)
    learn_seconds = time.perf_counter() - learning_started
    _check_index_takes(projection)
    new = Fit.objects.create(
        content_type=indexed_model.content_type,
        model_id=model_id,
        fields=list(indexed_model.learn_from),
        version=projection.version,
        data=projection.to_bytes(),
        products=len(object_ids),
        seconds=learn_seconds,
    )
    space = space_of(indexed_model, model_id, (new.pk, new.version), get_extractor().parts)
    previous = current_space(indexed_model)
    rebuild_index(indexed_model, space=space, progress=progress)
    Fit.objects.filter(pk=new.pk).update(completed_at=timezone.now())
    carried_over = _carry_over(indexed_model, space, since=started_at)
    if previous.collection != space.collection:
        # Its vectors stopped being kept current at the switch: never searched again.
        get_index().clear(previous.collection)
    new.refresh_from_db()
    return FitSummary(
        fit=new,
        labelled={name: sum(1 for value in values if value) for name, values in labels.items()},
        classes={name: len({value for value in values if value}) for name, values in labels.items()},
        learn_seconds=learn_seconds,
        total_seconds=time.perf_counter() - started,
        carried_over=carried_over,
    )


def _stored_vectors(indexed_model: IndexedModel) -> tuple[list[str], np.ndarray]:
    """The ids and vectors (float32, one row each) of the model's ready vectors of the configured extractor.

    Read ``READ_BATCH`` rows at a time into one array sized by a count first, so that at no
    point does the process hold a Python object per row beside the array (at 100,000
    products of 2,048 values, that would be a second 800 MB). Rows stored after the count are
    left to ``_carry_over``, as any save made during the fit is.
    """
    rows = neighbours.ready_rows(indexed_model).order_by("pk")
    expected = rows.count()
    object_ids: list[str] = []
    features: np.ndarray | None = None
    for object_id, vector in rows.values_list("object_id", "vector")[:expected].iterator(chunk_size=READ_BATCH):
        row = FeatureVector.from_bytes(vector)
        if features is None:
            features = np.empty((expected, len(row)), dtype=np.float32)
        features[len(object_ids)] = row
        object_ids.append(object_id)
    if features is None:
        raise LearningError(
            f"{indexed_model.key} has no ready vectors to learn from: index the catalog first "
            "(visual_recs_reindex), then fit."
        )
    return object_ids, features[: len(object_ids)]  # fewer if some were deleted after the count


def _labels(indexed_model: IndexedModel, object_ids: list[str]) -> dict[str, list[str]]:
    """Per ``learn_from`` field, each object's label ("" when blank or the object is gone)."""
    to_pk = indexed_model.model._meta.pk.to_python
    labels: dict[str, list[str]] = {name: [] for name in indexed_model.learn_from}
    for batch in chunked(object_ids, READ_BATCH):
        objects = {str(pk): obj for pk, obj in indexed_model.all().in_bulk([to_pk(i) for i in batch]).items()}
        for object_id in batch:
            obj = objects.get(object_id)
            values = indexed_model.labels_of(obj) if obj is not None else {}
            for name in indexed_model.learn_from:
                labels[name].append(values.get(name, ""))
    return labels


def _check_index_takes(projection) -> None:
    """An index with a fixed vector length (PgvectorIndex) takes a fit's vectors padded to it, if they fit."""
    dims = get_index().dimensions
    if dims is not None and projection.dims > dims:
        raise LearningError(
            f"This fit makes vectors of {projection.dims} values and the index holds {dims}: give the "
            "fewer-valued fields less room, or an index of more dimensions."
        )


def _carry_over(indexed_model: IndexedModel, space: Space, *, since) -> int:
    """Bring the new space up to date with what changed while it was being built; returns how many.

    Saves during the fit wrote to the previous space. Vectors stored or changed since the fit
    started are written into the new one (or removed from it, if they are no longer ready), and
    entries whose vectors were deleted meanwhile are removed; their lists are repaired.
    """
    index = get_index()
    ready = [
        (object_id, partition, listed, FeatureVector.from_bytes(vector))
        for object_id, partition, listed, vector in neighbours.ready_rows(indexed_model)
        .filter(updated_at__gte=since)
        .values_list("object_id", "partition", "listed", "vector")
    ]
    # Whatever the space holds without a ready vector behind it now: deleted, failed or lost its photo.
    # Looked up a batch of entries at a time: no set of every id of the catalog.
    removed: list[str] = []
    for batch in chunked((entry.object_id for entry in index.entries(space.collection)), READ_BATCH):
        kept = set(neighbours.ready_rows(indexed_model).filter(object_id__in=batch).values_list("object_id", flat=True))
        removed.extend(object_id for object_id in batch if object_id not in kept)
    partitions = {partition for _, partition, _, _ in ready}
    with neighbours.locked(indexed_model, partitions | set(index.partitions(space.collection))):
        if ready:
            index.add(space.collection, space.entries(ready))
        if removed:
            index.remove(space.collection, removed)
    changed = {object_id for object_id, *_ in ready}.union(removed)
    if changed:
        neighbours.repair_lists(indexed_model, changed)
    return len(changed)


def current_fit(indexed_model: IndexedModel) -> Fit | None:
    """The model's current fit (its projection's bytes deferred), or None."""
    space = current_space(indexed_model)
    return Fit.objects.defer("data").filter(pk=space.fit_id).first() if space.fit_id else None
