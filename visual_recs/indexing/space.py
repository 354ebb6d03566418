"""The space the index searches: the stored vectors as the extractor made them, or as the
model's current fit maps them.

``FeatureVector`` rows keep what the extractor made; the index holds each vector mapped into
the current space, in that space's own collection. A model without a completed fit searches
the extractor's vectors as they are (the collection every version before fits used), so a
shop without ``learn_from`` sees no change. Every writer of the index and every query goes
through ``current_space``: a vector is never compared with one of another space.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..appearance import compose
from ..backends import get_extractor, get_index
from ..backends.base import Entry
from ..conf import app_settings
from ..learning import Projection
from ..models import Fit
from ..registry import IndexedModel

# Fits never change once made: a process maps vectors with the same projection for good. Keyed by
# version too: a fit's pk may be reused after a rollback (a test database, a failed migration).
_projections: dict[tuple[int, str], Projection] = {}
_projections_lock = threading.Lock()


@dataclass(frozen=True)
class Space:
    """One search space of a registered model: its index collection and how vectors get there."""

    collection: str
    fit_id: int | None = None
    fit_version: str = ""
    #: Without a fit, the extractor's parts as (name, length, weight), weighed when there are several.
    parts: tuple[tuple[str, int, float], ...] = ()
    #: The vector length of an index that holds one length only (PgvectorIndex): a fit's shorter
    #: vectors are padded with zeros to it, which changes no distance.
    pad_to: int | None = None

    def to_index(self, vectors: np.ndarray) -> np.ndarray:
        """The float32 vectors (n, d) the index holds for stored vectors (n, d')."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.fit_id is not None:
            mapped = _projection(self.fit_id, self.fit_version).transform(vectors)
            if self.pad_to is not None and mapped.shape[1] < self.pad_to:
                mapped = np.pad(mapped, ((0, 0), (0, self.pad_to - mapped.shape[1])))
            return mapped
        if len(self.parts) < 2:
            return vectors
        return compose(split_parts(vectors, self.parts), {name: weight for name, _, weight in self.parts})

    def entries(self, rows: Sequence[tuple[str, str, bool, np.ndarray]]) -> list[Entry]:
        """Index entries of ``rows`` (object id, partition, shown, stored vector), their vectors mapped here."""
        if not rows:
            return []
        mapped = self.to_index(np.stack([vector for *_, vector in rows]))
        return [Entry(object_id, partition, shown, vector) for (object_id, partition, shown, _), vector in zip(rows, mapped)]

    def layout(self, dims: int) -> list[tuple[str, int]]:
        """The named parts of this space's ``dims``-long vectors, in order, with their lengths:
        each learned field's (a fit), or the extractor's parts, or one "visual" part."""
        if self.fit_id is not None:
            projection = _projection(self.fit_id, self.fit_version)
            return [
                (f"learned {field}", matrix.shape[1])
                for field, matrix in projection.matrices.items()
                if projection.weights[field] > 0
            ]
        if len(self.parts) > 1:
            return [(name, length) for name, length, _ in self.parts]
        return [("visual", dims)]


def current_space(indexed_model: IndexedModel) -> Space:
    """The space of the model's newest completed fit for the configured extractor (one indexed
    query), or the extractor's own when there is none or the model learns from nothing."""
    extractor = get_extractor()
    model_id = extractor.model_id
    if not indexed_model.learn_from:
        return space_of(indexed_model, model_id, None, extractor.parts)
    fit = (
        Fit.objects.filter(content_type=indexed_model.content_type, model_id=model_id, completed_at__isnull=False)
        .order_by("-completed_at", "-pk")
        .values_list("pk", "version")
        .first()
    )
    return space_of(indexed_model, model_id, fit, extractor.parts)


def space_of(
    indexed_model: IndexedModel, model_id: str, fit: tuple[int, str] | None, parts: dict[str, int]
) -> Space:
    """The space of ``fit`` (its pk and version; None: no fit) over the vectors of ``model_id``,
    whose ``parts`` are the extractor's."""
    collection = indexed_model.collection(model_id)
    if fit is not None:
        pk, version = fit
        return Space(f"{collection}:fit-{version}", pk, version, pad_to=get_index().dimensions)
    if len(parts) < 2:
        return Space(collection)  # the extractor's vectors as they are: the space before fits existed
    weights = {name: 1.0 for name in parts} | {"colour": app_settings.COLOUR_WEIGHT}
    weighed = tuple((name, length, weights[name]) for name, length in parts.items())
    tag = ",".join(f"{name}={weight:g}" for name, _, weight in weighed)
    return Space(f"{collection}:{tag}", parts=weighed)


def distance_parts(indexed_model: IndexedModel, object_id: str, others: list[str]) -> dict[str, dict[str, float]]:
    """For each of ``others``, its distance to ``object_id`` part by part (one index query).

    The parts' distances combine as sqrt(sum of squares) into the distance the lists rank by,
    so staff can see why an item is recommended: same kind of product, or same colour, or both.
    Objects the index does not hold are left out.
    """
    space = current_space(indexed_model)
    vectors = get_index().vectors(space.collection, [object_id, *others])
    source = vectors.get(object_id)
    if source is None:
        return {}
    layout = space.layout(len(source))
    found = {}
    for other in others:
        if other not in vectors:
            continue
        difference = (vectors[other] - source)[np.newaxis]
        found[other] = {
            name: float(np.linalg.norm(part)) for name, part in split_parts(difference, layout).items()
        }
    return found


def split_parts(vectors: np.ndarray, parts) -> dict[str, np.ndarray]:
    """The columns of each named part of ``vectors``; ``parts``: (name, length, ...) in order."""
    split, start = {}, 0
    for name, length, *_ in parts:
        split[name] = vectors[:, start : start + length]
        start += length
    return split


def _projection(fit_id: int, version: str) -> Projection:
    key = (fit_id, version)
    with _projections_lock:
        projection = _projections.get(key)
    if projection is None:
        data = Fit.objects.values_list("data", flat=True).get(pk=fit_id, version=version)
        projection = Projection.from_bytes(bytes(data))
        with _projections_lock:
            _projections[key] = projection
    return projection
