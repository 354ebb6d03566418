"""Neighbour lists as stored, and as they should be: brute force over given vectors.

The tests of list repairs and ``bench/faults.py`` compare the two.
"""

from __future__ import annotations

import numpy as np

from visual_recs.backends.base import euclidean
from visual_recs.models import SimilarItem


def stored_lists() -> dict[str, list[str]]:
    """Every stored list, by source id: target ids nearest first (ties by id)."""
    lists: dict[str, list[str]] = {}
    for source, target in SimilarItem.objects.order_by("source_id", "distance", "target_id").values_list("source_id", "target_id"):
        lists.setdefault(source, []).append(target)
    return lists


def true_lists(objects: dict[str, tuple[str, bool, np.ndarray]], k: int) -> dict[str, list[str]]:
    """Each object's ``k`` nearest shown objects of its partition, ordered by (distance, id).

    ``objects``: id -> (partition, shown, vector). An object with no candidate has no list.
    Distances come from the index's own formula, so equal vectors tie exactly.
    """
    lists = {}
    for source_id, (partition, _, vector) in objects.items():
        candidates = [
            object_id
            for object_id, (other_partition, shown, _) in objects.items()
            if shown and other_partition == partition and object_id != source_id
        ]
        if not candidates:
            continue
        distances = euclidean(np.stack([objects[c][2] for c in candidates]), vector)
        lists[source_id] = [object_id for _, object_id in sorted(zip(distances.tolist(), candidates))[:k]]
    return lists
