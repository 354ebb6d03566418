"""``ResNet50Extractor(flip_average=True)``: a photo and its mirror image get one vector."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import photo_bytes
from visual_recs.backends.extractors import ResNet50Extractor
from visual_recs.images import decode_image


@pytest.mark.slow
def test_flip_average_is_the_mean_of_both_sides_and_mirror_invariant(resnet_weights):
    images = np.stack([decode_image(photo_bytes(pid)) for pid in ("13683", "3855")])
    plain = ResNet50Extractor().extract(images)
    mirrored = ResNet50Extractor().extract(images[:, :, ::-1])
    averaged = ResNet50Extractor(flip_average=True).extract(images)
    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, rtol=1e-4, atol=1e-4)
    assert not np.allclose(plain, mirrored, atol=1e-3)  # the network itself is not mirror-invariant
    np.testing.assert_allclose(ResNet50Extractor(flip_average=True).extract(images[:, :, ::-1]), averaged, rtol=1e-4, atol=1e-4)


def test_flip_average_is_part_of_model_id_only_when_on(resnet_weights):
    plain, flipped = ResNet50Extractor(), ResNet50Extractor(flip_average=True)
    assert ":flip" not in plain.model_id
    assert flipped.model_id == plain.model_id.replace(":squash:", ":squash:flip:")
