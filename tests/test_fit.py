"""``visual_recs_fit``: a search space learned from the catalog's labels, on real ResNet50 features.

The fit must store a versioned projection, rebuild the index and every list in the new space
without running the network, apply itself to products indexed later and to search by photo,
carry over saves made while it ran, and change nothing when it cannot be made.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core import checks
from django.core.management import CommandError, call_command

from tests.conftest import declare, ids_of, photo_bytes, use_fake_extractor
from tests.lists import stored_lists, true_lists
from visual_recs import indexing, learning, registry
from visual_recs.backends import get_extractor, get_index
from visual_recs.exceptions import LearningError
from visual_recs.contrib.catalog.models import Product
from visual_recs.models import FeatureVector, Fit

pytestmark = pytest.mark.django_db

PRODUCT_TYPES = {
    "Men": ["Sports Shoes", "Casual Shoes", "Formal Shoes", "Flip Flops"],
    "Women": ["Heels", "Flats", "Casual Shoes"],
}


def learn_from(settings, *fields: str, key: str = "products") -> None:
    declare(settings, key, learn_from=list(fields))
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "NEIGHBOURS": 5}


def catalog_of(catalog_rows, per_type: int = 6) -> list[str]:
    return [
        pid
        for gender, types in PRODUCT_TYPES.items()
        for product_type in types
        for pid in ids_of(catalog_rows, gender=gender, product_type=product_type, count=per_type)
    ]


def assert_lists_are_those_of(space) -> None:
    """Every stored list is the brute-force list of ``space``: exactly with an exact index; with
    pgvector (HNSW on half-precision vectors, which may swap near ties) the same items, 95% of them."""
    stored, expected = stored_lists(), lists_in_space(space)
    if get_index().exact:
        assert stored == expected
        return
    assert set(stored) == set(expected)
    found = sum(len(set(stored[s]) & set(targets)) for s, targets in expected.items())
    assert found >= 0.95 * sum(len(targets) for targets in expected.values())


def lists_in_space(space) -> dict[str, list[str]]:
    """Brute-force lists of the ready products, their stored vectors mapped into ``space``."""
    rows = list(FeatureVector.objects.filter(status="ready").values_list("object_id", "partition", "listed", "vector"))
    mapped = space.to_index(np.stack([np.frombuffer(bytes(v), dtype="<f4") for *_, v in rows]))
    return true_lists({oid: (p, listed, vec) for (oid, p, listed, _), vec in zip(rows, mapped)}, k=5)


def same_type_share(lists: dict[str, list[str]]) -> float:
    types = dict(Product.objects.values_list("pk", "product_type"))
    pairs = [(types[int(s)], types[int(t)]) for s, targets in lists.items() for t in targets]
    return sum(a == b for a, b in pairs) / len(pairs)


@pytest.mark.slow
def test_a_fit_on_real_features_rebuilds_the_index_and_lists_in_its_space(
    settings, resnet_weights, catalog_rows, make_catalog
):
    learn_from(settings, "product_type")
    make_catalog(catalog_of(catalog_rows))
    products = registry.get("products")
    plain = indexing.current_space(products)
    plain_lists = stored_lists()

    out = io.StringIO()
    call_command("visual_recs_fit", stdout=out, stderr=io.StringIO())

    fit = Fit.objects.get()
    assert fit.completed_at is not None and fit.fields == ["product_type"] and fit.products == 42
    assert f"fit {fit.version} on 42 products from product_type (42 labelled, 6 values)" in out.getvalue()
    space = indexing.current_space(products)
    assert space.fit_id == fit.pk and space.collection != plain.collection
    projection = learning.Projection.from_bytes(bytes(fit.data))
    assert projection.version == fit.version
    # The index holds every ready vector as the fit maps it; the old collection is gone.
    index = get_index()
    held = index.vectors(space.collection, [str(p.pk) for p in Product.objects.all()])
    # An index of one vector length (pgvector) holds the fit's vectors padded with zeros to it.
    length = index.dimensions or projection.dims
    assert len(held) == 42 and {len(v) for v in held.values()} == {length}
    some_id = next(iter(held))
    raw = FeatureVector.objects.get(object_id=some_id).as_array()
    expected = projection.transform(raw[np.newaxis])[0]
    np.testing.assert_allclose(held[some_id][: projection.dims], expected, rtol=1e-2, atol=2e-3)
    assert not held[some_id][projection.dims :].any()
    assert index.vectors(plain.collection, list(held)) == {}
    # Every list is the brute-force list of the new space, and shares more product types.
    assert_lists_are_those_of(space)
    assert same_type_share(stored_lists()) > same_type_share(plain_lists)


@pytest.mark.slow
def test_products_indexed_after_a_fit_and_search_by_photo_use_its_space(
    settings, resnet_weights, catalog_rows, make_catalog, make_product
):
    learn_from(settings, "product_type")
    make_catalog(catalog_of(catalog_rows, per_type=4))
    indexing.fit(registry.get("products"))
    space = indexing.current_space(registry.get("products"))
    (newcomer,) = [pid for pid in ids_of(catalog_rows, gender="Men", product_type="Sports Shoes", count=6)][-1:]
    make_product(newcomer)  # indexed through its save's task, as in a shop
    assert_lists_are_those_of(space)
    assert newcomer in {t for targets in stored_lists().values() for t in targets}
    # Search by the newcomer's photo finds the newcomer first: the query went into the same space.
    found = indexing.search_by_image(registry.get("products"), photo_bytes(newcomer), partition="Men", limit=3)
    assert str(found[0].object.pk) == newcomer and found[0].distance == pytest.approx(0, abs=1e-3)


def test_saves_made_while_a_fit_runs_are_carried_into_its_space(settings, catalog_rows, make_catalog, monkeypatch):
    use_fake_extractor(settings)
    learn_from(settings, "product_type")
    first = catalog_of(catalog_rows, per_type=3)
    made = make_catalog(first)
    late = ids_of(catalog_rows, gender="Women", product_type="Heels", count=5)[-1]
    gone = made[0]
    real_rebuild = indexing.fitting.rebuild_index

    def rebuild_while_the_shop_goes_on(*args, **kwargs):
        loaded = real_rebuild(*args, **kwargs)
        make_catalog([late])  # saved and indexed in the old space meanwhile
        indexing.unindex(registry.get("products"), str(gone.pk))
        Product.objects.filter(pk=gone.pk).delete()
        return loaded

    monkeypatch.setattr(indexing.fitting, "rebuild_index", rebuild_while_the_shop_goes_on)
    summary = indexing.fit(registry.get("products"))
    assert summary.carried_over == 2
    space = indexing.current_space(registry.get("products"))
    held = get_index().vectors(space.collection, [late, str(gone.pk)])
    assert set(held) == {late}
    assert_lists_are_those_of(space)


def test_blank_labels_still_get_vectors_and_lists(settings, catalog_rows, make_catalog):
    use_fake_extractor(settings)
    learn_from(settings, "product_type")
    ids = catalog_of(catalog_rows, per_type=3)
    make_catalog(ids)
    Product.objects.filter(pk__in=[int(pid) for pid in ids[:4]]).update(product_type="")
    summary = indexing.fit(registry.get("products"))
    assert summary.labelled == {"product_type": len(ids) - 4}
    space = indexing.current_space(registry.get("products"))
    assert set(get_index().vectors(space.collection, ids)) == set(ids)  # every product, labelled or not
    assert set(stored_lists()) == set(ids)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no learn_from", "has no 'learn_from'"),
        ("no ready vectors", "no ready vectors to learn from"),
        ("one class", "product_type"),
    ],
)
def test_a_fit_that_cannot_be_made_says_why_and_changes_nothing(settings, catalog_rows, make_catalog, case, expected):
    use_fake_extractor(settings)
    if case != "no learn_from":
        learn_from(settings, "product_type")
    ids = catalog_of(catalog_rows, per_type=2)
    if case != "no ready vectors":
        make_catalog(ids)
    if case == "one class":
        Product.objects.update(product_type="Shoes")
    before = stored_lists()
    space = indexing.current_space(registry.get("products"))
    with pytest.raises(CommandError, match=expected) as info:
        call_command("visual_recs_fit", "--model", "products", stdout=io.StringIO(), stderr=io.StringIO())
    assert "Nothing was changed." in str(info.value)
    assert Fit.objects.count() == 0
    assert stored_lists() == before and indexing.current_space(registry.get("products")) == space


def test_without_learn_from_the_space_is_the_extractors_own(settings, catalog_rows, make_catalog):
    use_fake_extractor(settings)
    make_catalog(ids_of(catalog_rows, gender="Men", count=4))
    products = registry.get("products")
    space = indexing.current_space(products)
    assert space.fit_id is None and space.collection == products.collection(get_extractor().model_id)
    with pytest.raises(CommandError, match="No model .* has 'learn_from'"):
        call_command("visual_recs_fit", stdout=io.StringIO(), stderr=io.StringIO())


def test_learn_from_naming_a_field_that_does_not_exist_is_a_system_check_error(settings):
    learn_from(settings, "product_type", "fabric")
    errors = [message for message in checks.run_checks() if message.id == "visual_recs.E010"]
    assert len(errors) == 1 and "'fabric'" in errors[0].msg


def test_a_fit_longer_than_an_index_of_fixed_length_is_refused(settings, catalog_rows, make_catalog, monkeypatch):
    """PgvectorIndex holds one vector length; a fit's shorter vectors are padded, longer ones refused."""
    from types import SimpleNamespace

    use_fake_extractor(settings)
    learn_from(settings, "product_type")
    make_catalog(catalog_of(catalog_rows, per_type=2))
    before = stored_lists()
    monkeypatch.setattr(indexing.fitting, "get_index", lambda: SimpleNamespace(dimensions=2))
    with pytest.raises(LearningError, match="the index holds 2"):
        indexing.fit(registry.get("products"))
    assert Fit.objects.count() == 0 and stored_lists() == before


@pytest.mark.slow
def test_the_colour_part_is_stored_with_the_network_s_and_weighed_by_the_search(
    settings, resnet_weights, catalog_rows, make_catalog
):
    from visual_recs import appearance
    from visual_recs.images import decode_image

    settings.VISUAL_RECS = {
        **settings.VISUAL_RECS,
        "EXTRACTOR": {"BACKEND": "visual_recs.backends.extractors.ResNet50Extractor", "OPTIONS": {"colour": True}},
        "COLOUR_WEIGHT": 0.25,
    }
    if fixed_length := get_index().dimensions:
        assert fixed_length == 2048  # the suite's pgvector table; this test needs one of the stacked length
        index = settings.VISUAL_RECS["INDEX"]
        stacked = {**index, "OPTIONS": {**index["OPTIONS"], "dimensions": 2048 + appearance.COLOUR_DIMS}}
        settings.VISUAL_RECS = {**settings.VISUAL_RECS, "INDEX": stacked}  # reassigned: the backends are rebuilt
        get_index().ensure_schema()
    extractor = get_extractor()
    assert extractor.parts == {"visual": 2048, "colour": appearance.COLOUR_DIMS}
    assert f":colour{appearance.COLOUR_DIMS}:" in extractor.model_id
    ids = ids_of(catalog_rows, gender="Men", count=4)
    make_catalog(ids)
    stored = FeatureVector.objects.get(object_id=ids[0]).as_array()
    assert len(stored) == 2048 + appearance.COLOUR_DIMS
    colour = appearance.colour_features(decode_image(photo_bytes(ids[0])))
    np.testing.assert_allclose(stored[2048:], colour / np.linalg.norm(colour), rtol=1e-5, atol=1e-6)
    # The index holds both parts at unit length, colour times sqrt(COLOUR_WEIGHT).
    space = indexing.current_space(registry.get("products"))
    held = get_index().vectors(space.collection, [ids[0]])[ids[0]]
    assert np.linalg.norm(held[:2048]) == pytest.approx(1, rel=1e-4)
    assert np.linalg.norm(held[2048:]) == pytest.approx(0.5, rel=1e-4)
    found = indexing.search_by_image(registry.get("products"), photo_bytes(ids[1]), partition="Men", limit=1)
    assert str(found[0].object.pk) == ids[1]
    # Staff see each part's share of a recommendation's distance.
    (nearest, *_) = indexing.recommendations(Product.objects.get(pk=int(ids[0])), 3).items
    parts = indexing.distance_parts(registry.get("products"), ids[0], [str(nearest.object.pk)])[str(nearest.object.pk)]
    assert set(parts) == {"visual", "colour"}
    assert np.hypot(parts["visual"], parts["colour"]) == pytest.approx(nearest.distance, rel=1e-3)


def test_learn_from_weights_give_each_field_its_share(settings, catalog_rows, make_catalog):
    use_fake_extractor(settings)
    declare(settings, "products", learn_from={"product_type": 1.0, "colour": 0.25})
    make_catalog(catalog_of(catalog_rows, per_type=3))
    summary = indexing.fit(registry.get("products"))
    projection = learning.Projection.from_bytes(bytes(Fit.objects.get(pk=summary.fit.pk).data))
    assert projection.weights == {"product_type": 1.0, "colour": 0.25}
    assert [e.id for e in checks.run_checks() if e.id == "visual_recs.E010"] == []
    declare(settings, "products", learn_from={"product_type": -1})
    assert [e.id for e in checks.run_checks() if e.id == "visual_recs.E010"] == ["visual_recs.E010"]
