"""The merchandiser's read-time layer: stock, variant groups, rules, a strip never short, fallback.

Everything here applies when a strip is read, so each test changes a product or a rule and
reads the strip again, with no task run and no stored list rewritten in between (asserted
where it matters). The fast colour extractor stands in for ResNet50 (rules are not the
network's judgement) except in the last test, which runs the real network end to end.
"""

from __future__ import annotations

import logging

import pytest
from django.contrib.contenttypes.models import ContentType
from django.template import Context, Template

from tests.conftest import ids_of
from visual_recs import indexing, queue, registry
from visual_recs.contrib.catalog.models import Product
from visual_recs.models import FeatureVector, Rule, SimilarItem

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def men(fake_extractor, catalog_rows, make_catalog, settings):
    """Twelve men's products, indexed, lists of 6 (so a strip of 5 has little room to spare)."""
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "NEIGHBOURS": 6}
    return make_catalog(ids_of(catalog_rows, gender="Men", count=12))


@pytest.fixture
def women(catalog_rows, make_catalog, men):
    return make_catalog(ids_of(catalog_rows, gender="Women", count=4))


def strip(product, limit=5, **options) -> list[str]:
    return [str(item.object.pk) for item in indexing.recommendations(product, limit, **options).items]


def listed(product) -> list[str]:
    rows = SimilarItem.objects.filter(source_id=str(product.pk)).order_by("distance", "target_id")
    return list(rows.values_list("target_id", flat=True))


def rule(kind, **fields) -> Rule:
    content_type = ContentType.objects.get_for_model(Product)
    return Rule.objects.create(content_type=content_type, kind=kind, **fields)


def no_task_runs():
    """Fails the test if anything is queued: the read-time layer must need no task."""
    return queue.paused()


def test_a_sold_out_item_leaves_the_strip_at_once_and_returns_with_stock(men):
    source = men[0]
    before = strip(source)
    lists_before = SimilarItem.objects.count()
    sold_out = Product.objects.get(pk=before[1])
    with no_task_runs():
        sold_out.stock = 0
        sold_out.save()
    after = strip(source)
    assert before[1] not in after and len(after) == 5
    assert after[:1] + after[1:4] == [before[0], *before[2:5]]  # the rest moved up, nearest first
    with no_task_runs():
        sold_out.stock = 3
        sold_out.save()
    assert strip(source) == before
    assert SimilarItem.objects.count() == lists_before


def test_one_item_per_variant_group_and_never_the_products_own_variants(men):
    source = men[0]
    nearest = strip(source)
    Product.objects.filter(pk__in=[source.pk, nearest[0]]).update(group="style-1")
    Product.objects.filter(pk__in=nearest[1:3]).update(group="style-2")
    found = strip(Product.objects.get(pk=source.pk))
    assert nearest[0] not in found  # the product's own variant
    assert nearest[1] in found and nearest[2] not in found  # one of style-2: the nearer
    assert len(found) == 5


def test_a_products_own_variants_show_when_asked(men, settings):
    from tests.conftest import declare

    source = men[0]
    nearest = strip(source)
    Product.objects.filter(pk__in=[source.pk, nearest[0]]).update(group="style-1")
    declare(settings, "products", recommend_own_group=True)
    assert strip(Product.objects.get(pk=source.pk))[0] == nearest[0]


def test_pins_take_their_position_and_excludes_leave_out_an_item_or_a_category(men):
    source = men[0]
    nearest = strip(source)
    far = [pk for pk in (str(p.pk) for p in men[1:]) if pk not in listed(source)][0]
    pin = rule(Rule.Kind.PIN, source_id=str(source.pk), target_id=far, position=2)
    rule(Rule.Kind.EXCLUDE, source_id=str(source.pk), target_id=nearest[0])
    found = indexing.recommendations(source, 5).items
    assert [str(item.object.pk) for item in found] == [nearest[1], far, *nearest[2:5]]
    assert (found[1].origin, found[1].rule_id, found[1].distance) == ("pinned", pin.pk, None)
    assert [item.rank for item in found] == [1, 2, 3, 4, 5]

    # A category: every item whose field reads the value, for the whole partition.
    category = Product.objects.get(pk=nearest[2]).product_type
    rule(Rule.Kind.EXCLUDE, partition="Men", field="product_type", value=category)
    assert all(Product.objects.get(pk=pk).product_type != category for pk in strip(source) if pk != far)
    # Rules off (the plain arm of an A/B test): the stored list as it is.
    assert strip(source, rules=False) == nearest


def test_pins_that_cannot_apply_are_left_out_quietly(men, women):
    source = men[0]
    nearest = strip(source)
    deleted = [product for product in men[1:] if str(product.pk) not in nearest][-1]
    rule(Rule.Kind.PIN, source_id=str(source.pk), target_id=str(deleted.pk), position=1)
    with queue.paused():
        deleted.delete()
    rule(Rule.Kind.PIN, source_id=str(source.pk), target_id=str(women[0].pk), position=2)  # another partition
    rule(Rule.Kind.PIN, source_id=str(source.pk), target_id=nearest[3], position=9)  # beyond the strip
    rule(Rule.Kind.PIN, source_id=str(source.pk), target_id="not-a-number", position=3)
    rule(Rule.Kind.EXCLUDE, source_id=str(source.pk), target_id="9" * 30)  # made in code: no form checked it
    rule(Rule.Kind.PIN, source_id=str(source.pk), target_id=str(source.pk), position=4)  # itself
    assert strip(source) == nearest
    assert strip(source, limit=12)[8] == nearest[3]
    rule(Rule.Kind.PIN, source_id=str(source.pk), target_id="9" * 30, position=1)
    assert strip(source) == nearest  # in a strip that long, at 9


def test_a_product_rule_wins_its_position_over_the_partitions(men):
    source = men[0]
    nearest = strip(source)
    rule(Rule.Kind.PIN, partition="Men", target_id=nearest[4], position=1)
    rule(Rule.Kind.PIN, source_id=str(source.pk), target_id=nearest[3], position=1)
    assert strip(source)[:2] == [nearest[3], nearest[0]]
    assert strip(men[1])[0] == nearest[4] or nearest[4] == str(men[1].pk)


def test_boosts_move_up_the_same_brand_or_price_band_and_ignore_a_missing_field(men, caplog):
    source = men[0]
    nearest = strip(source)
    Product.objects.filter(pk__in=[p.pk for p in men]).update(colour="Plain", price=100)
    Product.objects.filter(pk__in=[source.pk, nearest[4]]).update(colour="Stripes")
    source.refresh_from_db()
    boost = rule(Rule.Kind.BOOST, partition="Men", field="colour", strength=0.9)
    found = indexing.recommendations(source, 5).items
    assert str(found[0].object.pk) == nearest[4] and found[0].rule_id == boost.pk and found[0].origin == "visual"
    boost.delete()

    Product.objects.filter(pk=nearest[3]).update(price=104)
    Product.objects.filter(pk__in=[source.pk]).update(price=100)
    Product.objects.exclude(pk__in=[source.pk, nearest[3]]).update(price=300)
    rule(Rule.Kind.BOOST, field="price", within_percent=5, strength=0.9)
    assert strip(Product.objects.get(pk=source.pk))[0] == nearest[3]

    rule(Rule.Kind.BOOST, field="no_such_field", strength=0.5)
    rule(Rule.Kind.BOOST, field="title", within_percent=10, strength=0.5)  # not a number
    with caplog.at_level(logging.WARNING, logger="visual_recs"):
        assert strip(Product.objects.get(pk=source.pk))[0] == nearest[3]
    assert "is not a number" in caplog.text


def test_a_strip_is_never_short_while_the_partition_has_enough(men):
    source = men[0]
    stored = listed(source)
    assert len(stored) == 6
    # Every stored neighbour sold out: the index is asked for more, beyond the list.
    Product.objects.filter(pk__in=stored).update(stock=0)
    found = strip(source)
    assert len(found) == 5 and not set(found) & set(stored)
    assert listed(source) == stored  # nothing was rewritten
    # All but three sold out: three is all there is, and no fallback is configured.
    Product.objects.update(stock=0)
    Product.objects.filter(pk__in=[men[1].pk, men[2].pk, men[3].pk]).update(stock=None)
    assert sorted(strip(source), key=int) == sorted([str(men[i].pk) for i in (1, 2, 3)], key=int)


def test_the_fallback_fills_a_short_strip_and_marks_its_items(men, women, settings):
    from tests.conftest import declare

    pending = Product.objects.create(title="New", gender="Men", image="products/missing.jpg")  # no vector yet
    assert indexing.recommendations(pending, 5).items == []
    declare(settings, "products", fallback="partition", fallback_order="-price")
    Product.objects.filter(pk=men[5].pk).update(price=999)
    found = indexing.recommendations(pending, 5)
    assert found.status == "pending"
    assert [item.origin for item in found.items] == ["fallback"] * 5
    assert str(found.items[0].object.pk) == str(men[5].pk)  # by the fallback's order
    assert {item.object.gender for item in found.items} == {"Men"}
    assert indexing.recommendations(pending, 5, fallback=False).items == []
    # By a field: items of the product's own type only.
    declare(settings, "products", fallback="product_type")
    wanted = pending.product_type = men[2].product_type
    pending.save()
    assert {item.object.product_type for item in indexing.recommendations(pending, 5).items} == {wanted}


def test_a_fallback_by_a_value_with_no_column_follows_the_fallbacks_order(men, women, settings):
    """``get_gender_display`` is no column: the values are read in Python, in the fallback's order.
    More products share it than the fallback looks at (8 x the limit): the newest must still come first."""
    from tests.conftest import declare

    pending = Product.objects.create(title="New", gender="Men", image="products/missing.jpg")  # no vector yet
    declare(settings, "products", fallback="get_gender_display")  # fallback_order: newest first
    assert len(men) > 8 * 1
    found = indexing.recommendations(pending, 1)
    assert [(item.object.pk, item.origin) for item in found.items] == [(men[-1].pk, "fallback")]
    found = indexing.recommendations(pending, 3)
    assert [item.object.pk for item in found.items] == [men[-1].pk, men[-2].pk, men[-3].pk]


def test_the_api_and_the_tag_say_where_each_item_comes_from(men, client):
    source = men[0]
    far = [pk for pk in (str(p.pk) for p in men[1:]) if pk not in listed(source)][0]
    rule(Rule.Kind.PIN, source_id=str(source.pk), target_id=far, position=1)
    body = client.get(f"/api/visual-recs/products/{source.pk}/similar/?limit=3").json()
    assert [(item["id"], item["origin"], item["distance"] is None) for item in body["results"]][0] == (int(far), "pinned", True)
    assert {item["origin"] for item in body["results"][1:]} == {"visual"}
    html = Template("{% load visual_recs %}{% similar_items product limit=3 as items %}{% for i in items %}{{ i.origin }} {% endfor %}")
    assert html.render(Context({"product": source})).split() == ["pinned", "visual", "visual"]


def test_search_by_photo_leaves_out_sold_out_products(men):
    indexed_model = registry.for_model(Product)
    vector = FeatureVector.objects.get(object_id=str(men[0].pk)).as_array()
    first = [str(s.object.pk) for s in indexing.search_by_vector(indexed_model, vector, partition="Men", limit=3)]
    Product.objects.filter(pk=first[0]).update(stock=0)
    again = [str(s.object.pk) for s in indexing.search_by_vector(indexed_model, vector, partition="Men", limit=3)]
    assert first[0] not in again and len(again) == 3


@pytest.mark.slow
def test_rules_and_stock_on_real_resnet50_lists(resnet_weights, catalog_rows, make_catalog):
    """The same read-time layer over lists the real network made."""
    products = make_catalog(ids_of(catalog_rows, gender="Women", count=10))
    source = products[0]
    nearest = strip(source)
    Product.objects.filter(pk=nearest[0]).update(stock=0)
    rule(Rule.Kind.PIN, source_id=str(source.pk), target_id=nearest[4], position=1)
    assert strip(source) == [nearest[4], *nearest[1:4], *[pk for pk in listed(source) if pk not in nearest][:1]]


def test_an_ab_test_of_rules_against_the_plain_strip_shows_each_visitor_their_arm(men, settings, rf):
    from visual_recs import experiments

    settings.VISUAL_RECS = {
        **settings.VISUAL_RECS,
        "EXPERIMENT": {"name": "rules-vs-plain", "arms": {"plain": {"rules": False}, "rules": {}}},
    }
    source = men[0]
    nearest = strip(source)
    far = [pk for pk in (str(p.pk) for p in men[1:]) if pk not in listed(source)][0]
    rule(Rule.Kind.PIN, source_id=str(source.pk), target_id=far, position=1)
    visitors = {}
    for n in range(50):
        visitors.setdefault(experiments.bucket("rules-vs-plain", f"visitor-{n}", ["plain", "rules"]), f"visitor-{n}")
    template = Template("{% load visual_recs %}{% similar_items product limit=5 as items %}{% for i in items %}{{ i.object.pk }} {% endfor %}")
    shown = {}
    for arm, visitor in visitors.items():
        request = rf.get("/")
        setattr(request, experiments.VISITOR_ATTRIBUTE, visitor)
        shown[arm] = template.render(Context({"product": source, "request": request})).split()
    assert shown == {"plain": nearest, "rules": [far, *nearest[:4]]}


def test_the_fallback_by_popularity_puts_the_most_clicked_of_the_partition_first(men, women, settings):
    from tests.conftest import declare
    from visual_recs.models import Event

    content_type = ContentType.objects.get_for_model(Product)
    pending = Product.objects.create(title="New", gender="Men", image="products/missing.jpg")
    clicks = {men[4]: 3, men[7]: 5, women[0]: 9}  # a woman's item clicked most: another partition
    Event.objects.bulk_create(
        Event(kind=Event.Kind.CLICK, content_type=content_type, source_id="1", target_id=str(item.pk), position=1,
              partition=item.gender, nonce=f"{item.pk}-{n}")
        for item, count in clicks.items() for n in range(count)
    )
    declare(settings, "products", fallback="partition", fallback_order="popular")
    found = [item.object for item in indexing.recommendations(pending, 4).items]
    newest_men = sorted((p for p in men if p not in (men[4], men[7])), key=lambda p: -p.pk)
    assert found == [men[7], men[4], *newest_men[:2]]


def test_the_nearest_fallback_crosses_the_partition_only_when_it_must(men, women, settings):
    from tests.conftest import declare

    source = men[0]
    declare(settings, "products", fallback="nearest")
    assert {item.object.gender for item in indexing.recommendations(source, 5).items} == {"Men"}
    Product.objects.filter(gender="Men").exclude(pk__in=[source.pk, men[1].pk]).update(stock=0)
    found = indexing.recommendations(source, 5).items
    assert [(item.object.gender, item.origin) for item in found][:1] == [("Men", "visual")]
    assert [(item.object.gender, item.origin) for item in found][1:] == [("Women", "fallback")] * 4
    assert all(item.distance is not None for item in found)


def test_an_arm_of_the_shops_own_recommendations_shows_those_that_may_be_shown_now(men, women, settings, client):
    from tests.conftest import declare

    source = men[0]
    sold_out, hidden = men[3], men[4]
    own = [women[1], sold_out, men[2], hidden, source, men[2], men[5]]  # the shop's list, as it is

    def existing(self, product):
        return own if product.pk == source.pk else []

    declare(settings, "products", existing=existing)
    Product.objects.filter(pk=sold_out.pk).update(stock=0)
    Product.objects.filter(pk=hidden.pk).update(is_active=False)
    found = indexing.recommendations(source, 3, source="shop")
    assert [(item.object, item.origin, item.distance) for item in found.items] == [
        (women[1], "shop", None), (men[2], "shop", None), (men[5], "shop", None)
    ]
    assert found.status == "ready" and [item.rank for item in found.items] == [1, 2, 3]
    with pytest.raises(ValueError, match="source must be one of"):
        indexing.recommendations(source, 3, source="elsewhere")
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EXPERIMENT": {"name": "x", "arms": {"a": {}, "b": {"source": "shop"}}}}
    from visual_recs.checks import check_experiment

    assert check_experiment() == []
