"""A toy index backend written only against ``BaseIndex``, as a shop would write its own.

It keeps entries in a dict and searches by brute force; it exists to prove that
``visual_recs.testing.BackendTests`` runs against a backend from outside the app.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence

import numpy as np

from visual_recs.backends.base import BaseIndex, Entry, Hit, euclidean


class MemoryIndex(BaseIndex):
    """Entries in this process's memory; exact search over a partition's entries."""

    exact = True

    def __init__(self) -> None:
        self._collections: dict[str, dict[str, Entry]] = {}

    def _length(self, collection: str) -> int | None:
        held = self._collections.get(collection)
        return len(next(iter(held.values())).vector) if held else None

    def add(self, collection: str, entries: Sequence[Entry]) -> None:
        matrix = self.check_entries(entries, self._length(collection))  # before storing any: all or nothing
        held = self._collections.setdefault(collection, {})
        for entry, vector in zip(entries, matrix):
            held[str(entry.object_id)] = Entry(str(entry.object_id), entry.partition, bool(entry.shown), vector)

    def remove(self, collection: str, object_ids: Iterable[str]) -> None:
        held = self._collections.get(collection, {})
        for object_id in object_ids:
            held.pop(str(object_id), None)

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
        matrix, exclude = self.check_queries(vectors, exclude, self._length(collection))
        candidates = [
            entry
            for entry in self._collections.get(collection, {}).values()
            if (partition is None or entry.partition == partition) and (entry.shown or not shown_only)
        ]
        answers = []
        for query, skip in zip(matrix, exclude):
            rows = [entry for entry in candidates if entry.object_id not in skip]
            if not rows:
                answers.append([])
                continue
            distances = euclidean(np.stack([entry.vector for entry in rows]), query)
            order = sorted(range(len(rows)), key=lambda i: (distances[i], rows[i].object_id))[:k]
            answers.append([Hit(rows[i].object_id, float(distances[i])) for i in order])
        return answers

    def vectors(self, collection: str, object_ids: Iterable[str]) -> dict[str, np.ndarray]:
        held = self._collections.get(collection, {})
        return {str(o): held[str(o)].vector.copy() for o in object_ids if str(o) in held}

    def entries(self, collection: str, partition: str | None = None) -> Iterator[Entry]:
        for entry in list(self._collections.get(collection, {}).values()):
            if partition is None or entry.partition == partition:
                yield entry

    def partitions(self, collection: str) -> set[str]:
        return {entry.partition for entry in self._collections.get(collection, {}).values()}

    def clear(self, collection: str) -> None:
        self._collections.pop(collection, None)
