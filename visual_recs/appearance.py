"""Hand-made appearance features of a product photo, and the search vector composed from parts.

ImageNet features know shapes well and colours poorly: a network trained to tell a dog from
a cat is taught to ignore hue. A merchandiser's "similar" item has the same colour too, so the
search vector adds a colour description of the product itself (not of the backdrop), computed
from the same decoded pixels the network sees (``images.decode_image``: uint8, HxWx3, RGB).

Pure numpy; no Django imports.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# Colour histogram: soft votes of each product pixel for the colours of a fixed palette, a grid
# in CIE Lab (perceptually even, so one kernel width suits greys and saturated colours alike).
_GRID_L = np.arange(10.0, 100.0, 20.0)  # 5 lightness levels
_GRID_AB = np.arange(-64.0, 65.0, 16.0)  # 9 steps of each opponent axis
_KERNEL_SIGMA = 10.0  # about a just-noticeable step x 4: neighbouring shades share votes
_SAMPLE_SIDE = 64  # colours need no detail: 4,096 pixels decide the histogram
# A pixel differs from the backdrop when its colour is further than this (Lab Delta E, 76
# formula) from the backdrop's; JPEG noise and soft shadows on white stay under it.
_MIN_BACKGROUND_DELTA = 12.0
# Below this share of product pixels (a white shirt on white), the mask is not trusted and the
# central half of the photo stands for the product: the histogram then says "white".
_MIN_FOREGROUND_SHARE = 0.02


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of uint8 or [0, 255] float sRGB values, shape (..., 3) -> (..., 3) float64."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array(
        [[0.4124564, 0.2126729, 0.0193339], [0.3575761, 0.7151522, 0.1191920], [0.1804375, 0.0721750, 0.9503041]]
    )
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def _palette() -> np.ndarray:
    """The Lab grid's points that some sRGB colour comes near; the rest would always be 0."""
    grid = np.stack(np.meshgrid(_GRID_L, _GRID_AB, _GRID_AB, indexing="ij"), axis=-1).reshape(-1, 3)
    levels = np.linspace(0, 255, 18)
    gamut = srgb_to_lab(np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3))
    nearest = np.sqrt(((grid[:, None, :] - gamut[None, :, :]) ** 2).sum(-1)).min(axis=1)
    return grid[nearest < _KERNEL_SIGMA]


PALETTE = _palette()
COLOUR_DIMS = len(PALETTE)


def _subsample(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"Expected an RGB image of shape (height, width, 3), got {pixels.shape}.")
    step_y = max(1, pixels.shape[0] // _SAMPLE_SIDE)
    step_x = max(1, pixels.shape[1] // _SAMPLE_SIDE)
    return pixels[::step_y, ::step_x]


def foreground_mask(pixels: np.ndarray) -> np.ndarray:
    """Boolean mask (H, W) of the pixels that belong to the product rather than the backdrop.

    The backdrop's colour is the median of the photo's outer frame (light grey or cream as well
    as white: it is measured, not assumed), robust to a product touching a few edges. A pixel is
    product when its Lab distance to that colour exceeds the frame's own spread (JPEG noise, a
    gradient) with a floor of ``_MIN_BACKGROUND_DELTA``.
    """
    lab = srgb_to_lab(np.asarray(pixels))
    height, width = lab.shape[:2]
    border = max(1, min(height, width) // 32)
    frame = np.concatenate(
        [lab[:border].reshape(-1, 3), lab[-border:].reshape(-1, 3), lab[:, :border].reshape(-1, 3), lab[:, -border:].reshape(-1, 3)]
    )
    backdrop = np.median(frame, axis=0)
    frame_delta = np.sqrt(((frame - backdrop) ** 2).sum(-1))
    # 1.4826 x MAD estimates a standard deviation, ignoring the product's share of the frame.
    spread = 1.4826 * np.median(np.abs(frame_delta - np.median(frame_delta)))
    threshold = max(_MIN_BACKGROUND_DELTA, np.median(frame_delta) + 4 * spread)
    return np.sqrt(((lab - backdrop) ** 2).sum(-1)) > threshold


def colour_features(pixels: np.ndarray) -> np.ndarray:
    """The product's colours as a float32 vector of ``COLOUR_DIMS``: the square root of a soft
    Lab histogram of its pixels (backdrop left out), so it has unit L2 norm and the Euclidean
    distance of two such vectors is their Hellinger distance (0 to sqrt(2)): a share of red
    pixels counts by how much of the product it covers, and a small accent is not drowned by
    the main colour as it would be by a plain histogram's squared differences.
    """
    sample = _subsample(pixels)
    mask = foreground_mask(sample)
    if mask.mean() < _MIN_FOREGROUND_SHARE:
        mask = np.zeros_like(mask)
        h, w = mask.shape
        mask[h // 4 : h - h // 4, w // 4 : w - w // 4] = True
    lab = srgb_to_lab(sample[mask])
    squared = ((lab[:, None, :] - PALETTE[None, :, :]) ** 2).sum(-1)
    votes = np.exp(-squared / (2 * _KERNEL_SIGMA**2))
    # Each pixel casts one vote in all, shared among its nearby palette colours.
    votes /= np.maximum(votes.sum(axis=1, keepdims=True), 1e-12)
    histogram = votes.sum(axis=0)
    return np.sqrt(histogram / histogram.sum()).astype(np.float32)


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row scaled to unit L2 norm (float32); an all-zero row stays zero rather than NaN."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def compose(parts: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """The search vectors: each part's rows scaled to unit length, times sqrt(its weight), side by side.

    Why unit length: the parts come in unrelated units and sizes (a 30-d learned projection,
    a 2048-d ReLU activation, a histogram), so a raw concatenation would let whichever happens
    to have the largest numbers decide. Scaled to unit length, a part adds at most 4 x its
    weight to a squared distance (2 x weight for non-negative parts), and the weights read as
    the parts' shares of "looks alike". Parts with weight 0 are left out of the vector.
    ``parts``: name -> (n, d_part) array, all with the same n; ``weights``: name -> weight >= 0.
    """
    unknown = set(weights) - set(parts)
    if unknown:
        raise ValueError(f"Weights given for parts that are not there: {sorted(unknown)}.")
    if any(weight < 0 for weight in weights.values()):
        raise ValueError("Part weights must be >= 0.")
    pieces = [unit_rows(parts[name]) * np.float32(np.sqrt(weight)) for name, weight in weights.items() if weight > 0]
    if not pieces:
        raise ValueError("At least one part needs a weight above 0.")
    return np.concatenate(pieces, axis=1)


def stack_features(visual: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """What a projection learns from: CNN features and colour features side by side, each row
    of each scaled to unit length, so that neither outweighs the other by its units or its
    number of dimensions before the fit decides which directions matter."""
    return np.concatenate([unit_rows(visual), unit_rows(colour)], axis=1)
