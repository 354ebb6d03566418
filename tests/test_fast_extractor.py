"""The fast extractor (ResNet50 converted for OpenVINO, run without TensorFlow) against TensorFlow on real
catalog photos, and what it does with a converted file it must not trust.

The thresholds sit between what a sound conversion measures on these photos (see
bench/extract.py for the whole catalog) and what a broken one gives: a network fed RGB for
BGR, or without its mean subtraction, keeps a cosine near 0.9 and shares about half its lists.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from tests.conftest import CATALOG_DIR
from visual_recs.backends import conversion
from visual_recs.backends.extractors import ResNet50Extractor
from visual_recs.backends.fast import FastResNet50Extractor
from visual_recs.exceptions import WeightsError
from visual_recs.images import load_image

pytestmark = pytest.mark.slow

SAMPLE = 320  # catalog photos the lists are compared on (every 6th or so, both genders and more)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def nearest_5(vectors: np.ndarray, groups: np.ndarray) -> list[set[int]]:
    """Each photo's 5 nearest others of its group (gender), as sets of indices."""
    found = []
    for i, vector in enumerate(vectors):
        distances = np.linalg.norm(vectors - vector, axis=1)
        distances[(groups != groups[i]) | (np.arange(len(vectors)) == i)] = np.inf
        found.append(set(np.argsort(distances, kind="stable")[:5].tolist()))
    return found


def overlap_at_5(a: list[set[int]], b: list[set[int]]) -> float:
    return float(np.mean([len(x & y) / 5 for x, y in zip(a, b)]))


@pytest.fixture(scope="module")
def sample(resnet_weights, catalog_rows):
    """SAMPLE catalog photos spread over the catalog, as the loader decodes them, with their genders."""
    rows = sorted(catalog_rows.values(), key=lambda row: int(row["ProductId"]))
    rows = rows[:: len(rows) // SAMPLE][:SAMPLE]
    photos = np.stack([load_image(CATALOG_DIR / "images" / row["Image"]) for row in rows])
    return photos, np.array([row["Gender"] for row in rows])


@pytest.fixture(scope="module")
def vectors(sample):
    photos, _ = sample
    return {
        "tf": ResNet50Extractor().extract(photos),
        "fp32": FastResNet50Extractor(precision="fp32").extract(photos),
        "int8": FastResNet50Extractor(precision="int8").extract(photos),
    }


def test_fp32_computes_what_tensorflow_computes(vectors):
    assert cosines(vectors["tf"], vectors["fp32"]).min() > 0.9999
    np.testing.assert_allclose(vectors["fp32"], vectors["tf"], rtol=1e-3, atol=2e-3)


def test_int8_stays_close_to_tensorflow(vectors):
    similarity = cosines(vectors["tf"], vectors["int8"])
    assert similarity.mean() > 0.995 and similarity.min() > 0.97


def test_the_neighbour_lists_agree_with_tensorflows(sample, vectors):
    _, genders = sample
    reference = nearest_5(vectors["tf"], genders)
    assert overlap_at_5(reference, nearest_5(vectors["fp32"], genders)) >= 0.98
    # On these photos the recipe measured 0.94 and the same network quantized whole (stem and
    # first stage too) 0.89: the line catches a conversion that loses what keeps the lists.
    assert overlap_at_5(reference, nearest_5(vectors["int8"], genders)) >= 0.915


def test_flip_and_colour_options_work_as_with_tensorflow(sample):
    photos = sample[0][:8]
    fast = FastResNet50Extractor(precision="fp32", flip_average=True, colour=True).extract(photos)
    reference = ResNet50Extractor(flip_average=True, colour=True).extract(photos)
    assert fast.shape == reference.shape == (8, 2048 + 242)
    np.testing.assert_allclose(fast, reference, rtol=1e-3, atol=2e-3)


def test_model_id_names_the_precision_and_the_converted_file(resnet_weights):
    fp32, int8 = FastResNet50Extractor(precision="fp32"), FastResNet50Extractor(precision="int8")
    for extractor in (fp32, int8):
        digest = conversion.model_sha256(extractor.model_path())[:12]
        assert extractor.model_id.endswith(f":openvino-{extractor.precision}-{digest}")
        # The same weights and options as TensorFlow's, so the prefix is its model_id.
        assert extractor.model_id.startswith(ResNet50Extractor().model_id + ":")
    assert fp32.model_id != int8.model_id


def test_int8_leaves_the_stem_and_first_stage_in_fp32(resnet_weights):
    import openvino

    model = openvino.Core().read_model(FastResNet50Extractor(precision="int8").model_path())
    convolutions = [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    quantized = [conv.input_value(0).get_node().get_type_name() == "FakeQuantize" for conv in convolutions]
    # ResNet50's 53: conv1 and conv2_x's ten read FP32 activations, every later one int8 ones.
    assert quantized == [False] * 11 + [True] * 42


# --- files it must not trust ------------------------------------------------------------------


@pytest.fixture
def int8_copy(resnet_weights, tmp_path) -> Path:
    """A copy of the converted INT8 model (graph, weights) and its manifest, to damage."""
    source = FastResNet50Extractor(precision="int8").model_path()
    target = tmp_path / "copy.xml"
    for path in (Path, conversion.weights_path, conversion.manifest_path):
        shutil.copy(path(source), path(target))
    return target


@pytest.mark.parametrize("part", [Path, conversion.weights_path], ids=["graph", "weights"])
def test_a_corrupt_converted_file_is_refused_with_the_command(int8_copy, sample, part):
    damaged = part(int8_copy)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"corrupt.*visual_recs_fetch_weights"):
        FastResNet50Extractor(precision="int8", model=str(int8_copy)).extract(sample[0][:1])


def test_a_converted_model_without_its_weights_file_names_the_command(int8_copy, sample):
    conversion.weights_path(int8_copy).unlink()
    with pytest.raises(WeightsError, match=r"cannot be read.*visual_recs_fetch_weights"):
        FastResNet50Extractor(precision="int8", model=str(int8_copy)).extract(sample[0][:1])


def test_a_manifest_of_an_older_release_is_converted_again(int8_copy):
    manifest = json.loads(conversion.manifest_path(int8_copy).read_text())
    manifest["onnx_sha256"] = manifest.pop("model_sha256")  # format 1 named the ONNX file's hash
    conversion.manifest_path(int8_copy).write_text(json.dumps(manifest))
    extractor = FastResNet50Extractor(precision="int8", model=str(int8_copy))
    with pytest.raises(WeightsError, match="manifest .* cannot be read"):
        extractor.model_id
    assert not extractor.is_converted()


def test_a_file_converted_from_other_weights_is_refused(int8_copy):
    manifest = json.loads(conversion.manifest_path(int8_copy).read_text())
    manifest["weights_sha256"] = "0" * 64
    conversion.manifest_path(int8_copy).write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="made from other weights"):
        FastResNet50Extractor(precision="int8", model=str(int8_copy)).model_id


def test_a_file_made_by_another_version_of_the_conversion_is_converted_again(int8_copy):
    manifest = json.loads(conversion.manifest_path(int8_copy).read_text())
    manifest["recipe"] = "qdq-v0"
    conversion.manifest_path(int8_copy).write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match=r"another version of the conversion \(qdq-v0\)"):
        FastResNet50Extractor(precision="int8", model=str(int8_copy)).model_id


def test_a_missing_converted_file_names_the_command(resnet_weights, tmp_path):
    with pytest.raises(WeightsError, match=r"missing: run `manage.py visual_recs_fetch_weights`"):
        FastResNet50Extractor(model=str(tmp_path / "nothing.xml")).extract(np.zeros((1, 224, 224, 3), np.uint8))


def test_a_converted_file_of_other_options_is_refused(resnet_weights):
    int8_path = FastResNet50Extractor(precision="int8").model_path()
    with pytest.raises(WeightsError, match="int8 avg 224px, the settings ask for fp32"):
        FastResNet50Extractor(precision="fp32", model=str(int8_path)).model_id


def test_converting_without_tensorflow_says_which_package_to_install(resnet_weights, monkeypatch, tmp_path):
    import keras  # loaded first, as when Keras is installed: TensorFlow alone is missing

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow now raises ImportError
    with pytest.raises(WeightsError, match=r"needs the Python package 'tensorflow-cpu'.*pip install tensorflow-cpu"):
        FastResNet50Extractor(precision="fp32", model=str(tmp_path / "new.xml")).convert(np.empty((0, 224, 224, 3)))
    assert list(tmp_path.iterdir()) == []


def test_quantizing_without_nncf_says_which_package_to_install(resnet_weights, monkeypatch, tmp_path, sample):
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(WeightsError, match=r"needs the Python package 'nncf'.*pip install nncf"):
        FastResNet50Extractor(precision="int8", model=str(tmp_path / "new.xml")).convert(sample[0][:4])
    assert list(tmp_path.iterdir()) == []


def test_a_conversion_that_does_not_reproduce_keras_writes_nothing(resnet_weights, sample, monkeypatch, tmp_path):
    # The means in RGB order instead of BGR: what a slip in the preprocessing would do.
    monkeypatch.setattr(conversion, "_BGR_MEANS", conversion._BGR_MEANS[::-1])
    target = tmp_path / "broken.xml"
    with pytest.raises(WeightsError, match="does not reproduce Keras"):
        FastResNet50Extractor(precision="fp32", model=str(target)).convert(sample[0][:4])
    assert list(tmp_path.iterdir()) == []


def test_int8_without_photos_to_calibrate_on_is_refused(resnet_weights, tmp_path):
    with pytest.raises(WeightsError, match="calibrated on the shop's own photos"):
        FastResNet50Extractor(precision="int8", model=str(tmp_path / "new.xml")).convert(np.empty((0, 224, 224, 3)))


@pytest.mark.django_db
def test_the_command_waits_for_photos_before_calibrating_the_configured_int8(resnet_weights, settings, tmp_path):
    target = tmp_path / "int8.xml"
    settings.VISUAL_RECS = {
        **settings.VISUAL_RECS,
        "EXTRACTOR": {
            "BACKEND": "visual_recs.backends.fast.FastResNet50Extractor",
            "OPTIONS": {"precision": "int8", "model": str(target)},
        },
    }
    out = io.StringIO()
    call_command("visual_recs_fetch_weights", stdout=out)  # no products have photos yet
    assert "there are none yet: run this command again" in out.getvalue() and not target.exists()
    call_command("visual_recs_fetch_weights", calibration_dir=CATALOG_DIR / "images", calibration_photos=16, stdout=out)
    manifest = conversion.Manifest.read(conversion.manifest_path(target))
    assert manifest.precision == "int8" and manifest.calibration_photos == 16
    assert FastResNet50Extractor(precision="int8", model=str(target)).model_id.endswith(manifest.model_sha256[:12])


# --- a process that only searches -------------------------------------------------------------


def test_a_process_running_the_fast_extractor_never_imports_tensorflow(resnet_weights):
    script = (
        "import sys, django, numpy as np; django.setup();"
        "from visual_recs.backends import get_extractor;"
        "vector = get_extractor().extract(np.zeros((1, 224, 224, 3), np.uint8));"
        "print(vector.shape, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    )
    assert result.stdout.split("\n")[-2] == "(1, 2048) False False", result.stderr[-2000:]


@pytest.mark.django_db
def test_int8_calibrates_on_an_even_sample_of_the_registered_photos(fake_extractor, make_product, catalog_rows, django_assert_max_num_queries):
    ids = sorted(catalog_rows, key=int)[:9]
    for product_id in ids:
        make_product(product_id)
    from visual_recs import registry

    # Per registered model the count, the keys and the objects: not a query per photo.
    with django_assert_max_num_queries(3 * len(registry.indexed_models())):
        photos = list(conversion.registered_photos(3))
    assert [Path(photo.name).stem for photo in photos] == [ids[0], ids[3], ids[6]]
    assert conversion.load_photos(photos, size=224, fit="squash").shape == (3, 224, 224, 3)
