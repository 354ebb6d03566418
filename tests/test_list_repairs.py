"""Lists repaired save by save equal the truth, computed by brute force after every change.

Vectors are given (``indexing.index_vectors``), drawn from a coarse grid so that equal
distances are common: the order of ties (by object id) is part of what must match. Every
kind of change is made, alone and in batches, and the per-save cost is checked to grow with
``NEIGHBOURS``, not with the partition.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import use_fake_extractor
from tests.lists import stored_lists, true_lists
from visual_recs import indexing, queue, registry
from visual_recs.backends import get_index
from visual_recs.contrib.catalog.models import Product
from visual_recs.models import FeatureVector, SimilarItem

pytestmark = pytest.mark.django_db

K = 4
DIMS = 6


@pytest.fixture
def small_lists(settings):
    use_fake_extractor(settings, vector_dims=DIMS, NEIGHBOURS=K)


class Catalog:
    """Products with known vectors, and the lists they should have."""

    def __init__(self, seed: int, first_id: int = 1, genders: tuple[str, ...] = ("Men", "Women")) -> None:
        self.rng = random.Random(seed)
        self.genders = genders
        self.vectors: dict[str, np.ndarray] = {}
        self.products: dict[str, Product] = {}
        self.next_id = first_id

    def vector(self) -> np.ndarray:
        # A coarse grid: many equal distances, so ties are ordered by id as the contract says.
        return np.array([self.rng.randint(0, 3) for _ in range(DIMS)], dtype=np.float32)

    def add(self, count: int = 1) -> None:
        pairs = []
        for _ in range(count):
            product = Product(pk=self.next_id, title=str(self.next_id), gender=self.rng.choice(self.genders))
            self.next_id += 1
            with queue.paused():
                product.save()
            self.products[str(product.pk)] = product
            self.vectors[str(product.pk)] = self.vector()
            pairs.append((product, self.vectors[str(product.pk)]))
        indexing.index_vectors(pairs)

    def pick(self, count: int = 1) -> list[Product]:
        return self.rng.sample(sorted(self.products.values(), key=lambda p: p.pk), count)

    def change(self, product: Product, **fields) -> None:
        with queue.paused():
            for name, value in fields.items():
                setattr(product, name, value)
            product.save()
        indexing.index_vectors([(product, self.vectors[str(product.pk)])])

    def new_photo(self, products: list[Product]) -> None:
        for product in products:
            self.vectors[str(product.pk)] = self.vector()
        indexing.index_vectors([(product, self.vectors[str(product.pk)]) for product in products])

    def delete(self, product: Product) -> None:
        object_id = str(product.pk)
        with queue.paused():
            product.delete()
        del self.products[object_id], self.vectors[object_id]
        indexing.unindex(registry.get("products"), object_id)

    def expected_lists(self) -> dict[str, list[str]]:
        objects = {
            object_id: (product.gender, product.is_active, self.vectors[object_id])
            for object_id, product in self.products.items()
        }
        return true_lists(objects, K)


def assert_lists_are_true(catalog: Catalog, step: str) -> None:
    expected, stored = catalog.expected_lists(), stored_lists()
    if get_index().exact:
        assert stored == expected, step
    else:
        found = sum(len(set(stored.get(s, [])) & set(targets)) for s, targets in expected.items())
        assert found >= 0.9 * sum(len(targets) for targets in expected.values()), step
    # Every ready object's radius says how far its list reaches, or that it is short.
    for object_id, radius in FeatureVector.objects.values_list("object_id", "list_radius"):
        targets = stored.get(object_id, [])
        if len(targets) == K:
            last = max(SimilarItem.objects.filter(source_id=object_id).values_list("distance", flat=True))
            assert radius == last, (step, object_id)
        else:
            assert radius == float("inf"), (step, object_id)


def test_every_kind_of_change_leaves_the_true_lists(small_lists):
    catalog = Catalog(seed=7)
    catalog.add(3)  # partitions smaller than a list: short lists
    assert_lists_are_true(catalog, "first products")
    for step in range(120):
        action = catalog.rng.choice(["add", "add", "batch", "photo", "photos", "move", "hide", "show", "delete"])
        if action == "add":
            catalog.add()
        elif action == "batch":
            catalog.add(catalog.rng.randint(2, 6))
        elif action == "photo":
            catalog.new_photo(catalog.pick())
        elif action == "photos":
            catalog.new_photo(catalog.pick(min(4, len(catalog.products))))
        elif action == "move":
            product = catalog.pick()[0]
            catalog.change(product, gender="Women" if product.gender == "Men" else "Men")
        elif action == "hide":
            catalog.change(catalog.pick()[0], is_active=False)
        elif action == "show":
            catalog.change(catalog.pick()[0], is_active=True)
        elif action == "delete" and len(catalog.products) > 5:
            catalog.delete(catalog.pick()[0])
        assert_lists_are_true(catalog, f"step {step}: {action}")
    assert len(catalog.products) > 50


def test_a_save_costs_the_same_queries_in_a_partition_ten_times_larger(small_lists):
    def queries_of_one_save(catalog: Catalog) -> int:
        product = catalog.pick()[0]
        catalog.vectors[str(product.pk)] = catalog.vector()
        with CaptureQueriesContext(connection) as queries:
            indexing.index_vectors([(product, catalog.vectors[str(product.pk)])])
        return len(queries)

    # One partition each, so the large one really is ten times the small one.
    small, large = Catalog(seed=1, genders=("Boys",)), Catalog(seed=1, first_id=1000, genders=("Girls",))
    small.add(30)
    large.add(300)
    small_costs = sorted(queries_of_one_save(small) for _ in range(5))
    large_costs = sorted(queries_of_one_save(large) for _ in range(5))
    # The number of queries of a save depends on how many lists it touches, not on the partition.
    assert large_costs[2] <= small_costs[2] + 4, (small_costs, large_costs)


def test_an_object_with_an_unfinished_list_is_finished_by_the_sweep(small_lists):
    catalog = Catalog(seed=3)
    catalog.add(20)
    victim = catalog.pick()[0]
    # As if a rebuild stopped after loading the vectors: no list, no radius.
    SimilarItem.objects.filter(source_id=str(victim.pk)).delete()
    FeatureVector.objects.filter(object_id=str(victim.pk)).update(list_radius=None)
    assert indexing.repair_unfinished(registry.get("products")) == 1
    assert_lists_are_true(catalog, "after the sweep")
    assert indexing.repair_unfinished(registry.get("products")) == 0
