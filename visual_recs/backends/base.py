"""Contracts of the two pluggable roles: the feature extractor and the nearest-neighbour index.

Configure one of each with ``VISUAL_RECS["EXTRACTOR"]`` and ``VISUAL_RECS["INDEX"]``:
``{"BACKEND": "dotted.path.Class", "OPTIONS": {...}}``; options are keyword-only
arguments, so a misspelt option fails loudly at construction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from django.db import connection as default_connection

from ..exceptions import VectorError

if TYPE_CHECKING:
    from django.core.checks import CheckMessage
    from django.db.backends.base.base import BaseDatabaseWrapper

    from .conversion import Manifest


class BaseExtractor:
    """Turns photos into fixed-length float32 vectors whose Euclidean distance means "looks alike"."""

    #: (width, height) of the arrays ``extract`` takes; the image loader resizes to it.
    input_size: tuple[int, int] = (224, 224)
    #: How the loader fits a photo into ``input_size``: "squash" or "letterbox".
    fit: str = "squash"
    #: How many images ``extract`` should be given at once for good throughput.
    batch_size: int = 32

    @property
    def model_id(self) -> str:
        """A short string that changes whenever the vectors for the same photo would change.

        Stored with every vector; a vector with another model_id is stale and never compared.
        """
        raise NotImplementedError("An extractor must say which model (and weights, options) made its vectors.")

    @property
    def dims(self) -> int:
        """Length of each vector."""
        raise NotImplementedError("An extractor must say how long its vectors are.")

    @property
    def parts(self) -> dict[str, int]:
        """The named parts each vector is made of, in order, with their lengths.

        One part ("visual") by default. An extractor whose vectors join parts of unrelated
        units (the network's features, a colour histogram) names them, each scaled to unit
        length, so the search can weigh them (``COLOUR_WEIGHT``) and staff can see each one's
        share of a distance.
        """
        return {"visual": self.dims}

    def extract(self, images: np.ndarray) -> np.ndarray:
        """``images``: uint8 array (n, height, width, 3), RGB. Returns float32 (n, dims), row i for image i.

        Must be safe to call from several threads, and load any model once, lazily.
        """
        raise NotImplementedError("An extractor must turn a batch of RGB images into vectors.")

    # Optional: the system checks call these; the defaults suit an extractor without weight files.

    def weights_source(self) -> str | None:
        """The weights file the network loads, or "imagenet" when Keras would download them.

        The system checks call it: raise ``WeightsError`` saying how to fix weights that are
        missing or unusable. None (the default): the extractor loads no weights file.
        """
        return None

    def manifest(self) -> Manifest | None:
        """The manifest of the converted network the extractor runs, checked against its weights and options.

        The system checks call it: raise ``WeightsError`` when the converted files are missing
        or were made from something else. None (the default): the extractor runs no converted network.
        """
        return None


@dataclass(frozen=True)
class Entry:
    """One vector an index holds: an object of a collection, in a partition, shown or not.

    Only ``shown`` entries are answers to ``search``; the others are still kept, since they
    have neighbour lists of their own (a hidden product's page still works for staff).
    """

    object_id: str
    partition: str
    shown: bool
    vector: np.ndarray


class Hit(NamedTuple):
    """One answer of a search: an object and its Euclidean distance to the query."""

    object_id: str
    distance: float


def euclidean(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Exact Euclidean distances (float64) from ``query`` to each row of ``vectors``.

    The one formula of every exact path (``ExactIndex`` and the list repairs), so the same two
    vectors always give the same bits, whichever side is the query and however many rows come
    with them: lists repaired in place then equal lists rebuilt from scratch.
    """
    diff = np.asarray(vectors, dtype=np.float64) - np.asarray(query, dtype=np.float64)
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))


class BaseIndex:
    """A store of vectors that answers nearest-neighbour queries, by Euclidean distance.

    Vectors live in named *collections* (one per indexed model and vector space: vectors of
    different collections are never compared), and within a collection in *partitions*
    (e.g. a gender): a search only ever looks at one partition.

    Writes (``add``, ``remove``, ``clear``) are made inside the caller's database transaction
    when the backend keeps its vectors in the database, so they commit or roll back with the
    rows that describe them. Callers hold, until that transaction ends, the lock of every
    partition a write touches (both partitions of a move); the indexing service does this
    with ``indexing.locked``. Backends may rely on it (``ExactIndex``'s change log does).
    """

    #: True when ``search`` is exact: neighbour lists built from it equal a brute-force rebuild.
    exact: bool = False
    #: The one vector length the index holds (e.g. a typed column), or None when each collection
    #: takes the length of its first vectors. The checks compare it with the extractor's, and
    #: a fit's shorter vectors are padded to it.
    dimensions: int | None = None

    def add(self, collection: str, entries: Sequence[Entry]) -> None:
        """Store ``entries``, replacing any entry of the same object id in ``collection``.

        An object lives in one partition: adding it under another partition moves it. Raise
        ``VectorError`` (nothing stored) for a vector that is not finite, or whose length
        differs from the collection's (``check_vectors`` does both).
        """
        raise NotImplementedError("An index must store vectors.")

    def remove(self, collection: str, object_ids: Iterable[str]) -> None:
        """Forget these objects' entries; unknown ids are ignored."""
        raise NotImplementedError("An index must forget vectors.")

    def search(
        self,
        collection: str,
        partition: str | None,
        vector: np.ndarray,
        k: int,
        *,
        exclude: Collection[str] = (),
        shown_only: bool = True,
    ) -> list[Hit]:
        """The ``k`` entries of ``partition`` nearest to ``vector``, nearest first.

        ``partition`` None searches the whole collection (search by photo across genders: the
        nearest of all partitions, which is what merging each partition's nearest would give).

        Only shown entries unless ``shown_only`` is False; never an id in ``exclude``. Returns
        exactly ``k`` hits whenever that many entries qualify (an approximate index must still
        fill the answer, e.g. by scanning further, rather than return fewer). Equal distances
        are ordered by object id as text ("10" before "9").
        """
        return self.search_many(collection, partition, vector[np.newaxis], k, exclude=[exclude], shown_only=shown_only)[0]

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
        """``search`` for each row of ``vectors`` (``exclude[i]`` for row i), in one call."""
        raise NotImplementedError("An index must answer nearest-neighbour queries.")

    def vectors(self, collection: str, object_ids: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored vectors of these objects, by id (ids not stored are left out)."""
        raise NotImplementedError("An index must return the vectors it stores.")

    def entries(self, collection: str, partition: str | None = None) -> Iterator[Entry]:
        """Every entry of ``collection`` (of one partition), in batches from storage, never all at once."""
        raise NotImplementedError("An index must list its entries.")

    def partitions(self, collection: str) -> set[str]:
        """The partitions of ``collection`` that hold at least one entry."""
        raise NotImplementedError("An index must say which partitions it holds.")

    def clear(self, collection: str) -> None:
        """Forget every entry of ``collection``."""
        raise NotImplementedError("An index must be able to drop a collection.")

    # Optional features: callers call them on every backend; the defaults do nothing.

    def ensure_schema(self, conn: BaseDatabaseWrapper = default_connection) -> None:
        """Create the storage the index needs beyond the app's models (extension, table, indexes) if missing.

        Idempotent; called before the index is filled from the stored vectors (switching index
        backends, a new fit). The default has nothing to create.
        """

    def check_database(self, conn: BaseDatabaseWrapper = default_connection) -> list[CheckMessage]:
        """System check messages about the database the index needs (server, extension, schema).

        Run by ``migrate`` and ``check --database default``; a schema a pending migration will
        create is not an error. The default has nothing to check.
        """
        return []

    def prune_changes(self) -> int:
        """Drop the bookkeeping the index keeps only for a while (its own retention decides); returns how many rows.

        The sweep calls it on every run. The default keeps nothing of the kind.
        """
        return 0

    def check_queries(
        self, vectors: np.ndarray, exclude: Sequence[Collection[str]] | None, dims: int | None
    ) -> tuple[np.ndarray, Sequence[Collection[str]]]:
        """``search_many``'s arguments checked: the vectors as ``check_vectors`` returns them, one exclude set a row."""
        matrix = self.check_vectors(vectors, dims)
        if exclude is None:
            return matrix, [()] * len(matrix)
        if len(exclude) != len(matrix):
            raise ValueError(f"{len(exclude)} exclude sets for {len(matrix)} query vectors.")
        return matrix, exclude

    def check_entries(self, entries: Sequence[Entry], dims: int | None) -> np.ndarray:
        """The entries' vectors stacked as ``check_vectors`` returns them; ``VectorError`` for mixed lengths."""
        lengths = {np.asarray(entry.vector).shape for entry in entries}
        if len(lengths) > 1:
            raise VectorError(f"Vectors of one call must have the same length, not {sorted(lengths)}.")
        if not entries:
            return np.zeros((0, dims or 0), dtype=np.float32)
        return self.check_vectors(np.stack([np.asarray(entry.vector) for entry in entries]), dims)

    def check_vectors(self, vectors: np.ndarray, dims: int | None) -> np.ndarray:
        """``vectors`` as a float32 (n, dims) array; ``VectorError`` for NaN/inf or a wrong length."""
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2:
            raise VectorError(f"Expected a 2-d array of vectors, got shape {matrix.shape}.")
        if dims is not None and matrix.shape[1] != dims:
            raise VectorError(f"Vectors have {matrix.shape[1]} dimensions; this index holds {dims}-dimensional ones.")
        if not np.isfinite(matrix).all():
            raise VectorError("A vector has NaN or infinite values.")
        return matrix
