"""Nearest-neighbour indexes."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import pairwise_distances_chunked

from .base import BaseIndex


class ExactIndex(BaseIndex):
    """Exact Euclidean search: blocked matrix products in scikit-learn, no Python loop per pair.

    ``working_memory`` (MiB) bounds the distance block held at once, whatever the catalog size.
    """

    def __init__(self, *, working_memory: int = 64) -> None:
        self.working_memory = working_memory

    def kneighbors(self, queries, candidates, k, *, exclude=None):
        n_queries, n_candidates = len(queries), len(candidates)
        if n_queries == 0 or n_candidates == 0 or k <= 0:
            return [[] for _ in range(n_queries)]
        if exclude is None:
            exclude = np.full(n_queries, -1)
        # One extra column, so the excluded row can be dropped and k still remain.
        kk = min(k + 1, n_candidates)

        def nearest(block: np.ndarray, start: int) -> list[list[tuple[int, float]]]:
            rows = np.arange(block.shape[0])
            excluded = exclude[start : start + block.shape[0]]
            has_excluded = excluded >= 0
            block[rows[has_excluded], excluded[has_excluded]] = np.inf
            part = np.argpartition(block, kk - 1, axis=1)[:, :kk]
            part_dist = np.take_along_axis(block, part, axis=1)
            order = np.argsort(part_dist, axis=1, kind="stable")
            part, part_dist = np.take_along_axis(part, order, axis=1), np.take_along_axis(part_dist, order, axis=1)
            return [
                [(int(j), float(d)) for j, d in zip(idx, dist) if np.isfinite(d)][:k]
                for idx, dist in zip(part, part_dist)
            ]

        results: list[list[tuple[int, float]]] = []
        for chunk in pairwise_distances_chunked(
            queries, candidates, reduce_func=nearest, metric="euclidean", working_memory=self.working_memory
        ):
            results.extend(chunk)
        return results
