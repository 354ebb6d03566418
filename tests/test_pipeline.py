"""From a saved product with a real photo to a stored ResNet50 vector and a neighbour list (eager tasks)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ids_of
from visual_recs import indexing, registry
from visual_recs.contrib.catalog.models import Product
from visual_recs.models import FeatureVector, SimilarItem

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_saving_products_indexes_them_and_lists_stay_within_gender(resnet_weights, catalog_rows, make_product):
    men_shoes = ids_of(catalog_rows, gender="Men", count=5)
    girls = ids_of(catalog_rows, gender="Girls", count=5)
    products = [make_product(pid) for pid in men_shoes + girls]

    vectors = FeatureVector.objects.filter(object_id__in=[str(p.pk) for p in products])
    assert vectors.count() == 10
    for vector in vectors:
        assert vector.status == FeatureVector.Status.READY, vector.error
        assert vector.dims == 2048 and vector.as_array().shape == (2048,)
        assert vector.model_id.startswith("resnet50:avg:224:squash:")
        assert np.isfinite(vector.as_array()).all() and vector.as_array().any()

    gender_of = {str(p.pk): p.gender for p in products}
    for product in products:
        entries = list(SimilarItem.objects.filter(source_id=str(product.pk)).order_by("distance", "target_id"))
        # Lists were repaired as later products arrived: each has every other product of its gender.
        assert len(entries) == 4
        assert all(gender_of[e.target_id] == product.gender for e in entries)
        distances = [e.distance for e in entries]
        assert distances == sorted(distances) and distances[0] > 0

    shown = indexing.similar_to(products[0], limit=3)
    assert [s.object.gender for s in shown] == ["Men"] * 3
    assert shown[0].distance <= shown[1].distance <= shown[2].distance


def test_incremental_lists_equal_a_full_rebuild(resnet_weights, catalog_rows, make_product):
    for pid in ids_of(catalog_rows, gender="Women", count=8):
        make_product(pid)
    def stored():
        rows = SimilarItem.objects.order_by("source_id", "distance")
        return [row[:2] for row in rows.values_list("source_id", "target_id")], [
            distance for distance in rows.values_list("distance", flat=True)
        ]

    before, before_distances = stored()
    indexing.rebuild_partition(registry.get("products"), "Women")
    after, after_distances = stored()
    assert before == after and len(after) == 8 * 7
    # pgvector computes distances on its half-precision copies, repairs on the vectors it returns.
    assert after_distances == pytest.approx(before_distances, rel=1e-6)


def test_unchanged_photo_is_skipped_and_a_new_photo_reindexed(
    resnet_weights, catalog_rows, make_product, django_capture_on_commit_callbacks
):
    pid, other = ids_of(catalog_rows, gender="Boys", count=2)
    product = make_product(pid)
    first = FeatureVector.objects.get(object_id=pid)
    product.title = "Renamed"
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        product.save()
    assert callbacks == []  # same photo, same partition: nothing queued
    assert indexing.index(product) == "unchanged"
    assert FeatureVector.objects.get(object_id=pid).vector == first.vector

    from django.core.files.base import ContentFile

    from tests.conftest import photo_bytes

    with django_capture_on_commit_callbacks(execute=True):
        product.image.save(f"{other}.jpg", ContentFile(photo_bytes(other)))
    second = FeatureVector.objects.get(object_id=pid)
    assert second.status == FeatureVector.Status.READY
    assert second.image_sha256 != first.image_sha256 and second.vector != first.vector


def test_product_without_photo_gets_no_vector(resnet_weights):
    product = Product.objects.create(title="No photo yet", gender="Men")
    assert not FeatureVector.objects.filter(object_id=str(product.pk)).exists()
    assert indexing.index(product) == "no_image"
