"""The read path: what a product page gets from ``indexing.recommendations`` / ``similar_to``.

The fast colour extractor stands in for ResNet50: this is read logic (filters, duplicates,
fallbacks, statuses, query counts), not the network's judgement.
"""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import ids_of, photo_bytes
from visual_recs import indexing, queue, registry
from visual_recs.exceptions import ImageTooLarge, UnknownPartition
from visual_recs.contrib.catalog.models import Product
from visual_recs.models import FeatureVector, SimilarItem

pytestmark = [pytest.mark.django_db]

# Byte-identical photos the sample catalog lists under two product ids each.
SAME_PHOTO_PAIRS = [("40143", "41998"), ("31120", "34008")]


@pytest.fixture
def catalog(fake_extractor, catalog_rows, make_catalog):
    """Eight men's and eight women's products, indexed, with their neighbour lists."""
    men = make_catalog(ids_of(catalog_rows, gender="Men", count=8))
    women = make_catalog(ids_of(catalog_rows, gender="Women", count=8))
    return men, women


def targets_of(product) -> list[str]:
    return list(
        SimilarItem.objects.filter(source_id=str(product.pk)).order_by("distance", "target_id").values_list("target_id", flat=True)
    )


def test_similar_items_are_the_nearest_of_the_same_partition(catalog):
    men, _ = catalog
    found = indexing.recommendations(men[0], 5)
    assert (found.status, found.partition, found.error) == ("ready", "Men", "")
    assert [item.object.gender for item in found.items] == ["Men"] * 5
    assert [item.rank for item in found.items] == [1, 2, 3, 4, 5]
    distances = [item.distance for item in found.items]
    assert distances == sorted(distances) and distances[0] > 0
    assert [str(item.object.pk) for item in found.items] == targets_of(men[0])[:5]
    assert [s.object for s in indexing.similar_to(men[0], limit=2)] == [item.object for item in found.items[:2]]


def test_deactivated_deleted_or_moved_products_never_show_even_before_lists_are_rebuilt(catalog):
    men, _ = catalog
    source = men[0]
    deactivated, deleted, moved = targets_of(source)[:3]
    # Behind the signals' back, so the stored lists still name all three.
    Product.objects.filter(pk=deactivated).update(is_active=False)
    Product.objects.filter(pk=moved).update(gender="Women")
    with queue.paused():
        Product.objects.get(pk=deleted).delete()
    assert targets_of(source)[:3] == [deactivated, deleted, moved]

    shown = [str(item.object.pk) for item in indexing.recommendations(source, 20).items]
    assert len(shown) == len(targets_of(source)) - 3
    assert not {deactivated, deleted, moved} & set(shown)


@pytest.fixture
def same_photo_catalog(fake_extractor, catalog_rows, make_catalog):
    """Girls' products, two pairs of which share a photo byte for byte."""
    pair_ids = [pid for pair in SAME_PHOTO_PAIRS for pid in pair]
    others = [pid for pid in ids_of(catalog_rows, gender="Girls", count=8) if pid not in pair_ids]
    products = make_catalog([*pair_ids, *others])
    return {str(p.pk): p for p in products}


def test_exact_duplicates_of_a_photo_are_left_out(same_photo_catalog):
    products = same_photo_catalog
    (own, twin), (first_copy, second_copy) = SAME_PHOTO_PAIRS
    assert targets_of(products[own])[0] == twin  # distance 0: the top of the stored list

    shown = [str(item.object.pk) for item in indexing.recommendations(products[own], 20).items]
    assert twin not in shown
    # The other pair: one photo, shown once.
    assert len({first_copy, second_copy} & set(shown)) == 1
    assert len(shown) == len(targets_of(products[own])) - 2


def test_duplicates_stay_when_the_setting_is_off(same_photo_catalog, settings):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EXCLUDE_DUPLICATE_PHOTOS": False}
    products = same_photo_catalog
    own, twin = SAME_PHOTO_PAIRS[0]
    found = indexing.recommendations(products[own], 20).items
    assert str(found[0].object.pk) == twin and found[0].distance == pytest.approx(0, abs=1e-6)
    assert [str(item.object.pk) for item in found] == targets_of(products[own])


def test_a_ready_product_without_a_list_gets_its_neighbours_from_the_index(catalog):
    men, _ = catalog
    source = men[0]
    expected = [(item.object.pk, item.distance) for item in indexing.recommendations(source, 5).items]
    SimilarItem.objects.filter(source_id=str(source.pk)).delete()

    found = indexing.recommendations(source, 5)
    assert found.status == "ready"
    assert [(item.object.pk, pytest.approx(item.distance)) for item in found.items] == expected
    assert not SimilarItem.objects.filter(source_id=str(source.pk)).exists()  # computed, not written


def test_the_status_says_why_there_are_no_items(catalog, make_product, catalog_rows):
    men, _ = catalog
    no_photo = Product.objects.create(title="No photo yet", gender="Men")
    assert (indexing.recommendations(no_photo).status, indexing.recommendations(no_photo).items) == ("no_image", [])

    with queue.paused():  # saved while the broker was down: a photo, no vector row yet
        never_indexed = make_product(ids_of(catalog_rows, gender="Men", count=9)[8])
    assert (indexing.recommendations(never_indexed).status, indexing.recommendations(never_indexed).items) == (
        "pending",
        [],
    )

    broken = Product(title="Broken", gender="Men")
    broken.image.save("broken.jpg", ContentFile(b"not a photo"), save=False)
    broken.save()
    assert indexing.index(broken) == "failed"
    found = indexing.recommendations(broken)
    assert (found.status, found.items) == ("failed", [])
    assert "not an image" in found.error

    # A vector made by another extractor, with its list gone: pending until the sweep redoes it.
    FeatureVector.objects.filter(object_id=str(men[1].pk)).update(model_id="another-extractor")
    SimilarItem.objects.filter(source_id=str(men[1].pk)).delete()
    assert indexing.recommendations(men[1]).status == "pending"


def test_a_pending_product_keeps_showing_its_previous_list(catalog):
    men, _ = catalog
    FeatureVector.objects.filter(object_id=str(men[0].pk)).update(status=FeatureVector.Status.PENDING)
    found = indexing.recommendations(men[0], 3)
    assert found.status == "pending" and len(found.items) == 3


@pytest.mark.parametrize("limit", [1, 5, 20])
def test_recommendations_take_four_queries_whatever_the_limit(catalog, django_assert_num_queries, limit):
    men, _ = catalog
    registry.for_model(Product).content_type  # the content type is cached per process
    # The product's row, its list with the photo hashes, the rules, the objects shown and available now.
    with django_assert_num_queries(4):
        assert len(indexing.recommendations(men[0], limit).items) == min(limit, 7)


def test_the_index_fallback_asks_the_index_for_one_product_whatever_the_limit(catalog):
    men, _ = catalog
    SimilarItem.objects.filter(source_id=str(men[0].pk)).delete()
    registry.for_model(Product).content_type
    indexing.recommendations(men[1], 1)  # the index backend's first use in this process
    counts = {}
    for limit in (1, 7):
        with CaptureQueriesContext(connection) as queries:
            assert len(indexing.recommendations(men[0], limit).items) == limit
        counts[limit] = len(queries)
        # The product's row, its (empty) list, its vector and neighbours from the index, their
        # photo hashes, the products: never a query over the partition's vectors.
        assert not [q for q in queries.captured_queries if "entry" in q["sql"] and "object_id" not in q["sql"]]
    assert counts[1] == counts[7] <= 8


def test_index_states_of_a_page_of_objects_take_one_query(catalog):
    men, women = catalog
    page = [*men, *women, Product.objects.create(title="No photo", gender="Men")]
    with CaptureQueriesContext(connection) as queries:
        states = indexing.index_states(page)
    assert len(queries) == 1
    assert [states[str(p.pk)].status for p in page] == ["ready"] * 16 + ["no_image"]
    assert states[str(women[0].pk)].partition == "Women"


def test_search_by_image_finds_the_same_photo_first_and_respects_the_filter(catalog):
    men, women = catalog
    products = registry.get("products")
    photo = photo_bytes(str(men[3].pk))
    found = indexing.search_by_image(products, photo, limit=4)
    assert found[0].object == men[3] and found[0].distance == pytest.approx(0, abs=1e-5)
    assert [item.rank for item in found] == [1, 2, 3, 4]

    Product.objects.filter(pk=men[3].pk).update(is_active=False)
    assert men[3] not in [item.object for item in indexing.search_by_image(products, photo, limit=16)]

    in_women = indexing.search_by_image(products, photo, partition="Women", limit=16)
    assert {item.object.gender for item in in_women} == {"Women"} and len(in_women) == 8


def test_search_by_image_refuses_unknown_partitions_and_oversized_photos(catalog, settings):
    products = registry.get("products")
    photo = photo_bytes("13683")
    with pytest.raises(UnknownPartition, match="'Aliens' is not one of the gender values of products"):
        indexing.search_by_image(products, photo, partition="Aliens")
    assert indexing.search_by_image(products, photo, partition="Girls") == []  # a gender with nothing indexed
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MAX_IMAGE_BYTES": 1000}
    with pytest.raises(ImageTooLarge):
        indexing.search_by_image(products, photo)


def test_index_overview_counts_per_model_partition_and_status(catalog):
    men, _ = catalog
    FeatureVector.objects.filter(object_id=str(men[0].pk)).update(status=FeatureVector.Status.FAILED)
    Product.objects.create(title="No photo", gender="Men")
    overview = indexing.index_overview()
    assert overview["model_id"] == "colour-grid:4"
    products = overview["models"]["products"]
    assert products["partitions"]["Men"] == {"pending": 0, "ready": 7, "failed": 1}
    assert products["partitions"]["Women"] == {"pending": 0, "ready": 8, "failed": 0}
    assert (products["objects"], products["no_image"], products["not_indexed"], products["stale"]) == (17, 1, 0, 0)
    assert overview["models"]["garments"]["partitions"] == {}


def test_the_unknown_partition_message_reads_for_any_field_name(catalog, make_garments, catalog_rows):
    # "is not a audience of garments" was the message for a field whose name starts with a vowel.
    make_garments(ids_of(catalog_rows, gender="Women", count=2), audience="adult")
    with pytest.raises(UnknownPartition) as raised:
        indexing.search_by_image(registry.get("garments"), photo_bytes("13683"), partition="Aliens")
    assert str(raised.value) == "'Aliens' is not one of the audience values of garments (known: adult)"


@pytest.mark.parametrize("worker", [False, True], ids=["broker down", "eager worker"])
def test_a_moved_product_shows_neighbours_of_its_new_partition_before_and_after_its_task(
    catalog, monkeypatch, django_capture_on_commit_callbacks, worker
):
    """A gender edit: the page never shows ``ready`` with an empty strip (issue 17, item 6)."""
    from visual_recs import signals

    men, women = catalog
    moved = men[0]
    if not worker:
        monkeypatch.setattr(signals, "enqueue", lambda task, *args: False)  # the task is lost
    moved.gender = "Women"
    with django_capture_on_commit_callbacks(execute=True):
        moved.save()

    found = indexing.recommendations(moved, 5)
    assert (found.status, found.partition) == ("ready", "Women")
    assert len(found.items) == 5 and {item.object.gender for item in found.items} == {"Women"}
    distances = [item.distance for item in found.items]
    assert distances == sorted(distances)
    row = FeatureVector.objects.get(object_id=str(moved.pk))
    assert row.partition == ("Women" if worker else "Men")  # without a worker, nothing moved it yet
    if not worker:
        indexing.index(moved)  # the sweep's work, later: the stored list then says the same
    assert [str(item.object.pk) for item in indexing.recommendations(moved, 5).items] == targets_of(moved)[:5]
    assert [item.object for item in indexing.recommendations(moved, 5).items] == [item.object for item in found.items]
