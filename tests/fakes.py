"""A fast stand-in extractor, only for tests of logic unrelated to the network (lists, commands).

It reduces a photo to its colours on a coarse grid: deterministic, cheap, and still "alike
looks near", so neighbour-list logic can be checked at catalog scale in milliseconds.
"""

from __future__ import annotations

import numpy as np

from visual_recs.backends.base import BaseExtractor


class ColourGridExtractor(BaseExtractor):
    input_size = (32, 32)
    batch_size = 64

    def __init__(self, *, grid: int = 4) -> None:
        self.grid = grid

    @property
    def model_id(self) -> str:
        return f"colour-grid:{self.grid}"

    @property
    def dims(self) -> int:
        return self.grid * self.grid * 3

    def extract(self, images: np.ndarray) -> np.ndarray:
        n, h, w, _ = images.shape
        cells = images.reshape(n, self.grid, h // self.grid, self.grid, w // self.grid, 3).mean(axis=(2, 4))
        return (cells.reshape(n, -1) / 255.0).astype(np.float32)


class BrokenVectorExtractor(ColourGridExtractor):
    """Makes a NaN vector for photos whose top-left cell is pure red: an extractor gone wrong."""

    @property
    def model_id(self) -> str:
        return f"broken-colour-grid:{self.grid}"

    def extract(self, images: np.ndarray) -> np.ndarray:
        vectors = super().extract(images)
        red = (vectors[:, 0] > 0.9) & (vectors[:, 1] < 0.1) & (vectors[:, 2] < 0.1)
        vectors[red, 1] = np.nan
        return vectors
