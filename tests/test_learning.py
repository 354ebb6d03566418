"""The learned projection: it must rank held-out products better than the raw ResNet50 features,
refuse labels it cannot learn from in words, and survive a save and load unchanged."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tests.conftest import photo_bytes
from visual_recs.exceptions import LearningError
from visual_recs.learning import Projection, fit_projection


def precision_at_5(vectors: np.ndarray, labels: np.ndarray, genders: np.ndarray) -> float:
    """Share of each product's 5 nearest (same gender, itself left out) with its label."""
    hits = total = 0
    for i in range(len(vectors)):
        candidates = np.flatnonzero((genders == genders[i]) & (np.arange(len(vectors)) != i))
        distances = np.linalg.norm(vectors[candidates] - vectors[i], axis=1)
        nearest = candidates[np.argsort(distances)[:5]]
        hits += int((labels[nearest] == labels[i]).sum())
        total += len(nearest)
    return hits / total


@pytest.fixture(scope="module")
def footwear(resnet_weights, catalog_rows):
    """Real ResNet50 features of 240 men's and women's shoes (7 product types), their labels,
    genders, and whether each is held out (a quarter, by a hash of the id), distinct photos only."""
    from visual_recs.backends.extractors import ResNet50Extractor
    from visual_recs.images import decode_image

    seen, ids = set(), []
    for pid in sorted(catalog_rows, key=int):
        digest = hashlib.sha256(photo_bytes(pid)).digest()
        if catalog_rows[pid]["Gender"] in ("Men", "Women") and digest not in seen:
            seen.add(digest)
            ids.append(pid)
    ids = ids[::2][:240]  # every other id: both genders, many types, 24 s of ResNet50
    images = np.stack([decode_image(photo_bytes(pid)) for pid in ids])
    features = ResNet50Extractor().extract(images)
    held_out = np.array([int(hashlib.sha256(pid.encode()).hexdigest(), 16) % 4 == 0 for pid in ids])
    product_types = np.array([catalog_rows[pid]["ProductType"] for pid in ids])
    genders = np.array([catalog_rows[pid]["Gender"] for pid in ids])
    return features, product_types, genders, held_out


@pytest.mark.slow
def test_projection_ranks_held_out_products_better_than_raw_features(footwear):
    features, product_types, genders, held_out = footwear
    assert 40 <= held_out.sum() <= 80 and len(set(product_types)) >= 5
    projection = fit_projection(features[~held_out], {"ProductType": product_types[~held_out]})
    test = held_out
    raw = precision_at_5(features[test], product_types[test], genders[test])
    learned = precision_at_5(projection.transform(features[test]), product_types[test], genders[test])
    assert learned > raw + 0.03, (raw, learned)


@pytest.mark.slow
def test_blank_labels_are_skipped_and_still_get_vectors(footwear):
    features, product_types, _, _ = footwear
    labels = product_types.astype(object)
    labels[::3] = ""
    labels[1::7] = None
    projection = fit_projection(features, {"ProductType": labels})
    vectors = projection.transform(features)
    assert vectors.shape == (len(features), projection.dims) and np.isfinite(vectors).all()
    # Blank labels are not a class of their own: as many directions as named classes - 1.
    named = {label for label in labels if label}
    assert projection.dims <= len(named) - 1


def blobs(n=60, d=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.array(["a", "b", "c"])[np.arange(n) % 3]
    centres = rng.standard_normal((3, d)) * 3
    features = np.abs(centres[np.arange(n) % 3] + rng.standard_normal((n, d)))
    return features.astype(np.float32), labels


def test_two_fields_side_by_side_with_their_weights():
    features, labels = blobs()
    colours = np.array(["red", "blue"])[np.arange(len(labels)) % 2]
    projection = fit_projection(features, {"ProductType": labels, "Colour": colours}, weights={"ProductType": 1, "Colour": 0.25})
    vectors = projection.transform(features)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(features), 2 + 1)  # 3 types -> 2 directions, 2 colours -> 1
    # Each field's part has unit length times sqrt(weight): 1 + 0.25 in all, squared.
    np.testing.assert_allclose((vectors**2).sum(axis=1), 1.25, rtol=1e-4)


def test_single_product_classes_are_dropped_not_fatal():
    features, labels = blobs()
    labels = labels.copy()
    labels[0] = "only one"
    projection = fit_projection(features, {"ProductType": labels})
    assert projection.dims == 2  # "a", "b", "c" remain; "only one" was dropped


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["a"] * 60, "fewer than 2 classes"),
        (["a"] * 59 + ["b"], "fewer than 2 classes"),  # "b" alone is dropped, "a" is left alone
        (["a"] + [""] * 59, "1 labelled products"),
        ([""] * 60, "0 labelled products"),
    ],
)
def test_labels_it_cannot_learn_from_are_refused_in_words(labels, message):
    features, _ = blobs()
    with pytest.raises(LearningError, match=message) as raised:
        fit_projection(features, {"ProductType": labels})
    assert str(raised.value).startswith("ProductType:")


def test_zero_and_missing_vectors_are_refused():
    features, labels = blobs()
    features[[4, 9]] = 0
    with pytest.raises(LearningError, match=r"2 of 60 feature vectors are all zeros \(rows \[4, 9\]"):
        fit_projection(features, {"ProductType": labels})
    with pytest.raises(LearningError, match="non-empty"):
        fit_projection(np.zeros((0, 16)), {"ProductType": []})
    with pytest.raises(LearningError, match="NaN"):
        fit_projection(np.full((3, 4), np.nan), {"ProductType": ["a", "b", "a"]})
    with pytest.raises(LearningError, match="59 ProductType labels for 60"):
        fit_projection(blobs()[0], {"ProductType": labels[:59]})


def test_round_trip_keeps_vectors_and_version():
    features, labels = blobs()
    projection = fit_projection(features, {"ProductType": labels, "Colour": labels[::-1]}, weights={"ProductType": 1, "Colour": 0.3})
    data = projection.to_bytes()
    assert data[:2] == b"PK"  # an npz, readable without pickle
    loaded = Projection.from_bytes(data)
    assert loaded.fields == ("ProductType", "Colour")
    assert loaded.weights == projection.weights
    np.testing.assert_array_equal(loaded.transform(features), projection.transform(features))
    assert loaded.version == projection.version and len(projection.version) == 16
    # The version follows what the vectors would be: another weight, another version.
    reweighted = Projection(projection.mean, projection.matrices, {"ProductType": 1, "Colour": 0.5})
    assert reweighted.version != projection.version


def test_from_bytes_refuses_what_is_not_a_projection():
    with pytest.raises(LearningError, match="Not a stored projection"):
        Projection.from_bytes(b"not an npz at all")


def test_transform_checks_the_feature_length():
    features, labels = blobs()
    projection = fit_projection(features, {"ProductType": labels})
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        projection.transform(features[:, :8])
