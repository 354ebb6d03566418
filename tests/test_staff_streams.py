"""The staff paths at catalog scale: ``index_overview`` (the status endpoint) and the sweep's
``objects_needing_work`` are answered by the database, and a fit reads its vectors in batches.

A catalog with every state a vector can be in, on the bundled Product (integer keys) and the
existing shop's Garment (UUID keys, stored by SQLite as 32 hex digits): the same answers
as counting Python sets of ids gave, from queries that never return every id.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import use_fake_extractor
from tests.testapp.models import Garment
from visual_recs import indexing, queue, registry
from visual_recs.backends import get_extractor
from visual_recs.contrib.catalog.models import Product
from visual_recs.indexing import fitting
from visual_recs.models import FeatureVector, IndexStatus

pytestmark = pytest.mark.django_db

#: Each state's name -> (has a photo, the vector row's fields or None for no row).
STATES = {
    "ready": (True, {"status": IndexStatus.READY, "list_radius": 1.0}),
    "pending": (True, {"status": IndexStatus.PENDING}),
    "failed_to_retry": (True, {"status": IndexStatus.FAILED, "attempts": 1}),
    "failed_for_good": (True, {"status": IndexStatus.FAILED, "attempts": 3}),
    "stale": (True, {"status": IndexStatus.READY, "list_radius": 1.0, "model_id": "an-older-extractor"}),
    "lists_to_repair": (True, {"status": IndexStatus.READY, "list_radius": None}),
    "not_indexed": (True, None),
    "no_photo": (False, None),
    "photo_removed_still_ready": (False, {"status": IndexStatus.READY, "list_radius": 1.0}),
}
NEEDING_WORK = {"pending", "failed_to_retry", "stale", "lists_to_repair", "not_indexed"}


def make_states(indexed_model, make_object) -> dict[str, object]:
    """One object per state of ``STATES``, and a vector row whose object was deleted; by state name."""
    model_id = get_extractor().model_id
    objects = {}
    with queue.paused():
        for name, (photographed, vector) in STATES.items():
            obj = objects[name] = make_object(name, photographed)
            if vector is not None:
                FeatureVector.objects.create(
                    content_type=indexed_model.content_type,
                    object_id=str(obj.pk),
                    partition="Men",
                    listed=True,
                    dims=4,
                    vector=FeatureVector.to_bytes(np.ones(4, dtype=np.float32)),
                    **{"model_id": model_id, **vector},
                )
        gone = make_object("deleted", True)
        FeatureVector.objects.create(
            content_type=indexed_model.content_type, object_id=str(gone.pk), partition="Men",
            status=IndexStatus.PENDING, model_id=model_id,
        )
        gone.delete()
    return objects


def product(name: str, photographed: bool) -> Product:
    return Product.objects.create(title=name, gender="Men", image=f"{name}.jpg" if photographed else "")


def garment(name: str, photographed: bool) -> Garment:
    return Garment.objects.create(name=name, audience="Men", photo=f"{name}.jpg" if photographed else None)


@pytest.fixture
def states(fake_extractor):
    return {
        "products": make_states(registry.get("products"), product),
        "garments": make_states(registry.get("garments"), garment),
    }


@pytest.mark.parametrize("key", ["products", "garments"])
def test_objects_needing_work_are_every_state_the_sweep_redoes_in_one_query(states, key):
    with CaptureQueriesContext(connection) as queries:
        found = set(indexing.objects_needing_work(registry.get(key)).iterator(chunk_size=2))
    assert found == {states[key][name] for name in NEEDING_WORK}
    # The ids of the catalog never come to Python: one query, of the objects that need work.
    assert len(queries) == 1


def test_index_overview_counts_every_state_with_counts_only(states):
    with CaptureQueriesContext(connection) as queries:
        overview = indexing.index_overview()["models"]
    for key in ("products", "garments"):
        assert {name: overview[key][name] for name in ("objects", "no_image", "not_indexed", "stale", "lists_to_repair", "failed_to_retry")} == {
            "objects": 9, "no_image": 2, "not_indexed": 1, "stale": 1, "lists_to_repair": 1, "failed_to_retry": 1,
        }, key
        # The deleted object's pending row is still counted in its partition.
        assert overview[key]["partitions"] == {"Men": {"pending": 2, "ready": 4, "failed": 2}}, key
    # Every query is an aggregate: no list of ids is read to be counted in Python.
    assert queries.captured_queries and all("COUNT(" in query["sql"].upper() for query in queries.captured_queries)


def test_a_fit_reads_its_vectors_into_one_array_never_a_python_object_per_row_beside_it(settings, monkeypatch):
    use_fake_extractor(settings)
    products = registry.get("products")
    count, dims = 3000, 1024
    vectors = np.random.default_rng(0).standard_normal((count, dims), dtype=np.float32)
    FeatureVector.objects.bulk_create(
        [
            FeatureVector(
                content_type=products.content_type, object_id=str(pk), partition="Men", status=IndexStatus.READY,
                model_id=get_extractor().model_id, dims=dims, vector=FeatureVector.to_bytes(vectors[pk]),
            )
            for pk in range(count)
        ],
        batch_size=500,
    )
    monkeypatch.setattr(fitting, "READ_BATCH", 100)
    tracemalloc.start()
    try:
        object_ids, features = fitting._stored_vectors(products)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert object_ids == [str(pk) for pk in range(count)]
    np.testing.assert_array_equal(features, vectors)
    # The array, the ids and one batch of rows; reading every row first would double it.
    assert peak < 1.25 * features.nbytes, (peak, features.nbytes)
