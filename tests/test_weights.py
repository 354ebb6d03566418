"""The ImageNet weights are real: built offline from the npm export, they classify photos correctly."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from visual_recs.backends import weights
from visual_recs.backends.extractors import ResNet50Extractor
from visual_recs.exceptions import WeightsError


@pytest.mark.parametrize(
    "old, new",
    [
        ("conv1", "conv1_conv"),
        ("bn_conv1", "conv1_bn"),
        ("fc1000", "predictions"),
        ("res2a_branch1", "conv2_block1_0_conv"),
        ("bn2a_branch2a", "conv2_block1_1_bn"),
        ("res3d_branch2c", "conv3_block4_3_conv"),
        ("bn4f_branch2b", "conv4_block6_2_bn"),
        ("res5c_branch2c", "conv5_block3_3_conv"),
    ],
)
def test_layer_names_map_to_keras3(old, new):
    assert weights.keras3_layer_name(old) == new


def test_unknown_layer_is_refused():
    with pytest.raises(WeightsError):
        weights.keras3_layer_name("dense_7")


def test_a_tarball_with_another_hash_is_refused(tmp_path):
    fake = tmp_path / weights.NPM_TARBALL
    fake.write_bytes(b"not the published package")
    with pytest.raises(WeightsError, match="refusing"):
        weights.verify_tarball(fake)
    with pytest.raises(WeightsError, match="refusing"):
        weights.ensure_weights(directory=tmp_path / "out", tarball=fake)
    assert not (tmp_path / "out" / weights.NOTOP_FILE).exists()


def test_weights_are_found_explicit_then_env_then_cache_then_keras(tmp_path, monkeypatch, settings):
    cache = tmp_path / "cache"
    cache.mkdir()
    settings.VISUAL_RECS = {"WEIGHTS_CACHE_DIR": str(cache)}
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    assert weights.resolve(None) == "imagenet"

    (cache / weights.NOTOP_FILE).write_bytes(b"cached")
    assert weights.resolve(None) == str(cache / weights.NOTOP_FILE)

    env_file = tmp_path / "env" / weights.NOTOP_FILE
    env_file.parent.mkdir()
    env_file.write_bytes(b"env")
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(env_file))
    assert weights.resolve(None) == str(env_file)

    explicit = tmp_path / "explicit.weights.h5"
    explicit.write_bytes(b"explicit")
    assert weights.resolve(str(explicit)) == str(explicit)

    with pytest.raises(WeightsError, match="does not exist"):
        weights.resolve(str(tmp_path / "missing.weights.h5"))


CONVERT_EXTRA = r'pip install "django-visual-recs\[convert\]"'


def test_building_the_weights_without_keras_names_the_convert_extra(resnet_weights, monkeypatch, tmp_path):
    """The runtime has no Keras: the one machine that builds the weights is told which extra it needs."""
    monkeypatch.setitem(sys.modules, "keras.applications", None)  # importing it now raises ImportError
    tarball = resnet_weights.notop.parent / weights.NPM_TARBALL
    with pytest.raises(WeightsError, match=rf"Building the ResNet50 weights needs the Python package 'keras'.*{CONVERT_EXTRA}"):
        weights.convert(tarball, tmp_path)
    assert not any(tmp_path.iterdir())


def test_the_tensorflow_extractor_without_keras_names_the_convert_extra(resnet_weights, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras.applications", None)
    # 32 px: a network this process has not built (built ones are kept per weights and size).
    with pytest.raises(WeightsError, match=rf"ResNet50Extractor .* needs the Python package 'keras'.*{CONVERT_EXTRA}"):
        ResNet50Extractor(input_size=32).extract(np.zeros((1, 32, 32, 3), np.uint8))


def test_model_id_changes_with_weights_and_options(tmp_path, resnet_weights):
    other = tmp_path / "other.weights.h5"
    other.write_bytes(b"other weights")
    base = ResNet50Extractor()
    ids = {
        base.model_id,
        ResNet50Extractor(weights=str(other)).model_id,
        ResNet50Extractor(pooling="flatten").model_id,
        ResNet50Extractor(fit="letterbox").model_id,
        ResNet50Extractor(input_size=256).model_id,
    }
    assert len(ids) == 5
    assert base.model_id == ResNet50Extractor(batch_size=8).model_id  # batching does not change vectors


@pytest.mark.slow
def test_the_full_network_recognises_a_cat_and_an_espresso(resnet_weights):
    """The converted weights with the classifier: chelsea is a cat, coffee is an espresso/cup."""
    from keras.applications import ResNet50
    from keras.applications.resnet50 import preprocess_input
    from skimage import data

    network = ResNet50(weights=weights.resolve(None, include_top=True))
    labels = weights.imagenet_labels()
    photos = np.stack([np.asarray(Image.fromarray(img).resize((224, 224))) for img in (data.chelsea(), data.coffee())])
    probabilities = network.predict_on_batch(preprocess_input(photos.astype(np.float32)))
    cat, coffee = (labels[int(i)] for i in probabilities.argmax(axis=1))
    assert cat in {"tabby", "tiger_cat", "Egyptian_cat", "Persian_cat", "Siamese_cat"}
    assert coffee in {"espresso", "cup", "coffee_mug"}
    assert probabilities[0].max() > 0.5 and probabilities[1].max() > 0.5


@pytest.mark.slow
def test_extractor_gives_pooled_and_flattened_vectors(resnet_weights):
    from skimage import data

    photo = np.asarray(Image.fromarray(data.chelsea()).resize((224, 224)))[None]
    pooled = ResNet50Extractor().extract(photo)
    flat = ResNet50Extractor(pooling="flatten").extract(photo)
    assert pooled.shape == (1, 2048) and pooled.dtype == np.float32
    assert flat.shape == (1, 7 * 7 * 2048)
    # Average pooling of the flattened 7x7x2048 map is the pooled vector.
    np.testing.assert_allclose(flat.reshape(49, 2048).mean(axis=0), pooled[0], rtol=1e-3, atol=1e-4)
