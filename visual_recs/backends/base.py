"""Contracts of the two pluggable roles: the feature extractor and the nearest-neighbour index.

Configure one of each with ``VISUAL_RECS["EXTRACTOR"]`` and ``VISUAL_RECS["INDEX"]``:
``{"BACKEND": "dotted.path.Class", "OPTIONS": {...}}``; options are keyword-only
arguments, so a misspelt option fails loudly at construction.
"""

from __future__ import annotations

import numpy as np


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

    def extract(self, images: np.ndarray) -> np.ndarray:
        """``images``: uint8 array (n, height, width, 3), RGB. Returns float32 (n, dims), row i for image i.

        Must be safe to call from several threads, and load any model once, lazily.
        """
        raise NotImplementedError("An extractor must turn a batch of RGB images into vectors.")


class BaseIndex:
    """Finds the nearest candidates of query vectors, by Euclidean distance."""

    def kneighbors(
        self,
        queries: np.ndarray,
        candidates: np.ndarray,
        k: int,
        *,
        exclude: np.ndarray | None = None,
    ) -> list[list[tuple[int, float]]]:
        """For each query row, up to ``k`` (candidate row, distance) pairs, nearest first.

        ``exclude[i]`` is a candidate row never returned for query ``i`` (the query itself),
        or -1. Ties may come in any order. Memory must stay bounded however many rows there are.
        """
        raise NotImplementedError("An index must return each query's nearest candidates.")
