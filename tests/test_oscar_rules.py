"""Merchandising rules in Oscar's dashboard: the rule pages of ``visual_recs.contrib.oscar``, through the test client.

The Oscar test shop (``tests/oscar_shop``, the ``shop`` fixture of tests/test_oscar.py) with
products made by Oscar's own models from sample catalog photos, indexed by the fast colour
extractor; the pages are Oscar's dashboard templates around the admin's ``RuleForm``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("oscar", reason="django-oscar is not installed: pip install -e '.[oscar]'")

from django.contrib.auth.models import Permission  # noqa: E402
from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils.html import escape  # noqa: E402
from oscar.core.loading import get_model  # noqa: E402

from tests.conftest import CATALOG_DIR, ids_of  # noqa: E402
from tests.oscar_shop import catalogue  # noqa: E402
from tests.test_oscar import committed, shop, staff  # noqa: E402,F401  (fixtures)
from visual_recs.contrib.oscar.views import product_content_type  # noqa: E402
from visual_recs.models import Rule  # noqa: E402

pytestmark = pytest.mark.django_db

Product = get_model("catalogue", "Product")

RULES = "visual_recs_oscar:visual-recs-rules"
CREATE = "visual_recs_oscar:visual-recs-rule-create"


@pytest.fixture
def products(shop, committed, catalog_rows) -> list[Product]:
    """Three women's products and a man's, with photos, indexed (eager tasks) by gender."""
    made = []
    for gender, count in (("Women", 3), ("Men", 1)):
        for pid in ids_of(catalog_rows, gender=gender, count=count):
            with committed():
                made.append(catalogue.add_product(catalog_rows[pid]["ProductTitle"], gender, CATALOG_DIR / "images" / f"{pid}.jpg"))
    return made


def rule_fields(**fields) -> dict[str, str]:
    data = {"kind": "exclude", "active": "on", "strength": "0.2", **fields}
    return {name: str(value) for name, value in data.items() if value is not None}


def test_staff_add_edit_and_delete_a_rule_of_oscars_products(staff, products):
    source, target = products[0], products[1]
    fields = rule_fields(source_id=source.pk, target_id=target.pk, note="Out of season")
    response = staff.post(reverse(CREATE), fields, follow=True)
    assert response.status_code == 200
    rule = Rule.objects.get()
    assert (rule.content_type, rule.kind, rule.source_id, rule.target_id) == (
        product_content_type(), "exclude", str(source.pk), str(target.pk)
    )
    html = response.content.decode()  # back on the list, with the rule's product and item by title
    assert f'data-rule-id="{rule.pk}"' in html and escape(source.title) in html and escape(target.title) in html

    update = reverse("visual_recs_oscar:visual-recs-rule-update", kwargs={"pk": rule.pk})
    assert f"Now: {escape(target.title)}" in staff.get(update).content.decode()
    response = staff.post(update, rule_fields(kind="pin", source_id=source.pk, target_id=target.pk, position=7), follow=True)
    rule.refresh_from_db()
    assert (rule.kind, rule.position) == ("pin", 7)
    assert [m.level_tag for m in response.context["messages"]] == ["success", "warning"]  # beyond the default strip

    response = staff.post(reverse("visual_recs_oscar:visual-recs-rule-delete", kwargs={"pk": rule.pk}))
    assert response.status_code == 302 and not Rule.objects.exists()


def test_the_dashboard_form_says_what_is_wrong(staff, products):
    cases = [
        ({"field": "attribute:", "value": "Red"}, "field",
         "'attribute:' is not 'product_class' or 'attribute:<code>' (an attribute code is a Python identifier)"),
        ({"kind": "boost", "field": "colour"}, "field",
         "catalogue.Product has no field or attribute 'colour' (an Oscar product attribute is read as 'attribute:colour')"),
        ({"target_id": "0"}, "target_id", "No Product with the id 0."),
        ({"partition": "Martians", "target_id": products[1].pk}, "partition",
         "No indexed Product is in the partition “Martians”. The partitions: “Men”, “Women”."),
    ]
    for fields, field, message in cases:
        response = staff.post(reverse(CREATE), rule_fields(**fields))
        assert response.status_code == 200
        assert dict(response.context["form"].errors) == {field: [message]}, fields
        assert escape(message) in response.content.decode()
    assert not Rule.objects.exists()
    assert staff.post(reverse(CREATE), rule_fields(kind="boost", field="attribute:gender", partition="Women")).status_code == 302
    # The model is fixed: a content type posted anyway is no field of the form, and changes nothing.
    other = ContentType.objects.get_for_model(Rule).pk
    assert staff.post(reverse(CREATE), rule_fields(content_type=other, target_id=products[1].pk)).status_code == 302
    assert set(Rule.objects.values_list("content_type", flat=True)) == {product_content_type().pk}


def test_the_list_shows_a_rule_whose_product_was_deleted_and_only_oscars(staff, products):
    Rule.objects.create(
        content_type=product_content_type(), kind="exclude", source_id=str(products[0].pk), target_id=str(products[1].pk)
    )
    other_model = Rule.objects.create(content_type=ContentType.objects.get_for_model(Rule), kind="exclude", target_id="1")
    gone = products[1].pk
    products[1].delete()
    page = staff.get(reverse(RULES))
    assert page.status_code == 200
    html = page.content.decode()
    assert f"deleted (id {gone})" in html and f'data-rule-id="{other_model.pk}"' not in html
    assert staff.get(reverse("visual_recs_oscar:visual-recs-rule-update", kwargs={"pk": other_model.pk})).status_code == 404


def test_the_index_page_links_to_the_rules_and_a_product_filter_narrows_them(staff, products):
    index = staff.get(reverse("visual_recs_oscar:visual-recs-index")).content.decode()
    assert f'href="{reverse(RULES)}"' in index
    mine, _ = (
        Rule.objects.create(
            content_type=product_content_type(), kind="exclude", source_id=str(source.pk), target_id=str(products[2].pk)
        )
        for source in products[:2]
    )
    page = staff.get(reverse(RULES), {"product": products[0].pk})
    assert [rule.pk for rule in page.context["rules"]] == [mine.pk]
    form = staff.get(reverse(CREATE), {"product": products[0].pk}).context["form"]
    assert form["source_id"].value() == str(products[0].pk)


def staff_member(django_user_model, *codenames: str):
    user = django_user_model.objects.create_user("merchandiser", "m@example.com", "secret", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="visual_recs", codename__in=codenames))
    return user


@pytest.mark.parametrize(
    ("codenames", "may_list", "may_add", "may_change", "may_delete"),
    [
        ((), False, False, False, False),
        (("view_rule",), True, False, False, False),
        (("change_rule",), True, False, True, False),
        (("view_rule", "add_rule"), True, True, False, False),
        (("view_rule", "delete_rule"), True, False, False, True),
    ],
)
def test_each_rule_page_needs_its_permission(
    shop, products, client, django_user_model, codenames, may_list, may_add, may_change, may_delete
):
    rule = Rule.objects.create(content_type=product_content_type(), kind="exclude", target_id=str(products[1].pk))
    client.force_login(staff_member(django_user_model, *codenames))
    pages = {
        "list": (reverse(RULES), may_list),
        "add": (reverse(CREATE), may_add),
        "change": (reverse("visual_recs_oscar:visual-recs-rule-update", kwargs={"pk": rule.pk}), may_change),
        "delete": (reverse("visual_recs_oscar:visual-recs-rule-delete", kwargs={"pk": rule.pk}), may_delete),
    }
    assert {name: client.get(url).status_code for name, (url, _) in pages.items()} == {
        name: 200 if allowed else 403 for name, (_, allowed) in pages.items()
    }
    response = client.post(pages["add"][0], rule_fields(target_id=products[2].pk))
    assert Rule.objects.count() == (2 if may_add else 1) and response.status_code == (302 if may_add else 403)
    client.post(pages["delete"][0])
    assert Rule.objects.filter(pk=rule.pk).exists() != may_delete


def test_customers_and_visitors_are_sent_to_the_login(shop, client, django_user_model):
    assert client.get(reverse(RULES)).status_code == 302
    client.force_login(django_user_model.objects.create_user("customer", "c@example.com", "secret"))
    assert client.get(reverse(RULES)).status_code in (302, 403)
    assert client.post(reverse(CREATE), rule_fields(target_id="1")).status_code in (302, 403)
    assert not Rule.objects.exists()
