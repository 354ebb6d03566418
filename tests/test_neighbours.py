"""Neighbour lists stay exact as products come, change, move and go.

The network is replaced by a fast colour extractor here: this is list logic, at catalog scale.
Every repaired state is compared with a full rebuild from scratch.
"""

from __future__ import annotations

import random

import pytest
from django.core.files.base import ContentFile

from tests.conftest import photo_bytes, use_fake_extractor
from visual_recs import indexing, registry
from visual_recs.contrib.catalog.models import Product
from visual_recs.models import FeatureVector, SimilarItem

@pytest.fixture
def fast_extractor(settings):
    use_fake_extractor(settings, NEIGHBOURS=5)


def lists() -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for source, target in SimilarItem.objects.order_by("source_id", "distance", "target_id").values_list("source_id", "target_id"):
        result.setdefault(source, []).append(target)
    return result


def rebuilt_lists() -> dict[str, list[str]]:
    products = registry.get("products")
    for partition in set(FeatureVector.objects.values_list("partition", flat=True)):
        indexing.rebuild_partition(products, partition)
    return lists()


@pytest.mark.django_db
def test_lists_repaired_after_each_change_equal_a_full_rebuild(fast_extractor, catalog_rows, django_capture_on_commit_callbacks):
    rng = random.Random(3)
    ids = sorted(pid for pid, row in catalog_rows.items() if row["Gender"] in ("Men", "Women"))
    rng.shuffle(ids)
    products: list[Product] = []

    def save(product):
        with django_capture_on_commit_callbacks(execute=True):
            product.save()

    for pid in ids[:40]:
        product = Product(pk=int(pid), title=pid, gender=catalog_rows[pid]["Gender"])
        product.image.save(f"{pid}.jpg", ContentFile(photo_bytes(pid)), save=False)
        save(product)
        products.append(product)
    assert lists() == rebuilt_lists()

    changes = [
        ("deactivate", products[0]),
        ("move", products[1]),
        ("new photo", products[2]),
        ("delete", products[3]),
        ("reactivate", products[0]),
        ("remove photo", products[4]),
    ]
    for change, product in changes:
        if change == "deactivate":
            product.is_active = False
            save(product)
        elif change == "reactivate":
            product.is_active = True
            save(product)
        elif change == "move":
            product.gender = "Women" if product.gender == "Men" else "Men"
            save(product)
        elif change == "new photo":
            product.image.save("other.jpg", ContentFile(photo_bytes(ids[50])), save=False)
            save(product)
        elif change == "delete":
            with django_capture_on_commit_callbacks(execute=True):
                product.delete()
        elif change == "remove photo":
            product.image = ""
            save(product)
        repaired = lists()
        assert repaired == rebuilt_lists(), change

    final = lists()
    gender = {str(p.pk): p.gender for p in products}
    inactive_or_gone = {str(products[3].pk), str(products[4].pk)}
    for source, targets in final.items():
        assert len(targets) == 5
        assert {gender[t] for t in targets} == {gender[source]}
        assert not inactive_or_gone & set(targets)
    assert str(products[4].pk) not in final  # no photo, no vector, no list


@pytest.mark.django_db(transaction=True)
def test_a_partition_lock_keeps_other_connections_out_on_postgresql():
    """Two workers never repair the same partition's lists at once (PostgreSQL advisory lock)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, connections, transaction

    if connection.vendor != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's; `make test-postgres` runs this (SQLite has one writer)")
    products = registry.get("products")

    def other_connection_can_lock(partition: str) -> bool:
        def attempt() -> bool:
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    key = indexing.partition_lock_key(products, partition)
                    cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
                    return cursor.fetchone()[0]
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=1) as pool:  # a thread has its own connection
            return pool.submit(attempt).result()

    with indexing.partition_lock(products, "Men"):
        assert not other_connection_can_lock("Men")
        assert other_connection_can_lock("Women")
    assert other_connection_can_lock("Men")


@pytest.mark.django_db
def test_lists_changed_names_every_list_written_or_dropped(fast_extractor, make_catalog, catalog_rows, django_capture_on_commit_callbacks):
    """The one signal a shop copies lists from: each written list is named, and so is a dropped one."""
    men = sorted((pid for pid, row in catalog_rows.items() if row["Gender"] == "Men"), key=int)[:4]
    products = make_catalog(men)
    ids = [str(product.pk) for product in products]
    told: list[tuple[str, set[str]]] = []

    def receiver(sender, indexed_model, source_ids, **kwargs):
        told.append((sender._meta.label, set(source_ids)))

    indexing.lists_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            products[0].delete()
        assert told and {label for label, _ in told} == {"visual_recs_catalog.Product"}
        named = set().union(*(written for _, written in told))
        assert named == set(ids)  # the dropped list and the three that named it
        told.clear()
        indexing.rebuild_partition(registry.get("products"), "Men")
        assert set().union(*(written for _, written in told)) == set(ids[1:])
    finally:
        indexing.lists_changed.disconnect(receiver)
