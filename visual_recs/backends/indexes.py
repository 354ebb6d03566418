"""``ExactIndex``: the embedded default index backend, exact search over vectors kept in the shop's database.

Each vector is an ``ExactIndexEntry`` row (little-endian float32 bytes) in the shop's own
database, SQLite or PostgreSQL; nothing else needs to run. A process that searches holds the
partitions it searches in memory, as one float32 matrix each, and keeps them current from a
change log (``ExactIndexChange``) with one indexed query per search: a partition is read in
full once per process, never per request or per save.

When it is the right choice: memory is 8 KB per 2048-d vector in every process that searches
(a 100,000-product partition is 800 MB in each worker), and a query is one pass over its
partition's matrix. Measured with random 2048-d vectors in one partition, k=20, on 2 cores
of an AMD EPYC (SQLite): 10,000 vectors, 8 ms a query (2.4 ms each in a ``search_many`` of
30) and 0.3 s to load the partition once; 100,000 vectors, 28 ms (10.6 ms) and 2.8 s.
So it is the right choice up to some tens of thousands of products per partition, and
workable up to about 100,000 on one machine with few worker processes. Switch to
``visual_recs.backends.pgvector.PgvectorIndex`` beyond that, when several machines or many
worker processes search (each would hold its own copy), or when a worker's memory is
tight: its HNSW index answers in milliseconds at any size and holds nothing per process,
at the price of being approximate (lists are then no longer equal to a brute-force rebuild).
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from django.db import connections, router, transaction
from django.db.models import Max
from django.utils import timezone

from ..models import ExactIndexChange, ExactIndexEntry
from .base import BaseIndex, Entry, Hit, euclidean

# Ids per ``IN (...)`` list: below SQLite's oldest limit on query parameters (999).
_IDS_PER_QUERY = 900
# Rows fetched per round trip when streaming entries (2,000 x 8 KB = 16 MB at 2048-d).
_ROWS_PER_FETCH = 2000
_EPS32 = float(np.finfo(np.float32).eps)


def _to_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _from_bytes(data: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Partition:
    """The in-memory copy of one (collection, partition): a matrix with spare rows, and tombstones.

    ``last_change`` is the id of the last change-log row applied; ``checked_at`` (monotonic
    seconds) when the log was last read, i.e. the copy holds every change committed before it.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.loaded = False
        self.last_change = 0
        self.checked_at = 0.0
        self.reset(0, 0)

    def reset(self, dims: int, capacity: int) -> None:
        self.dims = dims
        self.size = 0
        self.dead = 0
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}
        self.matrix = np.empty((capacity, dims), dtype=np.float32)
        self.sq_norms = np.empty(capacity, dtype=np.float32)
        self.shown = np.zeros(capacity, dtype=bool)
        self.live = np.zeros(capacity, dtype=bool)
        # An upper bound of the rows' norms (it never shrinks until a compaction): bounds rounding errors.
        self.max_norm = 0.0

    def _grow(self, needed: int) -> None:
        capacity = max(needed, int(len(self.matrix) * 1.5) + 16)
        matrix = np.empty((capacity, self.dims), dtype=np.float32)
        matrix[: self.size] = self.matrix[: self.size]
        self.matrix = matrix
        for name in ("sq_norms", "shown", "live"):
            old = getattr(self, name)
            new = np.zeros(capacity, dtype=old.dtype)
            new[: self.size] = old[: self.size]
            setattr(self, name, new)

    def put(self, object_id: str, shown: bool, vector: np.ndarray) -> None:
        if self.size == 0 and self.dims != len(vector):
            self.reset(len(vector), len(self.matrix))
        row = self.row_of.get(object_id)
        if row is None:
            if self.size == len(self.matrix):
                self._grow(self.size + 1)
            row = self.size
            self.size += 1
            self.ids.append(object_id)
            self.row_of[object_id] = row
        self.matrix[row] = vector
        sq_norm = float(np.dot(vector.astype(np.float64), vector.astype(np.float64)))
        self.sq_norms[row] = sq_norm
        self.max_norm = max(self.max_norm, sq_norm**0.5)
        self.shown[row] = shown
        self.live[row] = True

    def append(self, object_ids: list[str], shown: list[bool], matrix: np.ndarray) -> None:
        """Add rows for ids not held yet, in one step (loading)."""
        if self.size == 0 and self.dims != matrix.shape[1]:
            self.reset(matrix.shape[1], len(self.matrix))
        start, end = self.size, self.size + len(object_ids)
        if end > len(self.matrix):
            self._grow(end)
        self.matrix[start:end] = matrix
        sq_norms = np.einsum("ij,ij->i", matrix.astype(np.float64), matrix.astype(np.float64))
        self.sq_norms[start:end] = sq_norms
        self.max_norm = max(self.max_norm, float(np.sqrt(sq_norms.max())))
        self.shown[start:end] = shown
        self.live[start:end] = True
        self.ids.extend(object_ids)
        self.row_of.update((object_id, row) for row, object_id in enumerate(object_ids, start))
        self.size = end

    def drop(self, object_id: str) -> None:
        row = self.row_of.pop(object_id, None)
        if row is not None:
            self.live[row] = False
            self.shown[row] = False
            self.dead += 1

    def compact_if_sparse(self) -> None:
        """Squeeze out removed rows once they are a quarter of the matrix."""
        if self.dead <= max(64, self.size // 4):
            return
        keep = np.flatnonzero(self.live[: self.size])
        self.ids = [self.ids[row] for row in keep]
        self.row_of = {object_id: row for row, object_id in enumerate(self.ids)}
        capacity = len(keep) + len(keep) // 4 + 16
        for name in ("matrix", "sq_norms", "shown", "live"):
            old = getattr(self, name)
            new = np.zeros((capacity,) + old.shape[1:], dtype=old.dtype)
            new[: len(keep)] = old[keep]
            setattr(self, name, new)
        self.size, self.dead = len(keep), 0
        self.max_norm = float(np.sqrt(self.sq_norms[: self.size].max())) if self.size else 0.0


class _Segment:
    """Rows a search scans: a matrix, their ids, and which rows may be answers."""

    def __init__(self, matrix, sq_norms, ids, eligible, row_of, max_norm):
        self.matrix, self.sq_norms, self.ids, self.eligible, self.row_of = matrix, sq_norms, ids, eligible, row_of
        self.max_norm = max_norm


class _PendingWrites:
    """Partitions this thread wrote in a transaction that has not committed yet.

    Called by ``transaction.on_commit``; a rolled-back transaction (or savepoint) discards that
    callback, which is how a rollback is noticed (see ``ExactIndex._pending_partitions``).
    """

    def __init__(self, alias: str, keys: set[tuple[str, str]]) -> None:
        self.alias, self.keys, self.committed = alias, keys, False

    def __call__(self) -> None:
        self.committed = True

    def rolled_back(self) -> bool:
        return not self.committed and not any(func is self for _, func, _ in connections[self.alias].run_on_commit)


class ExactIndex(BaseIndex):
    """Exact Euclidean nearest neighbours over vectors stored in ``ExactIndexEntry`` rows.

    Options (keyword-only, in ``VISUAL_RECS["INDEX"]["OPTIONS"]``):

    ``working_memory`` (MiB, default 64)
        Bound of the distance block a search holds at once, whatever the partition size; with
        a smaller bound a search takes more, smaller steps and gives the same answers.
    ``change_retention`` (``datetime.timedelta`` or seconds, default one day)
        How long change-log rows are kept: ``prune_changes`` refuses to delete younger ones. A
        cached partition whose log was last read more than half this long ago is reloaded in
        full rather than brought up to date from a log that may have been pruned meanwhile.
        So a transaction that writes to the index must last less than half the retention,
        and the clocks of the processes agree to well within it.

    How processes stay current. Every write appends one ``ExactIndexChange`` row per object
    per partition it touched (a move is logged in the old and the new partition). A process
    caches each partition it searches, with the id of the last change it applied. The first
    search reads the partition's largest change id first, then its entries, so a change
    committed in between is applied again later rather than missed; every later search runs
    one indexed query for the partition's changes past that id and, when there are some,
    one query for those objects' current rows. This needs change ids to grow in commit order
    within a partition, which holds because callers serialise writes to a partition: the
    caller holds a lock on every partition a write touches (for a move, the old and the new
    one; for ``clear``, all of them) until its transaction commits. When more changes are
    waiting than a quarter of the partition, the partition is reloaded instead.

    Transactions. Writes join the caller's transaction (``transaction.atomic`` nests as a
    savepoint). Until it commits, the shared cache never takes in its writes, so no other
    thread sees them and a rollback leaves nothing behind; the writing thread's own searches
    see them through a per-search overlay of the changed rows (or, after a large batch, a
    copy of the partition loaded inside the transaction and kept as the cache on commit).

    Threads share the cache; a lock per partition serialises its refresh and searches.
    Memory is the partitions' matrices (8 KB per 2048-d vector, with up to 50% spare rows
    for appends) plus the bounded working blocks.
    """

    exact = True

    def __init__(self, *, working_memory: float = 64, change_retention: datetime.timedelta | float = 86400) -> None:
        if working_memory <= 0:
            raise ValueError("working_memory is in MiB and must be positive.")
        if not isinstance(change_retention, datetime.timedelta):
            change_retention = datetime.timedelta(seconds=change_retention)
        if change_retention <= datetime.timedelta(0):
            raise ValueError("change_retention must be positive.")
        self.working_memory = working_memory
        self.change_retention = change_retention
        self._partitions: dict[tuple[str, str], _Partition] = {}
        self._partitions_lock = threading.Lock()
        self._local = threading.local()

    # Writes -------------------------------------------------------------------------------

    def add(self, collection: str, entries: Sequence[Entry]) -> None:
        latest = {entry.object_id: entry for entry in entries}  # the last entry of an id wins
        if not latest:
            return
        alias = self._alias()
        stored = ExactIndexEntry.objects.using(alias).filter(collection=collection)
        existing = stored.values_list("vector", flat=True).first()
        matrix = self.check_entries(list(latest.values()), None if existing is None else len(existing) // 4)

        rows = [
            ExactIndexEntry(
                collection=collection,
                object_id=str(entry.object_id),
                partition=entry.partition,
                shown=bool(entry.shown),
                vector=_to_bytes(vector),
            )
            for entry, vector in zip(latest.values(), matrix)
        ]
        with transaction.atomic(using=alias):
            before = self._partitions_of(alias, collection, [row.object_id for row in rows])
            ExactIndexEntry.objects.using(alias).bulk_create(
                rows,
                batch_size=500,
                update_conflicts=True,
                unique_fields=["collection", "object_id"],
                update_fields=["partition", "shown", "vector"],
            )
            changes = {(row.partition, row.object_id) for row in rows}
            changes.update((partition, object_id) for object_id, partition in before.items())
            self._log(alias, collection, changes)

    def remove(self, collection: str, object_ids: Iterable[str]) -> None:
        ids = list(dict.fromkeys(str(object_id) for object_id in object_ids))
        if not ids:
            return
        alias = self._alias()
        with transaction.atomic(using=alias):
            before = self._partitions_of(alias, collection, ids)
            for chunk in _chunks(list(before), _IDS_PER_QUERY):
                ExactIndexEntry.objects.using(alias).filter(collection=collection, object_id__in=chunk).delete()
            self._log(alias, collection, {(partition, object_id) for object_id, partition in before.items()})

    def clear(self, collection: str) -> None:
        alias = self._alias()
        with transaction.atomic(using=alias):
            stored = ExactIndexEntry.objects.using(alias).filter(collection=collection)
            # One change per object, so every process notices (a big clear makes them reload).
            changes = {(partition, object_id) for object_id, partition in stored.values_list("object_id", "partition")}
            stored.delete()
            self._log(alias, collection, changes)
        with self._partitions_lock:
            for key in [key for key in self._partitions if key[0] == collection]:
                del self._partitions[key]

    def prune_changes(self) -> int:
        """Delete change-log rows older than ``change_retention``; returns how many.

        Never younger ones: caches rely on the log holding that much (see the class docstring).
        """
        cutoff = timezone.now() - self.change_retention
        deleted, _ = ExactIndexChange.objects.using(self._alias()).filter(created_at__lt=cutoff).delete()
        return deleted

    def _alias(self) -> str:
        # Reads use the writes' database too: a replica's log could lag behind its entries' reader.
        return router.db_for_write(ExactIndexEntry)

    def _partitions_of(self, alias: str, collection: str, object_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(object_ids, _IDS_PER_QUERY):
            found.update(
                ExactIndexEntry.objects.using(alias)
                .filter(collection=collection, object_id__in=chunk)
                .values_list("object_id", "partition")
            )
        return found

    def _log(self, alias: str, collection: str, changes: set[tuple[str, str]]) -> None:
        if not changes:
            return
        ExactIndexChange.objects.using(alias).bulk_create(
            [
                ExactIndexChange(collection=collection, partition=partition, object_id=object_id)
                for partition, object_id in sorted(changes)
            ],
            batch_size=500,
        )
        self._pending_partitions()  # settle earlier transactions first: promote what they loaded
        token = _PendingWrites(alias, {(collection, partition) for partition, _ in changes})
        self._pending().append(token)
        transaction.on_commit(token, using=alias)

    # Reads --------------------------------------------------------------------------------

    def search_many(
        self,
        collection: str,
        partition: str | None,
        vectors: np.ndarray,
        k: int,
        *,
        exclude: Sequence[Collection[str]] | None = None,
        shown_only: bool = True,
    ) -> list[list[Hit]]:
        if partition is None:
            # Each partition's k nearest, merged: the collection's k nearest.
            per_partition = [
                self.search_many(collection, name, vectors, k, exclude=exclude, shown_only=shown_only)
                for name in sorted(self.partitions(collection))
            ]
            return [
                sorted((hit for found in rows for hit in found), key=lambda hit: (hit.distance, hit.object_id))[:k]
                for rows in zip(*per_partition)
            ] if per_partition else [[] for _ in range(len(vectors))]
        queries, exclude = self.check_queries(vectors, exclude, None)
        if k <= 0 or not len(queries):
            return [[] for _ in range(len(queries))]
        with self._segments(collection, partition, shown_only) as segments:
            dims = next((segment.matrix.shape[1] for segment in segments if len(segment.ids)), None)
            if dims is None:
                return [[] for _ in range(len(queries))]
            queries = self.check_vectors(queries, dims)
            return self._nearest(segments, queries, k, exclude)

    def vectors(self, collection: str, object_ids: Iterable[str]) -> dict[str, np.ndarray]:
        alias = self._alias()
        found: dict[str, np.ndarray] = {}
        for chunk in _chunks(list(dict.fromkeys(str(object_id) for object_id in object_ids)), _IDS_PER_QUERY):
            rows = ExactIndexEntry.objects.using(alias).filter(collection=collection, object_id__in=chunk)
            pairs = rows.values_list("object_id", "vector")
            found.update((object_id, _from_bytes(vector)) for object_id, vector in pairs)
        return found

    def entries(self, collection: str, partition: str | None = None) -> Iterator[Entry]:
        rows = ExactIndexEntry.objects.using(self._alias()).filter(collection=collection)
        if partition is not None:
            rows = rows.filter(partition=partition)
        fields = ("object_id", "partition", "shown", "vector")
        for object_id, entry_partition, shown, vector in rows.order_by("pk").values_list(*fields).iterator(
            chunk_size=_ROWS_PER_FETCH
        ):
            yield Entry(object_id=object_id, partition=entry_partition, shown=shown, vector=_from_bytes(vector))

    def partitions(self, collection: str) -> set[str]:
        rows = ExactIndexEntry.objects.using(self._alias()).filter(collection=collection)
        return set(rows.order_by().values_list("partition", flat=True).distinct())

    # The cache ----------------------------------------------------------------------------

    def _pending(self) -> list[_PendingWrites]:
        if not hasattr(self._local, "pending"):
            self._local.pending = []
            # Partitions loaded inside a writing transaction: this thread's until it commits.
            self._local.private = {}
        return self._local.pending

    def _pending_partitions(self) -> set[tuple[str, str]]:
        """The partitions with uncommitted writes of this thread; settles committed and rolled-back ones."""
        pending = self._pending()
        if any(token.rolled_back() for token in pending):
            # The private copies may hold rolled-back rows: drop them (the shared cache never took any).
            self._local.private.clear()
        pending[:] = [token for token in pending if not token.committed and not token.rolled_back()]
        if not pending and self._local.private:
            with self._partitions_lock:
                for key, state in self._local.private.items():
                    self._partitions.setdefault(key, state)
            self._local.private.clear()
        return {key for token in pending for key in token.keys}

    @contextmanager
    def _segments(self, collection: str, partition: str, shown_only: bool) -> Iterator[list[_Segment]]:
        """The rows a search of this thread should see, current as of now; locked while in use."""
        key = (collection, partition)
        alias = self._alias()
        if key not in self._pending_partitions():
            with self._partitions_lock:
                state = self._partitions.setdefault(key, _Partition())
            with state.lock:
                self._catch_up(alias, key, state)
                yield [self._segment(state, shown_only)]
            return

        private = self._local.private.get(key)
        if private is not None:
            self._catch_up(alias, key, private)
            yield [self._segment(private, shown_only)]
            return
        with self._partitions_lock:
            state = self._partitions.get(key)
        if state is not None:
            with state.lock:
                overlay = self._overlay(alias, key, state) if state.loaded and not self._stale(state) else None
                if overlay is not None:
                    changed, rows = overlay
                    yield [self._segment(state, shown_only, hide=changed), self._overlay_segment(rows, shown_only)]
                    return
        private = self._local.private[key] = _Partition()
        self._catch_up(alias, key, private)
        yield [self._segment(private, shown_only)]

    def _stale(self, state: _Partition) -> bool:
        return time.monotonic() - state.checked_at > self.change_retention.total_seconds() / 2

    def _changes(self, alias: str, key: tuple[str, str], state: _Partition) -> tuple[int, list[str]] | None:
        """The last change id and the objects changed after ``state.last_change``; None when too many."""
        limit = max(1000, (state.size - state.dead) // 4)
        changes = list(
            ExactIndexChange.objects.using(alias)
            .filter(collection=key[0], partition=key[1], id__gt=state.last_change)
            .order_by("id")
            .values_list("id", "object_id")[: limit + 1]
        )
        if len(changes) > limit:
            return None
        last_change = changes[-1][0] if changes else state.last_change
        return last_change, list(dict.fromkeys(object_id for _, object_id in changes))

    def _current_rows(self, alias: str, collection: str, object_ids: Sequence[str]) -> dict[str, tuple]:
        found: dict[str, tuple] = {}
        fields = ("object_id", "partition", "shown", "vector")
        for chunk in _chunks(object_ids, _IDS_PER_QUERY):
            rows = ExactIndexEntry.objects.using(alias).filter(collection=collection, object_id__in=chunk)
            found.update((row[0], row[1:]) for row in rows.values_list(*fields))
        return found

    def _catch_up(self, alias: str, key: tuple[str, str], state: _Partition) -> None:
        """Apply the log to ``state``, or load it in full (first use, stale, or too far behind)."""
        if state.loaded and not self._stale(state):
            checked_at = time.monotonic()
            changes = self._changes(alias, key, state)
            if changes is not None:
                last_change, changed = changes
                rows = self._current_rows(alias, key[0], changed) if changed else {}
                for object_id in changed:
                    row = rows.get(object_id)
                    if row is not None and row[0] == key[1]:
                        state.put(object_id, row[1], _from_bytes(row[2]))
                    else:
                        state.drop(object_id)  # removed, or moved to another partition
                state.compact_if_sparse()
                state.last_change, state.checked_at = last_change, checked_at
                return
        self._load(alias, key, state)

    def _load(self, alias: str, key: tuple[str, str], state: _Partition) -> None:
        checked_at = time.monotonic()
        # The log's position first: a change committed while the entries stream is applied again later.
        last_change = (
            ExactIndexChange.objects.using(alias)
            .filter(collection=key[0], partition=key[1])
            .aggregate(last=Max("id"))["last"]
            or 0
        )
        rows = ExactIndexEntry.objects.using(alias).filter(collection=key[0], partition=key[1])
        count = rows.count()
        state.loaded = False
        state.reset(0, 0)
        batch: list[tuple] = []
        stream = rows.order_by().values_list("object_id", "shown", "vector").iterator(chunk_size=_ROWS_PER_FETCH)
        for row in stream:
            batch.append(row)
            if len(batch) == _ROWS_PER_FETCH:
                self._append(state, batch, count)
                batch = []
        self._append(state, batch, count)
        state.last_change, state.checked_at, state.loaded = last_change, checked_at, True

    @staticmethod
    def _append(state: _Partition, batch: list[tuple], capacity: int) -> None:
        if not batch:
            return
        matrix = np.stack([_from_bytes(vector) for _, _, vector in batch])
        if state.size == 0:
            state.reset(matrix.shape[1], capacity + capacity // 8 + 16)
        state.append([row[0] for row in batch], [row[1] for row in batch], matrix)

    def _overlay(self, alias: str, key: tuple[str, str], state: _Partition) -> tuple[set[str], dict] | None:
        """This transaction's view of the rows changed since ``state`` was current, without applying them."""
        changes = self._changes(alias, key, state)
        if changes is None:
            return None
        changed = changes[1]
        rows = self._current_rows(alias, key[0], changed) if changed else {}
        return set(changed), {object_id: row for object_id, row in rows.items() if row[0] == key[1]}

    @staticmethod
    def _segment(state: _Partition, shown_only: bool, hide: set[str] = frozenset()) -> _Segment:
        eligible = (state.shown if shown_only else state.live)[: state.size].copy()
        for object_id in hide:
            row = state.row_of.get(object_id)
            if row is not None:
                eligible[row] = False
        return _Segment(
            state.matrix[: state.size], state.sq_norms[: state.size], state.ids, eligible, state.row_of, state.max_norm
        )

    @staticmethod
    def _overlay_segment(rows: dict[str, tuple], shown_only: bool) -> _Segment:
        ids = list(rows)
        if not ids:
            return _Segment(np.empty((0, 0), np.float32), np.empty(0, np.float32), [], np.empty(0, bool), {}, 0.0)
        matrix = np.stack([_from_bytes(rows[object_id][2]) for object_id in ids])
        sq_norms = np.einsum("ij,ij->i", matrix.astype(np.float64), matrix.astype(np.float64))
        eligible = np.array([bool(rows[object_id][1]) or not shown_only for object_id in ids], dtype=bool)
        return _Segment(
            matrix,
            sq_norms.astype(np.float32),
            ids,
            eligible,
            {object_id: row for row, object_id in enumerate(ids)},
            float(np.sqrt(sq_norms.max())),
        )

    # The search ---------------------------------------------------------------------------

    def _nearest(
        self, segments: list[_Segment], queries: np.ndarray, k: int, exclude: Sequence[Collection[str]]
    ) -> list[list[Hit]]:
        """Exact k nearest: a float32 pass keeps a shortlist, ``euclidean`` (float64) orders it, so an
        answer does not depend on the other queries, rows or blocks of the call."""
        segments = [segment for segment in segments if len(segment.ids)]
        dims = queries.shape[1]
        max_norm = max(segment.max_norm for segment in segments)
        q_norms = np.linalg.norm(queries.astype(np.float64), axis=1)
        # Bound of the float32 error of one squared distance: the dot product (d roundings of
        # |x||q|) and the two squared norms. Twice it separates "maybe in the top k" from "not".
        error = (dims + 4) * _EPS32 * (2 * max_norm * q_norms + max_norm**2 + q_norms**2)
        keep = k + max(k, 8)
        best, thresholds = self._coarse_pass(segments, queries, exclude, keep=keep, k=k, error=error)
        results = []
        for index, (query, (distances, candidates)) in enumerate(zip(queries, best)):
            finite = np.isfinite(distances)
            distances, candidates = distances[finite], candidates[finite]
            if len(distances) >= keep and distances.max() <= thresholds[index]:
                # More near-ties than the shortlist holds: gather every row under the threshold.
                candidates = self._rows_within(segments, query, exclude[index], thresholds[index] + 2 * error[index])
            elif len(distances):
                candidates = candidates[distances <= thresholds[index]]
            results.append(self._exact(segments, query, candidates, k))
        return results

    def _block_shape(self, n_queries: int, n_rows: int) -> tuple[int, int]:
        # A block of distances, the matrix product it comes from and argpartition's copy: 3 arrays.
        cells = max(1, int(self.working_memory * 2**20) // (3 * 4))
        query_block = max(1, min(n_queries, cells // min(n_rows, 4096) if n_rows else n_queries))
        return query_block, max(1, min(n_rows, cells // query_block))

    def _blocks(self, segments: list[_Segment], queries: np.ndarray, exclude: Sequence[Collection[str]]):
        """Yield (query offset, global row offset, squared-distance block) with ineligible rows at +inf."""
        offset = 0
        for segment in segments:
            n_rows = len(segment.ids)
            query_block, row_block = self._block_shape(len(queries), n_rows)
            excluded = [
                np.array([segment.row_of[i] for i in ids if i in segment.row_of], dtype=np.intp) for ids in exclude
            ]
            for q_start in range(0, len(queries), query_block):
                q = queries[q_start : q_start + query_block]
                q_sq = np.einsum("ij,ij->i", q, q)[:, np.newaxis]
                for r_start in range(0, n_rows, row_block):
                    r_end = min(n_rows, r_start + row_block)
                    block = q @ segment.matrix[r_start:r_end].T
                    block *= -2
                    block += q_sq
                    block += segment.sq_norms[r_start:r_end]
                    block[:, ~segment.eligible[r_start:r_end]] = np.inf
                    for i in range(len(q)):
                        rows = excluded[q_start + i]
                        rows = rows[(rows >= r_start) & (rows < r_end)]
                        block[i, rows - r_start] = np.inf
                    yield q_start, offset + r_start, block
            offset += n_rows

    def _coarse_pass(self, segments, queries, exclude, *, keep: int, k: int, error: np.ndarray):
        """Per query: the ``keep`` smallest float32 squared distances (and their global rows), and the
        threshold under which a row may still be among the k nearest."""
        parts: list[tuple[list, list]] = [([], []) for _ in range(len(queries))]
        for q_start, row_offset, block in self._blocks(segments, queries, exclude):
            take = min(keep, block.shape[1])
            if take < block.shape[1]:
                cols = np.argpartition(block, take - 1, axis=1)[:, :take]
            else:
                cols = np.broadcast_to(np.arange(block.shape[1]), block.shape)
            distances = np.take_along_axis(block, cols, axis=1)
            for i in range(len(block)):
                kept_d, kept_rows = parts[q_start + i]
                kept_d.append(distances[i])
                kept_rows.append(cols[i] + row_offset)
                if len(kept_d) > 8:
                    merged = self._merge(kept_d, kept_rows, keep)
                    kept_d[:], kept_rows[:] = [merged[0]], [merged[1]]
        best = [self._merge(kept_d, kept_rows, keep) for kept_d, kept_rows in parts]
        thresholds = np.empty(len(queries))
        for index, (distances, _) in enumerate(best):
            finite = np.sort(distances[np.isfinite(distances)])
            thresholds[index] = (finite[min(k, len(finite)) - 1] if len(finite) else np.inf) + 2 * error[index]
        return best, thresholds

    @staticmethod
    def _merge(parts_d: list[np.ndarray], parts_rows: list[np.ndarray], keep: int) -> tuple[np.ndarray, np.ndarray]:
        if not parts_d:
            return np.zeros(0, np.float32), np.zeros(0, np.intp)
        distances, rows = np.concatenate(parts_d), np.concatenate(parts_rows)
        if len(distances) > keep:
            top = np.argpartition(distances, keep - 1)[:keep]
            distances, rows = distances[top], rows[top]
        return distances, rows

    def _rows_within(self, segments, query, exclude, threshold: float) -> np.ndarray:
        found = []
        for _, row_offset, block in self._blocks(segments, query[np.newaxis], [exclude]):
            found.append(np.flatnonzero(block[0] <= threshold) + row_offset)
        return np.concatenate(found) if found else np.zeros(0, dtype=np.intp)

    @staticmethod
    def _exact(segments: list[_Segment], query: np.ndarray, candidates: np.ndarray, k: int) -> list[Hit]:
        if not len(candidates):
            return []
        ids, vectors = [], []
        offset = 0
        for segment in segments:
            mine = candidates[(candidates >= offset) & (candidates < offset + len(segment.ids))] - offset
            ids.extend(segment.ids[row] for row in mine)
            vectors.append(segment.matrix[mine])
            offset += len(segment.ids)
        distances = euclidean(np.concatenate(vectors), query)
        order = sorted(range(len(ids)), key=lambda j: (distances[j], ids[j]))[:k]
        return [Hit(ids[j], float(distances[j])) for j in order]
