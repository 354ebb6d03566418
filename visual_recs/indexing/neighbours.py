"""Neighbour lists: each object's ``NEIGHBOURS`` nearest shown objects of its partition.

The lists are a materialised view of the index that pages read with one query. They are
kept up to date as vectors change, at a cost that grows with ``NEIGHBOURS`` and not with
the catalog (``repair_lists``):

- a changed object's own list comes from one index query;
- the lists it should now enter are found through the index: the objects nearest to it (of
  any visibility, since hidden products have lists too) whose list's last entry is farther
  than it. The search widens until it passes the widest list of the partition, so with an
  exact backend no such list is missed; an approximate backend stops at ``REVERSE_SEARCH_CAP``;
- lists that named a changed object are merged in place when what they keep still proves
  them complete, and otherwise recomputed from the index.

Every object's ``FeatureVector.list_radius`` (the distance of its list's last entry; infinite
while the list is short, so every new candidate enters it) is what makes "is it closer than
the last entry" an indexed query. A ready object without a radius has no list yet: that is
the mark the sweep repairs (``repair_unfinished``), e.g. after an index was refilled and the
rebuild of its lists stopped half-way.
Writes and repairs of one partition happen inside ``locked()``: one transaction holding a
lock per partition, so two workers never build lists from vectors that lack each other's,
and a failure rolls back the vectors and the lists together (the retry or the sweep then
finds the object still to do).

Every list written or dropped goes through ``_write_lists`` or ``_drop_lists``, which send
``lists_changed``: the one place a shop (or ``visual_recs.contrib.oscar``) copies lists into
a store of its own.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from django.db import transaction
from django.dispatch import Signal

from ..backends import get_extractor, get_index
from ..backends.base import BaseIndex, Hit, euclidean
from ..conf import app_settings
from ..models import FeatureVector, IndexStatus, SimilarItem
from ..registry import IndexedModel
from .space import current_space
from ..utils import chunked

#: Above this share of a partition changed at once, rebuilding all its lists is cheaper than repairs.
FULL_REBUILD_SHARE = 0.25
#: ...and at least this many objects (a single save never pays for counting its partition).
MIN_REBUILD = 32
#: The first reverse search asks for this many times ``NEIGHBOURS`` nearest objects.
REVERSE_SEARCH_START = 4
#: How far an approximate index's reverse search may widen (exact ones widen as far as needed).
REVERSE_SEARCH_CAP = 400
#: Sources per batch of a full rebuild (one index call and one write each).
REBUILD_BATCH = 256
SQL_CHUNK = 500  # ids per IN (...) clause: well under SQLite's variable limit
#: ``list_radius`` of a list shorter than ``NEIGHBOURS``: it holds every candidate, so any new one enters.
SHORT = math.inf

#: Sent with ``indexed_model`` and ``source_ids`` (strings) once the stored lists of those objects
#: were written or dropped (``sender``: the registered model class). Sent inside the transaction
#: that wrote them, under the partitions' locks: a receiver's writes commit or roll back with the
#: lists, and an exception fails the task, which retries (the lists are then repaired again).
#: Read the new lists with ``SimilarItem`` rows (``source_id``, ordered by ``distance``); a
#: source without rows has no list now.
lists_changed = Signal()


@dataclass
class _Source:
    """An object whose list may change: where it is, its vector, and its stored list."""

    object_id: str
    pk: int
    partition: str
    radius: float | None
    vector: np.ndarray | None = None
    old: list[Hit] | None = None
    row_pks: dict[str, int] = field(default_factory=dict)  # the stored list's rows, by target id


# --- locking ----------------------------------------------------------------------------


@contextmanager
def locked(indexed_model: IndexedModel, partitions: Iterable[str]) -> Iterator[None]:
    """A transaction in which no other process writes vectors to, or lists of, these partitions.

    On PostgreSQL each partition takes a transaction-level advisory lock (in a fixed order, so
    two workers cannot deadlock; re-entrant; released at commit or rollback). SQLite admits
    one writer at a time anyway.
    """
    with transaction.atomic():
        connection = transaction.get_connection()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for key in sorted({partition_lock_key(indexed_model, p) for p in partitions}):
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
        yield


def partition_lock(indexed_model: IndexedModel, partition: str):
    """``locked()`` for one partition."""
    return locked(indexed_model, [partition])


def partition_lock_key(indexed_model: IndexedModel, partition: str) -> int:
    """The 64-bit advisory lock key of one partition of one model."""
    name = f"visual_recs:{indexed_model.content_type.pk}:{partition}".encode()
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big", signed=True)


# --- repairs ----------------------------------------------------------------------------


def current_collection(indexed_model: IndexedModel) -> str:
    """The collection of this model's current search space (see ``space``)."""
    return current_space(indexed_model).collection


def ready_rows(indexed_model: IndexedModel):
    """The ``FeatureVector`` rows whose vectors belong in the current collection."""
    return FeatureVector.objects.filter(
        content_type=indexed_model.content_type, status=IndexStatus.READY, model_id=get_extractor().model_id
    )


def repair_lists(indexed_model: IndexedModel, changed_ids: Iterable[str]) -> int:
    """Bring every list that ``changed_ids`` can affect up to date; returns how many lists were written.

    Call it after the objects' ``FeatureVector`` rows and index entries were written. Changed
    objects are those added, re-extracted, moved, shown, hidden, failed, without photo or
    deleted. It runs in one transaction holding the lock of every partition they are in or
    whose lists name them, and leaves each repaired object with its ``list_radius``.
    """
    changed = {str(object_id) for object_id in changed_ids}
    if not changed:
        return 0
    partitions = partitions_of_sources_naming(indexed_model, changed)
    for chunk in chunked(changed, SQL_CHUNK):
        partitions.update(
            FeatureVector.objects.filter(content_type=indexed_model.content_type, object_id__in=chunk)
            .values_list("partition", flat=True)
            .distinct()
        )
    with locked(indexed_model, partitions):
        return _repair(indexed_model, changed)


def _repair(indexed_model: IndexedModel, changed: set[str]) -> int:
    index = get_index()
    collection = current_collection(indexed_model)
    k = app_settings.NEIGHBOURS
    content_type = indexed_model.content_type

    now: dict[str, FeatureVector] = {}
    for chunk in chunked(changed, SQL_CHUNK):
        for row in ready_rows(indexed_model).filter(object_id__in=chunk).only("pk", "object_id", "partition", "listed"):
            now[row.object_id] = row
    vectors = index.vectors(collection, now)
    now = {object_id: row for object_id, row in now.items() if object_id in vectors}

    # Objects that left the index keep no list.
    gone = changed - set(now)
    _drop_lists(indexed_model, gone)
    for chunk in chunked(gone, SQL_CHUNK):
        FeatureVector.objects.filter(content_type=content_type, object_id__in=chunk).update(list_radius=None)

    by_partition: dict[str, list[str]] = defaultdict(list)
    for object_id, row in now.items():
        by_partition[row.partition].append(object_id)
    rebuilt = set()
    for partition, object_ids in by_partition.items():
        if len(object_ids) >= MIN_REBUILD and len(object_ids) > FULL_REBUILD_SHARE * ready_rows(indexed_model).filter(
            partition=partition
        ).count():
            rebuild_partition(indexed_model, partition)
            rebuilt.add(partition)
    now = {object_id: row for object_id, row in now.items() if row.partition not in rebuilt}

    # Lists that may change: those naming a changed object, and those a shown changed object may enter.
    # (Read again now that the partitions are locked: repair_lists' look was only to choose the locks.)
    affected: set[str] = set()
    for chunk in chunked(changed, SQL_CHUNK):
        affected.update(
            SimilarItem.objects.filter(content_type=content_type, target_id__in=chunk).values_list("source_id", flat=True)
        )
    entering = {object_id: row for object_id, row in now.items() if row.listed}
    for partition in {row.partition for row in entering.values()}:
        affected |= _lists_to_enter(
            indexed_model, index, collection, partition,
            {object_id: vectors[object_id] for object_id, row in entering.items() if row.partition == partition},
        )
    affected -= changed

    sources = [
        source
        for source in _load_sources(indexed_model, index, collection, affected)
        if source.partition not in rebuilt
    ]
    new_lists: dict[str, list[Hit]] = {}
    recompute: list[_Source] = [
        _Source(object_id, row.pk, row.partition, None, vectors[object_id]) for object_id, row in now.items()
    ]
    for source in sources:
        merged = _merged(source, changed, now, vectors, k)
        if merged is None:
            recompute.append(source)
        elif merged != source.old:
            new_lists[source.object_id] = merged
    new_lists.update(_search_lists(index, collection, recompute, k))
    _write_lists(indexed_model, {s.object_id: s.pk for s in [*sources, *recompute]}, new_lists, sources)
    return len(new_lists)


def _lists_to_enter(
    indexed_model: IndexedModel, index: BaseIndex, collection: str, partition: str, entering: dict[str, np.ndarray]
) -> set[str]:
    """Objects of ``partition`` whose list the vectors ``entering`` may now belong in.

    Those whose list is short, and those nearer to an entering vector than their list's last
    entry. The search around each entering vector widens until it passes the widest list of
    the partition (or, for an approximate index, reaches ``REVERSE_SEARCH_CAP``).
    """
    ready = ready_rows(indexed_model).filter(partition=partition)
    found = set(ready.filter(list_radius=SHORT).values_list("object_id", flat=True))
    widest = ready.filter(list_radius__lt=SHORT).order_by("-list_radius").values_list("list_radius", flat=True).first()
    if widest is None:
        return found
    start = REVERSE_SEARCH_START * app_settings.NEIGHBOURS
    for object_id, vector in entering.items():
        size = start
        while True:
            hits = index.search(collection, partition, vector, size, exclude={object_id}, shown_only=False)
            exhausted = len(hits) < size
            if exhausted or hits[-1].distance > widest or (not index.exact and size >= REVERSE_SEARCH_CAP):
                break
            size = size * 4 if index.exact else min(size * 4, REVERSE_SEARCH_CAP)
        near = [hit for hit in hits if hit.distance <= widest]
        head, tail = near[:start], near[start:]
        distance = dict(near)
        # The nearest few are checked by id; beyond them only wide lists can qualify, an indexed range query.
        for chunk in chunked([hit.object_id for hit in head], SQL_CHUNK):
            for source_id, radius in ready.filter(object_id__in=chunk, list_radius__lt=SHORT).values_list(
                "object_id", "list_radius"
            ):
                if distance[source_id] <= radius:
                    found.add(source_id)
        if tail:
            for source_id, radius in ready.filter(list_radius__gte=tail[0].distance, list_radius__lt=SHORT).values_list(
                "object_id", "list_radius"
            ):
                if source_id in distance and distance[source_id] <= radius:
                    found.add(source_id)
    return found


def _load_sources(indexed_model: IndexedModel, index: BaseIndex, collection: str, object_ids: set[str]) -> list[_Source]:
    """The sources among ``object_ids`` that are in the index, with their vectors and stored lists."""
    sources: dict[str, _Source] = {}
    for chunk in chunked(object_ids, SQL_CHUNK):
        for pk, object_id, partition, radius in (
            ready_rows(indexed_model).filter(object_id__in=chunk).values_list("pk", "object_id", "partition", "list_radius")
        ):
            sources[object_id] = _Source(object_id, pk, partition, radius, old=[])
    vectors = index.vectors(collection, sources)
    sources = {object_id: source for object_id, source in sources.items() if object_id in vectors}
    for chunk in chunked(sources, SQL_CHUNK):
        rows = SimilarItem.objects.filter(content_type=indexed_model.content_type, source_id__in=chunk)
        for pk, source_id, target_id, distance in rows.values_list("pk", "source_id", "target_id", "distance"):
            sources[source_id].old.append(Hit(target_id, distance))
            sources[source_id].row_pks[target_id] = pk
    for object_id, source in sources.items():
        source.vector = vectors[object_id]
        source.old.sort(key=_order)
    return list(sources.values())


def _merged(
    source: _Source, changed: set[str], now: dict[str, FeatureVector], vectors: dict[str, np.ndarray], k: int
) -> list[Hit] | None:
    """The source's new list from its stored one and the changed vectors, or None when that cannot be proven.

    The stored list holds the ``k`` nearest of the old candidates, ordered by (distance, id).
    Dropping the changed objects from it and adding those now among the source's candidates
    gives the new list exactly when the stored list was short (it held every candidate), or
    when the merged list is full and its last entry still comes no later than the old last
    entry (every candidate not seen here comes after that one). A list never built (no
    radius) proves nothing.
    """
    old = source.old or []
    if source.radius is None or (source.radius != SHORT and not old):
        return None
    kept = [hit for hit in old if hit.object_id not in changed]
    joining = [
        object_id
        for object_id, row in now.items()
        if row.listed and row.partition == source.partition and object_id != source.object_id
    ]
    if joining:
        distances = euclidean(np.stack([vectors[object_id] for object_id in joining]), source.vector)
        kept += [Hit(object_id, float(distance)) for object_id, distance in zip(joining, distances)]
    merged = sorted(kept, key=_order)[:k]
    if source.radius == SHORT:
        return merged
    if len(merged) == k and _order(merged[-1]) <= _order(old[-1]):
        return merged
    return None


def _order(hit: Hit) -> tuple[float, str]:
    return (hit.distance, hit.object_id)


def _search_lists(index: BaseIndex, collection: str, sources: list[_Source], k: int) -> dict[str, list[Hit]]:
    """The lists of ``sources`` computed from the index, one call per partition."""
    lists: dict[str, list[Hit]] = {}
    by_partition: dict[str, list[_Source]] = defaultdict(list)
    for source in sources:
        by_partition[source.partition].append(source)
    for partition, group in by_partition.items():
        found = index.search_many(
            collection,
            partition,
            np.stack([source.vector for source in group]),
            k,
            exclude=[{source.object_id} for source in group],
        )
        for source, hits in zip(group, found):
            lists[source.object_id] = sorted(hits, key=_order)
    return lists


def _write_lists(
    indexed_model: IndexedModel,
    pks: dict[str, int],
    lists: dict[str, list[Hit]],
    loaded: Iterable[_Source] = (),
) -> None:
    """Store the new ``lists`` and their sources' radius (``pks``: the sources' row keys).

    A list whose stored rows were ``loaded`` changes only the rows that differ: a product
    entering it is one row in and one out. Other lists are replaced whole.
    """
    if not lists:
        return
    content_type = indexed_model.content_type
    k = app_settings.NEIGHBOURS
    known = {source.object_id: source for source in loaded}
    _delete_lists(indexed_model, [source_id for source_id in lists if source_id not in known])
    leaving: list[int] = []
    rows = []
    for source_id, hits in lists.items():
        source = known.get(source_id)
        old = set(source.old) if source else set()
        new = set(hits)
        leaving += [source.row_pks[hit.object_id] for hit in old - new]
        rows += [
            SimilarItem(content_type=content_type, source_id=source_id, target_id=hit.object_id, distance=hit.distance)
            for hit in new - old
        ]
    for chunk in chunked(leaving, SQL_CHUNK):
        SimilarItem.objects.filter(pk__in=chunk).delete()
    SimilarItem.objects.bulk_create(rows, batch_size=1000)
    radii = [
        FeatureVector(pk=pks[source_id], list_radius=hits[-1].distance if len(hits) >= k else SHORT)
        for source_id, hits in lists.items()
    ]
    FeatureVector.objects.bulk_update(radii, ["list_radius"], batch_size=SQL_CHUNK)
    _send_lists_changed(indexed_model, list(lists))


def _drop_lists(indexed_model: IndexedModel, source_ids: Iterable[str]) -> None:
    """Delete the stored lists of ``source_ids`` (objects that left the index) and tell ``lists_changed``."""
    source_ids = list(source_ids)
    _delete_lists(indexed_model, source_ids)
    _send_lists_changed(indexed_model, source_ids)


def _send_lists_changed(indexed_model: IndexedModel, source_ids: list[str]) -> None:
    if source_ids:
        lists_changed.send(sender=indexed_model.model, indexed_model=indexed_model, source_ids=source_ids)


def _delete_lists(indexed_model: IndexedModel, source_ids: Iterable[str]) -> None:
    for chunk in chunked(source_ids, SQL_CHUNK):
        SimilarItem.objects.filter(content_type=indexed_model.content_type, source_id__in=chunk).delete()


# --- full rebuilds ----------------------------------------------------------------------


def rebuild_partition(indexed_model: IndexedModel, partition: str, *, collection: str | None = None) -> int:
    """Recompute every list of one partition from the index; returns how many lists were written.

    For a new extractor, a new ``NEIGHBOURS``, a new index, or a new fit (whose ``collection``
    is built before it becomes current; default: the current one). Each batch of lists is computed
    and written under the partition's lock, in its own transaction (within the caller's, if
    there is one), so saves may go on between batches and no batch sees half of another.
    """
    index = get_index()
    collection = collection or current_collection(indexed_model)
    k = app_settings.NEIGHBOURS
    content_type = indexed_model.content_type
    with partition_lock(indexed_model, partition):
        # Lists of objects of this partition that are no longer in the collection.
        stale = FeatureVector.objects.filter(content_type=content_type, partition=partition).exclude(
            pk__in=ready_rows(indexed_model).filter(partition=partition).values("pk")
        )
        stale_ids = list(stale.values_list("object_id", flat=True))
        _drop_lists(indexed_model, stale_ids)
        stale.exclude(list_radius=None).update(list_radius=None)
    written = 0
    ids = list(ready_rows(indexed_model).filter(partition=partition).order_by("pk").values_list("pk", "object_id"))
    for batch in chunked(ids, REBUILD_BATCH):
        with partition_lock(indexed_model, partition):
            pks = dict((object_id, pk) for pk, object_id in batch)
            vectors = index.vectors(collection, pks)
            sources = [
                _Source(object_id, pk, partition, None, vectors[object_id])
                for object_id, pk in pks.items()
                if object_id in vectors
            ]
            lists = _search_lists(index, collection, sources, k)
            _write_lists(indexed_model, pks, lists)
            written += len(lists)
    return written


def partitions_of_sources_naming(indexed_model: IndexedModel, object_ids: set[str]) -> set[str]:
    """The partitions of the objects whose lists name any of ``object_ids``."""
    content_type = indexed_model.content_type
    sources: set[str] = set()
    for chunk in chunked(object_ids, SQL_CHUNK):
        sources.update(
            SimilarItem.objects.filter(content_type=content_type, target_id__in=chunk).values_list("source_id", flat=True)
        )
    partitions: set[str] = set()
    for chunk in chunked(sources, SQL_CHUNK):
        partitions.update(
            FeatureVector.objects.filter(content_type=content_type, object_id__in=chunk).values_list("partition", flat=True)
        )
    return partitions


def repair_unfinished(indexed_model: IndexedModel, *, batch_size: int = 256) -> int:
    """Repair around every ready object that has no list yet (no ``list_radius``); returns how many.

    Each batch is repaired as if its objects had just been indexed: their own lists, and the
    lists they belong in. The sweep runs this.
    """
    repaired, after = 0, None
    unfinished = ready_rows(indexed_model).filter(list_radius=None).order_by("pk")
    while True:
        page = unfinished if after is None else unfinished.filter(pk__gt=after)
        batch = list(page.values_list("pk", "object_id")[:batch_size])
        if not batch:
            return repaired
        repair_lists(indexed_model, [object_id for _, object_id in batch])
        repaired += len(batch)
        after = batch[-1][0]
