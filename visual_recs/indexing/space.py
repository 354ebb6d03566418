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
from dataclasses import dataclass

import numpy as np

from ..backends import get_extractor
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

    def to_index(self, vectors: np.ndarray) -> np.ndarray:
        """The float32 vectors (n, d) the index holds for stored vectors (n, d')."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.fit_id is None:
            return vectors
        return _projection(self.fit_id, self.fit_version).transform(vectors)


def current_space(indexed_model: IndexedModel) -> Space:
    """The space of the model's newest completed fit for the configured extractor (one indexed
    query), or the extractor's own when there is none or the model learns from nothing."""
    model_id = get_extractor().model_id
    if not indexed_model.learn_from:
        return space_of(indexed_model, model_id, None)
    fit = (
        Fit.objects.filter(content_type=indexed_model.content_type, model_id=model_id, completed_at__isnull=False)
        .order_by("-completed_at", "-pk")
        .values_list("pk", "version")
        .first()
    )
    return space_of(indexed_model, model_id, fit)


def space_of(indexed_model: IndexedModel, model_id: str, fit: tuple[int, str] | None) -> Space:
    """The space of ``fit`` (its pk and version; None: no fit) over the vectors of ``model_id``."""
    collection = indexed_model.collection(model_id)
    if fit is None:
        return Space(collection)
    pk, version = fit
    return Space(f"{collection}:fit-{version}", pk, version)


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
