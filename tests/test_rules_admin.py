"""Merchandising rules in the Django admin: ``RuleForm``'s checks, ``RuleAdmin``'s list and forms, the product page's links.

Everything goes through the real admin views with the test client (the form's messages as the
admin renders them, the list as staff see it), on bundled Products made from the sample catalog
and indexed by the fast colour extractor (the partition check reads their vectors).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from tests.conftest import declare, ids_of
from visual_recs import forms, registry
from visual_recs.contrib.catalog.models import Product
from visual_recs.models import Rule

pytestmark = [pytest.mark.django_db]

ADD = "admin:visual_recs_rule_add"
CHANGELIST = "admin:visual_recs_rule_changelist"


@pytest.fixture
def men(fake_extractor, catalog_rows, make_catalog) -> list[Product]:
    return make_catalog(ids_of(catalog_rows, gender="Men", count=4))


@pytest.fixture
def women(fake_extractor, catalog_rows, make_catalog) -> list[Product]:
    return make_catalog(ids_of(catalog_rows, gender="Women", count=2))


def products_type() -> ContentType:
    return registry.get("products").content_type


def rule_data(**fields) -> dict[str, str]:
    """A POST of the add form: a pin on the bundled Product, with ``fields`` over it (None leaves a field out)."""
    data = {"content_type": str(products_type().pk), "kind": "pin", "active": "on", "strength": "0.2", **fields}
    return {name: str(value) for name, value in data.items() if value is not None}


def post_rule(client, **fields):
    return client.post(reverse(ADD), rule_data(**fields))


def form_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, "the admin saved the rule (or failed) instead of showing the form again"
    return {name: list(errors) for name, errors in response.context["adminform"].form.errors.items()}


def bad_inputs(men: list[Product]):
    """(the fields posted, the one field at fault, its message) for each way to get a rule wrong."""
    source, target = str(men[0].pk), str(men[1].pk)
    return [
        ({"source_id": source, "position": 1}, "target_id", "A pin needs the item it puts in the strip."),
        ({"source_id": source, "target_id": target}, "position", "A pin needs a position, from 1 to 50."),
        ({"source_id": source, "target_id": target, "position": 0}, "position", "A position is from 1 to 50."),
        ({"source_id": source, "target_id": target, "position": 51}, "position", "A position is from 1 to 50."),
        ({"kind": "exclude", "source_id": source}, "target_id", "An exclude needs an item, or a field and the value to leave out."),
        ({"kind": "exclude", "field": "colour"}, "value", "Give the value of “colour” to leave out."),
        ({"kind": "exclude", "value": "Black"}, "field", "Give the field that reads “Black”."),
        ({"kind": "exclude", "target_id": target, "field": "colour", "value": "Black"}, "field",
         "Exclude one item, or the items whose field reads a value: not both."),
        ({"kind": "boost"}, "field", "A boost needs the field items share with the product (a brand) or a number near its own (a price)."),
        ({"kind": "boost", "field": "colour", "strength": 0}, "strength", "The strength is above 0 and at most 0.9."),
        ({"kind": "boost", "field": "colour", "strength": 0.95}, "strength", "The strength is above 0 and at most 0.9."),
        ({"kind": "boost", "field": "colour", "strength": "nan"}, "strength", "Enter a number."),
        ({"kind": "boost", "field": "price", "within_percent": 0}, "within_percent",
         "The band is above 0 percent (leave it empty for equal values)."),
        ({"kind": "boost", "field": "brand"}, "field", "visual_recs_catalog.Product has no field or attribute 'brand'"),
        ({"source_id": "999999", "target_id": target, "position": 1}, "source_id", "No product with the id 999999."),
        ({"source_id": source, "target_id": "abc", "position": 1}, "target_id", "No product with the id abc."),
        ({"source_id": source, "target_id": "9" * 40, "position": 1}, "target_id", f"No product with the id {'9' * 40}."),
        ({"source_id": source, "target_id": f"0{source}", "position": 1}, "target_id", "A product cannot pin or exclude itself."),
        ({"kind": "exclude", "source_id": source, "target_id": source}, "target_id", "A product cannot pin or exclude itself."),
        ({"partition": "Martians", "target_id": target, "position": 1}, "partition",
         "No indexed product is in the partition “Martians”. The partitions: “Men”, “Women”."),
        ({"source_id": source, "partition": "Men", "target_id": target, "position": 1}, "partition",
         "A rule for one product applies in its partition: leave the partition empty."),
        ({"kind": "launch"}, "kind", "Select a valid choice. launch is not one of the available choices."),
    ]


def test_each_bad_input_is_a_message_on_its_field(admin_client, men, women):
    for fields, field, message in bad_inputs(men):
        response = post_rule(admin_client, **fields)
        assert form_errors(response) == {field: [message]}, fields
        assert escape(message) in response.content.decode()
    assert not Rule.objects.exists()


def test_only_registered_models_are_offered(admin_client, men):
    unregistered = ContentType.objects.get_for_model(User)
    page = admin_client.get(reverse(ADD))
    field = page.context["adminform"].form.fields["content_type"]
    choices = {str(value): label for value, label in field.choices if value}
    assert choices == {
        str(products_type().pk): "product (products)",
        str(registry.get("garments").content_type.pk): "garment (garments)",
    }
    response = post_rule(admin_client, content_type=unregistered.pk, source_id=men[0].pk, target_id=men[1].pk, position=1)
    assert form_errors(response) == {
        "content_type": ["Select a valid choice. That choice is not one of the available choices."]
    }


def test_ids_are_checked_against_the_chosen_model(admin_client, settings, men, make_garments, catalog_rows):
    garments = make_garments(ids_of(catalog_rows, gender="Women", count=2), audience="women")
    garment_type = registry.get("garments").content_type.pk
    response = post_rule(admin_client, content_type=garment_type, source_id="not-a-uuid", target_id=garments[1].pk, position=1)
    assert form_errors(response) == {"source_id": ["No garment with the id not-a-uuid."]}
    # A product's integer id is no garment's.
    response = post_rule(admin_client, content_type=garment_type, source_id=garments[0].pk, target_id=men[1].pk, position=1)
    assert form_errors(response) == {"target_id": [f"No garment with the id {men[1].pk}."]}

    declare(settings, "garments", partition_field=None)
    response = post_rule(admin_client, content_type=garment_type, partition="women", target_id=garments[1].pk, position=1)
    assert form_errors(response) == {"partition": ["The garment catalog has no partitions: leave it empty."]}


def test_a_pin_is_saved_through_the_add_view_with_its_ids_as_the_model_writes_them(admin_client, men):
    response = admin_client.post(
        reverse(ADD),
        # A leading zero, a field a pin does not read and no strength: stored as "1163", not at all, the default.
        rule_data(
            source_id=f"0{men[0].pk}", target_id=f" {men[3].pk} ", position=2, field="colour", strength="", note="Lookbook"
        ),
        follow=True,
    )
    assert response.status_code == 200
    rule = Rule.objects.get()
    assert (rule.kind, rule.source_id, rule.target_id, rule.position, rule.field, rule.note) == (
        "pin", str(men[0].pk), str(men[3].pk), 2, "", "Lookbook"
    )
    assert rule.content_type == products_type()
    assert [m.level_tag for m in response.context["messages"]] == ["success"]  # position 2: no warning


def test_a_pin_beyond_the_default_strip_is_saved_with_a_warning(admin_client, men):
    response = admin_client.post(reverse(ADD), rule_data(source_id=men[0].pk, target_id=men[1].pk, position=8), follow=True)
    warnings = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert warnings == [forms.pin_warning(8)]
    assert warnings[0].startswith("Position 8 is beyond the 5 items a strip shows by default")
    assert Rule.objects.get().position == 8


def test_an_exclude_by_field_and_a_boost_in_a_partition_are_saved(admin_client, men, women):
    assert post_rule(admin_client, kind="exclude", partition="Men", field="colour", value="Black", position=3).status_code == 302
    assert post_rule(admin_client, kind="boost", field="price", within_percent=10, strength=0.5, target_id=men[1].pk).status_code == 302
    assert post_rule(admin_client, kind="boost", field="colour", strength="").status_code == 302
    exclude, band, same_colour = Rule.objects.order_by("pk")
    assert (exclude.partition, exclude.field, exclude.value, exclude.position) == ("Men", "colour", "Black", None)
    assert (band.partition, band.field, band.within_percent, band.strength, band.target_id) == ("", "price", 10, 0.5, "")
    assert (same_colour.field, same_colour.within_percent, same_colour.strength) == ("colour", None, 0.2)


def make_rules(men, count: int) -> list[Rule]:
    content_type = products_type()
    return [
        Rule.objects.create(
            content_type=content_type, kind="pin", source_id=str(men[n % 2].pk), target_id=str(men[2 + n % 2].pk), position=1 + n
        )
        for n in range(count)
    ]


def test_the_list_names_products_by_title_in_one_query_per_page(admin_client, men):
    make_rules(men, 2)
    admin_client.get(reverse(CHANGELIST))  # warm the session and content-type caches
    with CaptureQueriesContext(connection) as few:
        html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert f'<td class="field-product">{escape(men[0].title)}</td>' in html
    assert escape(f"{men[2].title} at 1") in html and "this product only" in html
    make_rules(men, 12)
    with CaptureQueriesContext(connection) as more:
        admin_client.get(reverse(CHANGELIST))
    assert len(more) == len(few)


def test_a_rule_whose_product_was_deleted_still_lists_and_edits(admin_client, men):
    rule = Rule.objects.create(
        content_type=products_type(), kind="pin", source_id=str(men[0].pk), target_id=str(men[1].pk), position=1
    )
    gone = men[1].pk
    men[1].delete()
    listing = admin_client.get(reverse(CHANGELIST))
    assert listing.status_code == 200
    assert f"deleted (id {gone}) at 1" in listing.content.decode()

    url = reverse("admin:visual_recs_rule_change", args=[rule.pk])
    page = admin_client.get(url)
    assert page.status_code == 200 and f"Now: deleted (id {gone})" in page.content.decode()
    assert f"Now: {escape(men[0].title)}" in page.content.decode()
    # Unchanged ids are not checked again: staff can switch the rule off and say why.
    response = admin_client.post(url, rule_data(source_id=men[0].pk, target_id=gone, position=1, active=None, note="Sold out"))
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.active, rule.note, rule.target_id) == (False, "Sold out", str(gone))
    # A changed one is.
    response = admin_client.post(url, rule_data(source_id=men[0].pk, target_id=gone + 100000, position=1))
    assert form_errors(response) == {"target_id": [f"No product with the id {gone + 100000}."]}


def test_the_search_finds_rules_by_id_and_note(admin_client, men):
    first, second = make_rules(men, 2)
    Rule.objects.filter(pk=second.pk).update(note="Summer campaign")
    found = admin_client.get(reverse(CHANGELIST), {"q": str(men[0].pk)}).context["cl"].result_list
    assert [r.pk for r in found] == [first.pk]
    found = admin_client.get(reverse(CHANGELIST), {"q": "campaign"}).context["cl"].result_list
    assert [r.pk for r in found] == [second.pk]


def test_the_product_page_links_to_its_rules_and_to_a_prefilled_add_form(admin_client, men):
    mine, other = make_rules(men, 2)  # mine is men[0]'s, other men[1]'s
    html = admin_client.get(reverse("admin:visual_recs_catalog_product_change", args=[men[0].pk])).content.decode()
    content_type = products_type().pk
    listing = f"{reverse(CHANGELIST)}?content_type__id__exact={content_type}&amp;source_id={men[0].pk}"
    adding = f"{reverse(ADD)}?content_type={content_type}&amp;source_id={men[0].pk}"
    assert f'<a href="{listing}">Rules for this product (1)</a>' in html
    assert f'<a href="{adding}">Add a rule</a>' in html

    found = admin_client.get(listing.replace("&amp;", "&")).context["cl"].result_list
    assert [r.pk for r in found] == [mine.pk]
    form = admin_client.get(adding.replace("&amp;", "&")).context["adminform"].form
    assert (str(form["content_type"].value()), form["source_id"].value()) == (str(content_type), str(men[0].pk))
    assert f"Now: {escape(men[0].title)}" in str(form["source_id"].help_text)


def staff_with(*codenames: str) -> User:
    user = User.objects.create_user("merchandiser", password="pw", is_staff=True)
    permissions = Permission.objects.filter(
        content_type__app_label__in=["visual_recs", "visual_recs_catalog"], codename__in=codenames
    )
    user.user_permissions.add(*permissions)
    return user


def test_staff_without_the_add_permission_cannot_add_a_rule(client, men):
    client.force_login(staff_with("view_rule", "view_product"))
    assert client.get(reverse(ADD)).status_code == 403
    assert client.post(reverse(ADD), rule_data(source_id=men[0].pk, target_id=men[1].pk, position=1)).status_code == 403
    assert not Rule.objects.exists()
    assert client.get(reverse(CHANGELIST)).status_code == 200
    # The product page offers what the user may do: the list, not the add form.
    html = client.get(reverse("admin:visual_recs_catalog_product_change", args=[men[0].pk])).content.decode()
    assert "Rules for this product (0)" in html and "Add a rule" not in html


def test_staff_with_the_add_permission_can(client, men):
    client.force_login(staff_with("add_rule", "view_rule"))
    assert client.post(reverse(ADD), rule_data(source_id=men[0].pk, target_id=men[1].pk, position=1)).status_code == 302
    assert Rule.objects.filter(source_id=str(men[0].pk), target_id=str(men[1].pk)).exists()


def test_titles_are_escaped_where_the_form_names_the_products(admin_client, fake_extractor, catalog_rows, make_catalog):
    [product] = make_catalog(ids_of(catalog_rows, gender="Men", count=1), title="<b>Bold</b> shoe")
    html = admin_client.get(reverse(ADD), {"content_type": products_type().pk, "source_id": product.pk}).content.decode()
    assert "Now: &lt;b&gt;Bold&lt;/b&gt; shoe" in html and "<b>Bold</b>" not in html
