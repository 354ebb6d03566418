"""ResNet50 converted once, offline, into an OpenVINO model that ``fast.FastResNet50Extractor`` runs.

The conversion reads the same Keras weights file as ``ResNet50Extractor`` (no new download)
and writes, into the weights cache:

- ``<name>.xml`` and ``<name>.bin``: the network in OpenVINO's own format (IR) with Keras'
  ``preprocess_input`` inside it (uint8 RGB in, cast, channels to BGR, ImageNet means
  subtracted), so running it needs no TensorFlow. OpenVINO maps the ``.bin`` into memory
  rather than parsing it onto the heap, where the freed parse left the heap fragmented (a web
  process held 441 MB after a search with the ONNX file, 356 MB with this one);
- ``<name>.json``: its manifest: the sha256 of the Keras weights it was made from, of the
  model's two files, and the options (pooling, input size, precision, calibration).

The path: Keras, wrapped in a ``tf.function`` with the preprocessing, -> OpenVINO
(``openvino.convert_model`` reads the TensorFlow graph itself and folds the batch norms into the
convolutions). FP32 is a faithful copy of the network (checked on the
spot against Keras). INT8 is the FP32 model statically quantized by NNCF, OpenVINO's own
quantizer (per-channel int8 weights, bias correction; the stem and first stage left in FP32),
calibrated on the shop's own photos, which is what makes its ranges fit what the network will see.

Needs TensorFlow (the network and its reference) and, for INT8, nncf: the ``convert``
extra; the process that runs the converted model needs none of them, only OpenVINO.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..exceptions import WeightsError
from .weights import cache_dir, require, sha256_file

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
#: How each precision is made; a file made another way (an older release's) is converted again.
RECIPES = {"fp32": "openvino-ir-tf-frontend-v3", "int8": "nncf-per-channel-bias-correction-fp32-stem-v3"}
MANIFEST_FORMAT = 2
# Keras' "caffe" preprocessing for ResNet50: BGR channel means of ImageNet.
_BGR_MEANS = (103.939, 116.779, 123.68)
# INT8 leaves the network's stem and first stage (conv1, conv2_x: a fifth of its work) in FP32:
# their rounding, carried through every later layer, moved the 5-nearest lists most (overlap@5
# with TensorFlow's on the sample catalog: 0.84-0.87 all INT8, 0.89 with the stem alone in FP32,
# 0.915 with both; that costs INT8 about 40% of its speed, and leaves it 1.9x FP32's).
# OpenVINO's TensorFlow reader does not keep Keras' layer names, so the end of conv2_x is found by
# the graph's shape: its third residual Add (the first whose two inputs are both computed).
_FLOAT_RESIDUAL_ADDS = 3
# conv1, then conv2_block1's four (the shortcut's and three) and two blocks of three.
_FLOAT_CONVOLUTIONS = 11
# The FP32 file must compute what Keras computes; below this cosine the conversion is broken.
_MIN_FP32_COSINE = 0.9999
# What each precision's conversion imports: INT8 adds its quantizer to FP32's.
NEEDS = {"fp32": ("keras", "tensorflow", "openvino")}
NEEDS["int8"] = (*NEEDS["fp32"], "nncf")


@dataclass(frozen=True)
class Manifest:
    """What a converted file was made from; the extractor refuses a file that does not match."""

    weights_sha256: str
    model_sha256: str
    pooling: str
    input_size: int
    precision: str
    calibration_photos: int = 0
    calibration_sha256: str = ""
    recipe: str = ""
    format: int = MANIFEST_FORMAT

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """The manifest at ``path``, parsed once per process per (size, mtime): ``model_id``
        asks for it on every search and every batch."""
        try:
            stat = path.stat()
            key = (str(path), stat.st_size, stat.st_mtime_ns)
            if key not in _manifests:
                _manifests[key] = cls(**json.loads(path.read_text()))
            return _manifests[key]
        # TypeError: fields of another manifest format (an older release's).
        except (OSError, ValueError, TypeError) as exc:
            raise WeightsError(f"The converted model's manifest {path} cannot be read ({exc}).") from exc


_manifests: dict[tuple[str, int, int], Manifest] = {}


def converted_dir() -> Path:
    return cache_dir() / "converted"


def model_path(weights_sha256: str, pooling: str, input_size: int, precision: str) -> Path:
    """Where the cache keeps the converted model (.xml) for these weights and options; its
    weights (.bin) and manifest (.json) are beside it."""
    return converted_dir() / f"resnet50-{pooling}-{input_size}-{precision}-{weights_sha256[:12]}.xml"


def manifest_path(xml_path: Path) -> Path:
    return Path(xml_path).with_suffix(".json")


def weights_path(xml_path: Path) -> Path:
    """The ``.bin`` that OpenVINO reads beside a model's ``.xml``."""
    return Path(xml_path).with_suffix(".bin")


def model_sha256(xml_path: Path, file_sha256: Callable[[Path], str] = sha256_file) -> str:
    """One sha256 for the model's two files (its graph and its weights)."""
    parts = (file_sha256(Path(xml_path)), file_sha256(weights_path(xml_path)))
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def remove_older_formats() -> list[Path]:
    """Delete the ONNX files an older release converted into the cache (its manifests, which
    share the new files' names, are rewritten by the next conversion); returns what went."""
    removed = sorted(converted_dir().glob("resnet50-*.onnx"))
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _keras_network(weights: str, pooling: str, input_size: int):
    return require("keras.applications").ResNet50(
        weights=weights,
        include_top=False,
        pooling=None if pooling == "flatten" else pooling,
        input_shape=(input_size, input_size, 3),
    )


def _export_fp32(network, input_size: int):
    """``network`` with its preprocessing in front as an OpenVINO model (dynamic batch, uint8
    NHWC input)."""
    tf = require("tensorflow")
    openvino = require("openvino")
    spec = (tf.TensorSpec((None, input_size, input_size, 3), tf.uint8, name="images"),)

    @tf.function(input_signature=spec)
    def preprocessed_network(images):
        # The means are made inside the function: a captured constant would become a second
        # graph input, which the quantizer's calibration could not feed.
        bgr = tf.reverse(tf.cast(images, tf.float32), axis=[-1])
        features = network(bgr - tf.constant(_BGR_MEANS, tf.float32), training=False)
        return tf.identity(features, name="features")

    # OpenVINO reads the traced graph in memory, adding about 0.15 GB to TensorFlow and the network
    # (1.1 GB). tf2onnx, which this replaced, froze, optimised and exported copies of the graph up to
    # 4.4 GB; fetch_weights now peaks at 2.0-2.3 GB, in NNCF's INT8 calibration (+0.9 GB), where it
    # was 4.4-4.6 (bench/fetch_weights_memory.py).
    return openvino.convert_model(preprocessed_network.get_concrete_function())


def openvino_features(model, images: np.ndarray) -> np.ndarray:
    """``model``'s features of ``images``, computed in float32 on the CPU (one stream)."""
    import openvino

    compiled = openvino.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
    return np.asarray(compiled(images)[0], dtype=np.float32).reshape(len(images), -1)


def _check_against_keras(network, model, images: np.ndarray) -> None:
    """Refuse an FP32 model whose features are not Keras' own on these photos."""
    preprocess_input = require("keras.applications.resnet50").preprocess_input
    expected = np.asarray(network.predict_on_batch(preprocess_input(images.astype(np.float32)))).reshape(len(images), -1)
    got = openvino_features(model, images)
    cosine = np.sum(expected * got, axis=1) / (np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1))
    if float(cosine.min()) < _MIN_FP32_COSINE:
        raise WeightsError(
            f"The converted network does not reproduce Keras (cosine {cosine.min():.6f} < {_MIN_FP32_COSINE}); "
            "the conversion is broken, nothing was written."
        )


def _is_residual_add(op) -> bool:
    # A bias or the mean subtraction adds a constant; a residual connection adds two computed tensors.
    return op.get_type_name() == "Add" and all(
        value.get_node().get_type_name() != "Constant" for value in op.input_values()
    )


def _float_head(model) -> list[str]:
    """Names of the convolutions of the stem and first stage (conv1, conv2_x), which INT8 leaves
    in FP32: those that run before conv2_x's last residual Add, which depends on each of them
    while no later convolution can run before it."""
    ops = model.get_ordered_ops()
    ends = [i for i, op in enumerate(ops) if _is_residual_add(op)]
    head = [] if len(ends) < _FLOAT_RESIDUAL_ADDS else ops[: ends[_FLOAT_RESIDUAL_ADDS - 1]]
    names = [op.get_friendly_name() for op in head if op.get_type_name() == "Convolution"]
    if len(names) != _FLOAT_CONVOLUTIONS:
        raise WeightsError(
            f"The converted network has {len(names)} convolutions before its third residual Add, "
            f"not ResNet50's {_FLOAT_CONVOLUTIONS}: this is not Keras' ResNet50."
        )
    return names


def _quantize_int8(model, calibration: np.ndarray):
    nncf = require("nncf")
    # NNCF lists every layer it leaves alone at INFO; its progress bars stay.
    logging.getLogger("nncf").setLevel(logging.WARNING)
    return nncf.quantize(
        model,
        nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))]),
        subset_size=len(calibration),
        # Per-channel symmetric int8 weights, per-tensor activations: what OpenVINO's CPU
        # kernels run fastest; bias correction (the full one) moves each layer's mean back to FP32's.
        preset=nncf.QuantizationPreset.PERFORMANCE,
        fast_bias_correction=False,
        ignored_scope=nncf.IgnoredScope(names=_float_head(model)),
    )


def photos_digest(photos: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(photos).tobytes()).hexdigest()


def convert(
    *,
    weights: str,
    pooling: str = "avg",
    input_size: int = 224,
    precision: str = "fp32",
    calibration: np.ndarray | None = None,
    target: Path | None = None,
) -> Path:
    """Convert the Keras ResNet50 in ``weights`` (a no-top weights file) and return the model's ``.xml`` path.

    ``calibration``: uint8 photos (n, size, size, 3) as the extractor's loader makes them;
    INT8 needs them (a few hundred of the shop's own), FP32 uses the first few (or, without
    any, random pixels) to check itself against Keras.
    ``target``: where to write it (default: ``model_path`` in the cache), its manifest beside it.
    Files are written beside their target and renamed, so a reader never sees half a model.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}.")
    if not Path(weights).is_file():
        raise WeightsError(f"The ResNet50 weights file {weights} does not exist: run `manage.py visual_recs_fetch_weights`.")
    if calibration is None or len(calibration) == 0:
        if precision == "int8":
            raise WeightsError(
                "INT8 is calibrated on the shop's own photos, and none were found: "
                "import some products first, or pass --calibration-dir."
            )
        # FP32 only checks itself against Keras, which any pixels show: a few random ones.
        calibration = np.random.default_rng(0).integers(0, 256, (4, input_size, input_size, 3), dtype=np.uint8)
    calibration = np.ascontiguousarray(calibration, dtype=np.uint8)
    for module in NEEDS[precision]:
        require(module)
    weights_sha256 = sha256_file(Path(weights))
    target = Path(target) if target else model_path(weights_sha256, pooling, input_size, precision)
    target.parent.mkdir(parents=True, exist_ok=True)
    network = _keras_network(weights, pooling, input_size)
    openvino = require("openvino")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        model = _export_fp32(network, input_size)
        _check_against_keras(network, model, calibration[:4])
        if precision == "int8":
            model = _quantize_int8(model, calibration)
        written = Path(tmp) / "model.xml"
        openvino.save_model(model, str(written), compress_to_fp16=False)
        manifest = Manifest(
            weights_sha256=weights_sha256,
            model_sha256=model_sha256(written),
            pooling=pooling,
            input_size=input_size,
            precision=precision,
            calibration_photos=len(calibration) if precision == "int8" else 0,
            calibration_sha256=photos_digest(calibration) if precision == "int8" else "",
            recipe=RECIPES[precision],
        )
        tmp_manifest = Path(tmp) / "manifest.json"
        manifest.write(tmp_manifest)
        # Weights first, manifest last: a process reading in between finds files that do not
        # match their manifest (refused as corrupt), never a half-written model taken as sound.
        os.replace(weights_path(written), weights_path(target))
        os.replace(written, target)
        os.replace(tmp_manifest, manifest_path(target))
    logger.info("Converted ResNet50 (%s) into %s", precision, target)
    return target


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def every_nth(items: Iterable, total: int, wanted: int) -> Iterator:
    """About ``wanted`` items spread evenly over ``items`` (of length ``total``), in one pass."""
    step = max(1, total // max(1, wanted))
    return itertools.islice(itertools.islice(items, 0, None, step), wanted)


def photos_in_dir(directory: Path, wanted: int) -> list[Path]:
    """Image files under ``directory`` (by suffix; each is still decoded safely), evenly sampled."""
    paths = sorted(p for p in Path(directory).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return list(every_nth(paths, len(paths), wanted))


def registered_photos(wanted: int) -> Iterator:
    """Photos of the registered models' objects (Django files), evenly sampled by primary key.

    Streams the keys, so a million-product catalog is never held in memory.
    """
    from ..registry import indexed_models

    for indexed_model in indexed_models().values():
        queryset = indexed_model.with_photo().order_by("pk")
        keys = list(every_nth(queryset.values_list("pk", flat=True).iterator(), queryset.count(), wanted))
        objects = indexed_model.all().prefetch_related(*indexed_model.prefetch).in_bulk(keys)
        for pk in keys:
            photo = indexed_model.image_of(objects[pk]) if pk in objects else None
            if photo is not None:
                yield photo


def load_photos(paths: Iterable, *, size: int, fit: str, limit: int | None = None, on_error: Callable[[object, Exception], None] | None = None) -> np.ndarray:
    """Photos (file paths or Django files) decoded as the extractor's loader does; unreadable ones skipped."""
    from ..exceptions import ImageError
    from ..images import load_image

    photos = []
    for path in paths:
        if limit is not None and len(photos) >= limit:
            break
        try:
            photos.append(load_image(path, size=(size, size), fit=fit))
        except (ImageError, OSError) as exc:
            if on_error is not None:
                on_error(path, exc)
    return np.stack(photos) if photos else np.empty((0, size, size, 3), np.uint8)
