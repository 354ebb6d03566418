"""The one domain service: photos to vectors, vectors to neighbour lists, lists to pages.

Tasks, signals, the admin, the management commands, the API and the template tag are thin
shells over the names exported here. A module per job, so the read path a web process runs
and the write path a worker runs are visibly apart:

- ``pipeline``: photos to vectors (``mark_changed``, ``index``, ``index_many``, ``index_vectors``,
  ``unindex``, ``rebuild_index``, ``reconcile``);
- ``neighbours``: the stored neighbour lists, repaired as vectors change (``rebuild_partition``;
  ``lists_changed`` tells receivers which lists were written);
- ``reading``: what a page shows (``recommendations``, ``similar_to``, ``index_states``);
- ``search``: search by photo (``search_by_image``, ``search_by_vector``);
- ``status``: counts for staff and what the sweep must do (``index_overview``, ``objects_needing_work``);
- ``space`` and ``fitting``: the space the index searches, learned from the catalog's labels (``fit``).
"""

from __future__ import annotations

from .fitting import FitSummary, current_fit, fit
from .neighbours import (
    current_collection,
    lists_changed,
    locked,
    partition_lock,
    partition_lock_key,
    rebuild_partition,
    repair_lists,
    repair_unfinished,
)
from .pipeline import (
    Reconciled,
    Summary,
    index,
    index_many,
    index_vectors,
    mark_changed,
    photo_sha256,
    rebuild_index,
    reconcile,
    unindex,
)
from .reading import (
    NO_IMAGE,
    SOURCES,
    STATUSES,
    IndexState,
    Recommendations,
    Similar,
    index_states,
    recommendations,
    similar_to,
)
from .search import refuse_oversized_upload, search_by_image, search_by_vector
from .space import Space, current_space, distance_parts
from .status import index_overview, objects_needing_work

__all__ = [
    "NO_IMAGE",
    "STATUSES",
    "IndexState",
    "FitSummary",
    "Reconciled",
    "Recommendations",
    "Similar",
    "Space",
    "Summary",
    "current_collection",
    "current_fit",
    "current_space",
    "distance_parts",
    "fit",
    "index",
    "index_many",
    "index_overview",
    "index_states",
    "index_vectors",
    "lists_changed",
    "locked",
    "mark_changed",
    "objects_needing_work",
    "partition_lock",
    "partition_lock_key",
    "photo_sha256",
    "rebuild_index",
    "rebuild_partition",
    "recommendations",
    "reconcile",
    "refuse_oversized_upload",
    "repair_lists",
    "repair_unfinished",
    "search_by_image",
    "search_by_vector",
    "similar_to",
    "SOURCES",
    "unindex",
]
