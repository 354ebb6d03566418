"""Feature extractors."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from .. import appearance
from ..images import FITS
from . import weights as weights_module
from .base import BaseExtractor

# TensorFlow prints pages of start-up notes at INFO level; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

POOLINGS = ("avg", "max", "flatten")
_FEATURE_CHANNELS = 2048
_RESNET_STRIDE = 32

_file_hashes: dict[tuple[str, int, int], str] = {}
# Networks by (weights, pooling, input size): an extractor rebuilt after a settings change
# reuses the process's network instead of loading 95 MB of weights again.
_networks: dict[tuple, object] = {}
_networks_lock = threading.Lock()


def _keras(module: str):
    """A Keras module, or ``WeightsError`` naming the extra that installs TensorFlow and Keras."""
    return weights_module.require(module, "ResNet50Extractor (the TensorFlow extractor)", hint="")


def cached_sha256(path: str) -> str:
    """sha256 of a model file, computed once per process per (path, size, mtime)."""
    stat = Path(path).stat()
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _file_hashes:
        _file_hashes[key] = weights_module.sha256_file(Path(path))
    return _file_hashes[key]


class ResNet50Extractor(BaseExtractor):
    """ImageNet ResNet50 without its classifier, as in the tutorial, with Keras' own preprocessing.

    Options:
    - ``weights``: path of a no-top Keras weights file; None finds one (see ``backends.weights``).
    - ``pooling``: "avg" (2048-d, the default), "max", or "flatten" (the tutorial's 7x7x2048 =
      100,352-d vector: 49x larger and slower to search; with Keras' preprocessing it retrieves
      slightly better, see bench/relevance.py).
    - ``input_size``: side of the square input, a multiple of 32 (224 as trained).
    - ``fit``: "squash" (what Keras' load_img does) or "letterbox" (keeps the aspect, white pad).
    - ``batch_size``: images per forward pass.
    - ``flip_average``: average each photo's features with those of its mirror image. A
      product and its mirror twin (a left and a right shoe, a model turned the other way) then
      get the same vector, and the network's left/right noise halves; it costs a second
      forward pass per photo. Off by default; part of ``model_id`` when on.
    - ``colour``: follow the network's features with the colour histogram of the product's
      own pixels (``appearance.colour_features``), which global pooling loses; each part
      scaled to unit length (``appearance.stack_features``). The search weighs the colour
      part by ``COLOUR_WEIGHT``; a fit learns from both. Off by default; part of ``model_id``.
    """

    def __init__(
        self,
        *,
        weights: str | None = None,
        pooling: str = "avg",
        input_size: int = 224,
        fit: str = "squash",
        batch_size: int = 32,
        flip_average: bool = False,
        colour: bool = False,
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}.")
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, not {fit!r}.")
        if input_size < _RESNET_STRIDE or input_size % _RESNET_STRIDE:
            raise ValueError(f"input_size must be a multiple of {_RESNET_STRIDE}, not {input_size!r}.")
        self.weights = weights
        self.pooling = pooling
        self.input_size = (input_size, input_size)
        self.fit = fit
        self.batch_size = int(batch_size)
        self.flip_average = bool(flip_average)
        self.colour = bool(colour)

    #: Whether "imagenet" (no local file) means Keras' own download for this extractor.
    keras_download = True

    def weights_source(self) -> str:
        """The weights file Keras will load, or "imagenet" for Keras' own download."""
        return weights_module.resolve(self.weights, keras_download=self.keras_download)

    @property
    def model_id(self) -> str:
        source = self.weights_source()
        weights_tag = "keras-imagenet" if source == "imagenet" else cached_sha256(source)[:12]
        # ":flip" only when on, so vectors stored before the option existed stay current.
        flip_tag = ":flip" if self.flip_average else ""
        colour_tag = f":colour{appearance.COLOUR_DIMS}" if self.colour else ""
        return f"resnet50:{self.pooling}:{self.input_size[0]}:{self.fit}{flip_tag}{colour_tag}:{weights_tag}"

    @property
    def dims(self) -> int:
        return sum(self.parts.values())

    @property
    def parts(self) -> dict[str, int]:
        side = self.input_size[0] // _RESNET_STRIDE
        visual = side * side * _FEATURE_CHANNELS if self.pooling == "flatten" else _FEATURE_CHANNELS
        return {"visual": visual, "colour": appearance.COLOUR_DIMS} if self.colour else {"visual": visual}

    def network(self):
        """The Keras model, built on first use and shared by every thread of the process."""
        key = (self.weights_source(), self.pooling, self.input_size)
        if key not in _networks:
            with _networks_lock:
                if key not in _networks:
                    _networks[key] = self._build(key[0])
        return _networks[key]

    def _build(self, weights: str):
        return _keras("keras.applications").ResNet50(
            weights=weights,
            include_top=False,
            pooling=None if self.pooling == "flatten" else self.pooling,
            input_shape=(*self.input_size, 3),
        )

    def extract(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (self.input_size[1], self.input_size[0], 3):
            raise ValueError(f"Expected images of shape (n, {self.input_size[1]}, {self.input_size[0]}, 3).")
        out = np.empty((len(images), self.parts["visual"]), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            features = self._features(batch)
            if self.flip_average:
                # The preprocessing works pixel by pixel, so mirroring before it is mirroring after.
                mirrored = self._features(batch[:, :, ::-1])
                if self.pooling == "flatten":  # mirror the maps back so each cell meets its own
                    side = self.input_size[0] // _RESNET_STRIDE
                    mirrored = mirrored.reshape(len(batch), side, side, -1)[:, :, ::-1].reshape(len(batch), -1)
                features = (features + mirrored) / 2
            out[start : start + len(batch)] = features
        if self.colour:
            return appearance.stack_features(out, np.stack([appearance.colour_features(image) for image in images]))
        return out

    def _features(self, batch: np.ndarray) -> np.ndarray:
        """The network's features of a batch of uint8 RGB images, one row each."""
        preprocess_input = _keras("keras.applications.resnet50").preprocess_input
        features = self.network().predict_on_batch(preprocess_input(batch.astype(np.float32)))
        return np.asarray(features, dtype=np.float32).reshape(len(batch), -1)
