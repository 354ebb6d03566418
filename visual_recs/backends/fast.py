"""The ResNet50 extractor on OpenVINO: the converted network (see ``conversion``), no TensorFlow.

Same features as ``ResNet50Extractor`` (FP32: equal to float rounding; INT8: near, see
bench/extract.py), several times the photos per second on a CPU, and a process that loads it
holds a fraction of TensorFlow's memory: what a web process answering searches by photo wants.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path

import numpy as np

from ..exceptions import WeightsError
from . import conversion
from .extractors import ResNet50Extractor, cached_sha256

FIX_COMMAND = "manage.py visual_recs_fetch_weights"
# A search by photo: the photo and, with flip_average, its mirror image.
SEARCH_BATCH = 2
# Compiled models by file and its hash: an extractor rebuilt after a settings change reuses them.
_compiled: dict[tuple, object] = {}
_compiled_lock = threading.Lock()


class FastResNet50Extractor(ResNet50Extractor):
    """``ResNet50Extractor`` run by OpenVINO from a converted model (OpenVINO IR).

    Options, besides ``ResNet50Extractor``'s (``weights``, ``pooling``, ``input_size``, ``fit``,
    ``batch_size``, ``flip_average``, ``colour``):
    - ``precision``: "fp32" (the default: TensorFlow's vectors to float rounding) or "int8"
      (statically quantized, calibrated on the shop's own photos: faster still).
    - ``model``: path of a converted model's ``.xml`` (its ``.bin`` and manifest beside it);
      None finds the one ``visual_recs_fetch_weights`` wrote into the cache for these weights
      and options.
    - ``threads``: CPU threads of one stream that runs each batch whole (None: OpenVINO's
      throughput streams, which split a batch over the cores: more images a second).

    The converted file's sha256 is part of ``model_id``, so vectors of two precisions, or of two
    calibrations, never share a collection. A file whose manifest names other weights, or whose
    bytes no longer match the manifest, is refused.
    """

    def __init__(self, *, precision: str = "fp32", model: str | None = None, threads: int | None = None, **options) -> None:
        super().__init__(**options)
        if precision not in conversion.PRECISIONS:
            raise ValueError(f"precision must be one of {conversion.PRECISIONS}, not {precision!r}.")
        if self.pooling == "flatten":
            raise ValueError("The fast extractor supports pooling 'avg' and 'max'; 'flatten' is TensorFlow's only.")
        self.precision = precision
        self.model = model
        self.threads = threads

    # It converts from a local file only: without one there is nothing Keras' download would give it.
    keras_download = False

    def weights_source(self) -> str:
        source = super().weights_source()
        if source == "imagenet":
            raise WeightsError(
                "The fast extractor is converted from a local weights file, and there is none: "
                f"run `{FIX_COMMAND}`."
            )
        return source

    def model_path(self) -> Path:
        if self.model:
            return Path(self.model)
        weights_sha256 = cached_sha256(self.weights_source())
        return conversion.model_path(weights_sha256, self.pooling, self.input_size[0], self.precision)

    def manifest(self, *, verify_file: bool = False) -> conversion.Manifest:
        """The converted file's manifest, checked against these weights and options, and with
        ``verify_file`` the files' bytes against the manifest (a 25-100 MB read: once per process)."""
        path = self.model_path()
        if not path.is_file():
            raise WeightsError(f"The converted model {path} is missing: run `{FIX_COMMAND}`.")
        manifest = conversion.Manifest.read(conversion.manifest_path(path))
        weights_sha256 = cached_sha256(self.weights_source())
        if manifest.weights_sha256 != weights_sha256:
            raise WeightsError(
                f"The converted model {path} was made from other weights (sha256 {manifest.weights_sha256[:12]}, "
                f"these are {weights_sha256[:12]}): refusing it; run `{FIX_COMMAND}`."
            )
        wanted = (self.pooling, self.input_size[0], self.precision)
        if (manifest.pooling, manifest.input_size, manifest.precision) != wanted:
            raise WeightsError(
                f"The converted model {path} is {manifest.precision} {manifest.pooling} {manifest.input_size}px, "
                f"the settings ask for {self.precision} {self.pooling} {self.input_size[0]}px: run `{FIX_COMMAND}`."
            )
        if manifest.recipe != conversion.RECIPES[self.precision]:
            raise WeightsError(
                f"The converted model {path} was made by another version of the conversion "
                f"({manifest.recipe or 'an older one'}): run `{FIX_COMMAND}`."
            )
        if verify_file:
            try:
                actual = conversion.model_sha256(path, lambda part: cached_sha256(str(part)))
            except OSError as exc:
                raise WeightsError(f"The converted model {path} cannot be read ({exc}): run `{FIX_COMMAND}`.") from exc
            if actual != manifest.model_sha256:
                raise WeightsError(
                    f"The converted model {path} is corrupt (sha256 {actual[:12]}, its manifest says "
                    f"{manifest.model_sha256[:12]}): run `{FIX_COMMAND}`."
                )
        return manifest

    def is_converted(self) -> bool:
        """Whether the converted file these settings need is there and sound."""
        try:
            self.manifest(verify_file=True)
        except WeightsError:
            return False  # missing, corrupt, from other weights or an older recipe: make it again
        return True

    def convert(self, calibration: np.ndarray, *, force: bool = False) -> Path:
        """Make the converted file these settings need, unless a sound one is there (or ``force``).

        ``calibration``: uint8 photos as ``images.load_image`` makes them for this extractor;
        INT8 is calibrated on them, FP32 checks itself against Keras on a few. Needs TensorFlow
        and the conversion's packages; see ``conversion.convert``.
        """
        if not force and self.is_converted():
            return self.model_path()
        return conversion.convert(
            weights=self.weights_source(),
            pooling=self.pooling,
            input_size=self.input_size[0],
            precision=self.precision,
            calibration=calibration,
            target=self.model_path(),
        )

    @property
    def model_id(self) -> str:
        return f"{super().model_id}:openvino-{self.precision}-{self.manifest().model_sha256[:12]}"

    def network(self, *, batches: bool = False):
        """The compiled model, built on first use and shared by every thread of the process.

        ``batches``: compiled for OpenVINO's throughput streams. A web process, whose searches
        are a photo or two, never asks for it and so holds one copy.
        """
        hint = "THROUGHPUT" if batches and not self.threads else "LATENCY"
        path = self.model_path()
        key = (str(path), self.manifest().model_sha256, self.threads, hint)
        if key not in _compiled:
            with _compiled_lock:
                if key not in _compiled:
                    self.manifest(verify_file=True)
                    _compiled[key] = self._compile(path, hint)
        return _compiled[key]

    def _compile(self, path: Path, hint: str):
        try:
            import openvino
        except ImportError as exc:
            raise WeightsError(f"The fast extractor needs the Python package 'openvino' ({exc}): `pip install openvino`.") from exc
        # f32: OpenVINO would otherwise compute in bf16 on CPUs that have it, and the FP32
        # model would no longer give TensorFlow's vectors (INT8 layers stay int8 either way).
        # THROUGHPUT splits a batch over streams (more images a second than one stream of every
        # core) but holds the working memory of each stream.
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": hint}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        # No CACHE_DIR: twice here a fresh process died with SIGABRT while others were writing
        # OpenVINO's shared cache (as gunicorn workers starting together would); each compiles.
        # From the path: OpenVINO maps the .bin into memory instead of reading it onto the heap.
        return openvino.Core().compile_model(str(path), "CPU", config)

    def _features(self, batch: np.ndarray) -> np.ndarray:
        compiled = self.network(batches=len(batch) > SEARCH_BATCH)
        # The batch split over the compiled model's streams (one, or two on two cores),
        # run at once: two streams of one thread each do more images a second than one of two.
        streams = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        parts = np.array_split(np.ascontiguousarray(batch, dtype=np.uint8), min(len(batch), streams))
        # Requests of this call only: a compiled model is shared by threads, a request is not.
        requests = [compiled.create_infer_request() for _ in parts]
        for request, part in zip(requests, parts):
            request.start_async({0: part})
        for request in requests:
            request.wait()
        # Copies: a tensor's memory is its request's, which goes when this returns.
        features = [np.array(request.get_output_tensor(0).data, dtype=np.float32) for request in requests]
        return np.concatenate(features).reshape(len(batch), -1)


@atexit.register
def _release_networks() -> None:
    """Drop the compiled networks before the interpreter tears down: left to its teardown,
    OpenVINO's threads sometimes ended the process with SIGABRT ("terminate called without an
    active exception") after its work was done."""
    _compiled.clear()
