"""Colour features of the product, not of its backdrop, and the composed search vector."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import photo_bytes
from visual_recs import appearance
from visual_recs.images import decode_image

RED_TSHIRT = "3855"  # catalog Colour "Red", a red T-shirt on a white backdrop
BLUE_SHOES = "34835"  # catalog Colour "Blue", blue sports shoes on a white backdrop


def shares(features: np.ndarray) -> dict[str, float]:
    """Shares of a colour histogram (the features squared) by broad colour, from the palette's Lab."""
    histogram = features.astype(np.float64) ** 2
    lightness, a, b = appearance.PALETTE.T
    return {
        "red": histogram[(a > 20) & (b > 0)].sum(),
        "blue": histogram[b < -20].sum(),
        "white": histogram[(lightness > 85) & (np.abs(a) < 20) & (np.abs(b) < 20)].sum(),
    }


def product_on(backdrop, product=(200, 30, 30), size=224) -> np.ndarray:
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[:] = backdrop
    pixels[60:170, 70:150] = product
    return pixels


@pytest.mark.parametrize(("product_id", "main", "other"), [(RED_TSHIRT, "red", "blue"), (BLUE_SHOES, "blue", "red")])
def test_catalog_photo_colours_are_the_product_s_not_the_backdrop(product_id, main, other):
    pixels = decode_image(photo_bytes(product_id))
    features = appearance.colour_features(pixels)
    assert features.shape == (appearance.COLOUR_DIMS,)
    assert features.dtype == np.float32
    assert np.linalg.norm(features) == pytest.approx(1.0, abs=1e-5)
    found = shares(features)
    # Most of the photo is white backdrop, yet white is almost absent from the histogram.
    assert appearance.foreground_mask(pixels).mean() < 0.5
    assert found["white"] < 0.1
    assert found[main] > 0.5
    assert found[other] < 0.05


def test_red_and_blue_products_are_far_apart_and_each_near_itself():
    red = appearance.colour_features(decode_image(photo_bytes(RED_TSHIRT)))
    blue = appearance.colour_features(decode_image(photo_bytes(BLUE_SHOES)))
    mirrored_red = appearance.colour_features(decode_image(photo_bytes(RED_TSHIRT))[:, ::-1])
    assert np.linalg.norm(red - blue) > 1.0  # Hellinger distance: sqrt(2) for disjoint colours
    assert np.linalg.norm(red - mirrored_red) < 0.05


@pytest.mark.parametrize("backdrop", [(255, 255, 255), (232, 232, 232), (245, 238, 222)])
def test_backdrop_is_measured_not_assumed_white(backdrop):
    reference = appearance.colour_features(product_on((255, 255, 255)))
    features = appearance.colour_features(product_on(backdrop))
    mask = appearance.foreground_mask(product_on(backdrop))
    assert mask.mean() == pytest.approx(110 * 80 / 224**2, abs=0.01)
    assert np.linalg.norm(features - reference) < 0.05
    # The same backdrop with a blue product instead: far.
    assert np.linalg.norm(appearance.colour_features(product_on(backdrop, product=(30, 40, 190))) - features) > 1.0


def test_a_white_product_on_white_still_says_white():
    pixels = product_on((255, 255, 255), product=(250, 250, 250))
    assert shares(appearance.colour_features(pixels))["white"] > 0.9


def test_colour_features_refuse_a_grey_array():
    with pytest.raises(ValueError, match="RGB image"):
        appearance.colour_features(np.zeros((32, 32), dtype=np.uint8))


def test_compose_scales_each_part_to_its_weight():
    parts = {"learned": np.array([[3.0, 4.0], [0.0, 0.0]]), "colour": np.array([[0.0, 10.0], [1.0, 0.0]])}
    vectors = appearance.compose(parts, {"learned": 4.0, "colour": 1.0})
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0], [1.2, 1.6, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(vectors[1], [0.0, 0.0, 1.0, 0.0])  # a zero row stays zero, no NaN
    assert appearance.compose(parts, {"learned": 1.0, "colour": 0.0}).shape == (2, 2)  # weight 0: left out


@pytest.mark.parametrize(
    ("weights", "message"),
    [({"texture": 1.0}, "not there"), ({"learned": -1.0}, ">= 0"), ({"learned": 0.0}, "above 0")],
)
def test_compose_refuses_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        appearance.compose({"learned": np.ones((2, 3))}, weights)
