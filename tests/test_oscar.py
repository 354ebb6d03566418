"""django-oscar's catalogue through ``visual_recs.contrib.oscar``: a real Oscar shop, driven through its dashboard.

Products are created and edited with the dashboard's own product form and its formsets
(images, categories, stock records, recommendations), posted by a staff user; the shop
(``tests/oscar_shop``) registers Oscar's ``Product`` with the one documented entry, by the
``gender`` attribute, copying four similar items into ``ProductRecommendation``. The fast
colour extractor stands in for ResNet50 except in the test marked ``slow``.
"""

from __future__ import annotations

import hashlib
import re

import pytest

pytest.importorskip("oscar", reason="django-oscar is not installed: pip install -e '.[oscar]'")

from django.core import checks  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django.urls import reverse  # noqa: E402
from oscar.core.loading import get_model  # noqa: E402

from tests.conftest import CATALOG_DIR, ids_of, photo_bytes, use_fake_extractor  # noqa: E402
from tests.oscar_shop import catalogue  # noqa: E402
from tests.oscar_shop.dashboard import form_fields  # noqa: E402
from tests.oscar_shop.installed import SHOP_MODELS, SHOP_SETTINGS  # noqa: E402
from visual_recs import events, indexing, registry  # noqa: E402
from visual_recs.checks import check_models  # noqa: E402
from visual_recs.contrib.oscar import OscarProducts  # noqa: E402
from visual_recs.contrib.oscar.hooks import primary_photo  # noqa: E402
from visual_recs.contrib.oscar.models import WrittenRecommendation  # noqa: E402
from visual_recs.models import FeatureVector  # noqa: E402

pytestmark = pytest.mark.django_db

Product = get_model("catalogue", "Product")
ProductImage = get_model("catalogue", "ProductImage")
ProductRecommendation = get_model("catalogue", "ProductRecommendation")


@pytest.fixture
def shop(settings):
    """The Oscar shop's URLs, middleware and templates, its one entry, and the fast extractor."""
    for name, value in SHOP_SETTINGS.items():
        setattr(settings, name, value)
    use_fake_extractor(settings, MODELS=SHOP_MODELS, NEIGHBOURS=5)
    catalogue.product_class()
    return registry.get("products")


@pytest.fixture
def staff(client, django_user_model, shop):
    # Oscar 4.2's dashboard checks model permissions (view/add/change_product): a superuser has them all.
    user = django_user_model.objects.create_superuser("staff", "staff@example.com", "secret")
    client.force_login(user)
    return client


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """A block whose on_commit work runs at its end, as after the request's commit."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def women(catalog_rows) -> list[str]:
    return ids_of(catalog_rows, gender="Women", count=6)


@pytest.fixture
def men(catalog_rows) -> list[str]:
    return ids_of(catalog_rows, gender="Men", count=3)


def sha_of(product_id: str) -> str:
    return hashlib.sha256(photo_bytes(product_id)).hexdigest()


def upload(product_id: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(f"{product_id}.jpg", photo_bytes(product_id), content_type="image/jpeg")


def post_product_form(client, committed, url: str, changes: dict) -> None:
    """GET the dashboard's product page, change some fields, POST it all back; fails on a form error."""
    fields = form_fields(client.get(url).content.decode())
    fields.update(changes)
    with committed():
        response = client.post(url, fields)
    if response.status_code != 302:
        forms = ("form", "stockrecord_formset", "category_formset", "image_formset", "recommended_formset")
        errors = {
            name: (response.context[name].errors, getattr(response.context[name], "non_form_errors", list)())
            for name in forms
            if response.context and name in response.context
        }
        pytest.fail(f"the dashboard refused the product form: {errors}")


def create_product(client, committed, title: str, gender: str | None, photos=(), stock=True, **changes) -> Product:
    """A product made in the dashboard: its form, its ``gender`` attribute, a category, image uploads
    and (unless ``stock`` is False: Oscar makes no children of a product with stock) a stock record."""
    url = reverse("dashboard:catalogue-product-create", kwargs={"product_class_slug": catalogue.CLASS_SLUG})
    images = {f"images-{order}-original": upload(product_id) for order, product_id in enumerate(photos)}
    category = {"productcategory_set-0-category": str(catalogue.category().pk)}
    # A stock record, as a shop's product has: Oscar's strategy (and so a strip) sells nothing without one.
    partner, _ = catalogue.Partner.objects.get_or_create(name="Test shop")
    record = {"stockrecords-0-partner": str(partner.pk), "stockrecords-0-partner_sku": f"sku-{title}", "stockrecords-0-price": "10.00"}
    fields = {"title": title, "attr_gender": gender or "", **category, **(record if stock else {}), **images, **changes}
    post_product_form(client, committed, url, fields)
    return Product.objects.get(title=title)


def update_product(client, committed, product: Product, **changes) -> None:
    post_product_form(client, committed, reverse("dashboard:catalogue-product", kwargs={"pk": product.pk}), changes)


def vector_of(product: Product) -> FeatureVector | None:
    content_type = registry.get("products").content_type
    return FeatureVector.objects.filter(content_type=content_type, object_id=str(product.pk)).first()


def similar_ids(product: Product) -> list[int]:
    return [item.object.pk for item in indexing.similar_to(product, limit=10)]


def page_card_ids(client, product: Product) -> list[int]:
    """The products the page's "Visually similar" strip shows (asserting the page renders)."""
    response = client.get(product.get_absolute_url())
    assert response.status_code == 200
    strip = re.search(r'<section class="visual-recs-similar">(.*?)</section>', response.content.decode(), re.S)
    return [int(pk) for pk in re.findall(r'data-object-id="(\d+)"', strip.group(1))] if strip else []


def written(product: Product) -> list[int]:
    return [row.recommendation_id for row in ProductRecommendation.objects.filter(primary=product)]


def test_products_made_in_the_dashboard_are_indexed_shown_and_recommended(staff, committed, women, men):
    dresses = [create_product(staff, committed, f"Dress {n}", "Women", [pid]) for n, pid in enumerate(women[:4])]
    shoe = create_product(staff, committed, "Shoe", "Men", [men[0]])

    for product, product_id in zip(dresses, women):
        vector = vector_of(product)
        assert (vector.status, vector.partition, vector.image_sha256) == ("ready", "Women", sha_of(product_id))
    assert vector_of(shoe).partition == "Men"
    first = dresses[0]
    assert set(similar_ids(first)) == {dress.pk for dress in dresses[1:]}  # its gender only
    assert page_card_ids(staff, first) == similar_ids(first)[:4]
    # Copied into Oscar's recommendations, ranked as the strip: the theme's "Recommended items" show them.
    assert [product.pk for product in first.sorted_recommended_products] == similar_ids(first)[:4]
    assert WrittenRecommendation.objects.filter(recommendation__primary=first).count() == 3
    assert "Recommended items" in staff.get(first.get_absolute_url()).content.decode()


def test_with_events_on_oscars_strip_reports_its_cards(staff, committed, women, settings):
    dresses = [create_product(staff, committed, f"Dress {n}", "Women", [pid]) for n, pid in enumerate(women[:4])]
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EVENTS": True}
    html = staff.get(dresses[0].get_absolute_url(), HTTP_USER_AGENT="Mozilla/5.0 Chrome/124.0").content.decode()
    strip = re.search(r'<section class="visual-recs-similar">(.*?)</section>', html, re.S).group(1)
    tokens = re.findall(r'data-visual-recs-event="([^"]+)"', strip)
    assert [events.read_token(token, "impression").target_id for token in tokens] == [str(pk) for pk in similar_ids(dresses[0])[:4]]
    assert strip.count('src="/static/visual_recs/events.js" data-endpoint="/visual-recs/events/"') == 1


def test_the_cards_photos_come_from_prefetched_images_not_a_query_each(
    staff, committed, women, django_assert_num_queries
):
    dresses = [create_product(staff, committed, f"Dress {n}", "Women", [pid]) for n, pid in enumerate(women[:5])]
    indexed_model = registry.for_model(dresses[0])
    items = indexing.similar_to(dresses[0], limit=4)
    assert len(items) == 4
    with django_assert_num_queries(0):
        urls = [indexed_model.image_url_of(item.object) for item in items]
    assert all(url and url.endswith(".jpg") for url in urls)


def test_reordering_images_makes_the_new_first_image_the_photo(staff, committed, women):
    product = create_product(staff, committed, "Dress", "Women", women[:2])
    assert vector_of(product).image_sha256 == sha_of(women[0])
    first, second = ProductImage.objects.filter(product=product).order_by("display_order")

    forms = {f"images-{n}-id": str(image.pk) for n, image in enumerate((first, second))}
    update_product(staff, committed, product, **forms, **{"images-0-display_order": "1", "images-1-display_order": "0"})

    assert list(ProductImage.objects.filter(product=product).order_by("display_order")) == [second, first]
    vector = vector_of(product)
    assert vector.status == "ready" and vector.image_sha256 == sha_of(women[1])


def test_a_hidden_product_leaves_the_others_lists_and_recommendations(staff, committed, women):
    products = [create_product(staff, committed, f"Dress {n}", "Women", [pid]) for n, pid in enumerate(women[:3])]
    hidden = products[1]
    assert hidden.pk in similar_ids(products[0]) and hidden.pk in written(products[0])

    fields = form_fields(staff.get(reverse("dashboard:catalogue-product", kwargs={"pk": hidden.pk})).content.decode())
    fields.pop("is_public")  # the box unticked
    with committed():
        assert staff.post(reverse("dashboard:catalogue-product", kwargs={"pk": hidden.pk}), fields).status_code == 302

    assert vector_of(hidden).listed is False
    for other in (products[0], products[2]):
        assert hidden.pk not in similar_ids(other)
        assert hidden.pk not in written(other)
        assert hidden.pk not in page_card_ids(staff, other)
    assert page_card_ids(staff, hidden) == similar_ids(hidden)[:4] != []  # its own page still shows similar items


def test_deleting_the_only_image_leaves_no_photo(staff, committed, women):
    product = create_product(staff, committed, "Dress", "Women", [women[0]])
    other = create_product(staff, committed, "Other", "Women", [women[1]])
    image = ProductImage.objects.get(product=product)

    update_product(staff, committed, product, **{"images-0-id": str(image.pk), "images-0-DELETE": "on"})

    assert not ProductImage.objects.filter(product=product).exists()
    assert vector_of(product) is None
    assert indexing.recommendations(product).status == indexing.NO_IMAGE
    assert page_card_ids(staff, product) == []
    assert similar_ids(other) == [] and written(other) == []


def test_a_product_without_images_or_with_only_the_placeholder_has_no_photo(staff, committed, women, settings):
    bare = create_product(staff, committed, "No photo", "Women")
    assert isinstance(bare.primary_image(), dict)  # Oscar's placeholder: the "missing image" name
    assert primary_photo(bare) is None
    assert vector_of(bare) is None
    assert indexing.recommendations(bare).status == indexing.NO_IMAGE
    assert page_card_ids(staff, bare) == []
    assert registry.get("products").with_photo().filter(pk=bare.pk).exists() is False
    overview = staff.get(reverse("visual_recs_oscar:visual-recs-index")).content.decode()
    assert re.search(r'data-count="no_image">1<', overview)


def test_a_child_without_images_gets_its_parents_photo(staff, committed, women):
    parent = create_product(staff, committed, "Dress", "Women", [women[0]], stock=False)
    others = [create_product(staff, committed, f"Other {n}", "Women", [pid]) for n, pid in enumerate(women[1:3])]
    url = reverse("dashboard:catalogue-product-create-child", kwargs={"parent_pk": parent.pk})
    post_product_form(staff, committed, url, {"title": "Dress, size M"})
    child = Product.objects.get(title="Dress, size M")
    parent.refresh_from_db()
    assert (parent.structure, child.structure) == ("parent", "child")

    vector = vector_of(child)
    assert (vector.status, vector.image_sha256, vector.partition) == ("ready", sha_of(women[0]), "Women")
    assert vector.listed is False  # a variant is never recommended: its parent is
    assert set(similar_ids(child)) == {other.pk for other in others}  # not its parent: the same photo
    assert all(child.pk not in similar_ids(other) for other in others)
    assert page_card_ids(staff, child) == similar_ids(child)[:4]
    assert written(child) == []  # Oscar does not support recommendations on a child

    new_photo = ProductImage.objects.get(product=parent)
    update_product(staff, committed, parent, **{"images-0-id": str(new_photo.pk), "images-1-original": upload(women[3]),
                                                 "images-0-display_order": "1", "images-1-display_order": "0"})
    assert vector_of(child).image_sha256 == sha_of(women[3])  # follows its parent's new first image


def test_an_image_deleted_while_its_task_is_queued_ends_as_no_photo(staff, shop, women, django_capture_on_commit_callbacks):
    product = catalogue.add_product("Dress", "Women", None)
    with django_capture_on_commit_callbacks() as image_saved:
        image = catalogue.add_image(product, _photo_path(women[0]))
    with django_capture_on_commit_callbacks() as queued:
        for callback in image_saved:
            callback()  # the owner looked at: marked pending, its task queued (held here)
    assert vector_of(product).status == "pending" and queued

    with django_capture_on_commit_callbacks(execute=True):
        image.delete()
    for task in queued:  # the queued task runs last, on a product whose image is gone
        task()

    assert vector_of(product) is None
    assert indexing.recommendations(product).status == indexing.NO_IMAGE
    assert page_card_ids(staff, product) == []


def test_a_product_without_the_partition_attribute_is_in_the_empty_partition(staff, committed, women):
    unlabelled = [create_product(staff, committed, f"Unlabelled {n}", None, [pid]) for n, pid in enumerate(women[:2])]
    labelled = create_product(staff, committed, "Labelled", "Women", [women[2]])

    assert [vector_of(product).partition for product in unlabelled] == ["", ""]
    assert indexing.recommendations(unlabelled[0]).status == "ready"
    assert similar_ids(unlabelled[0]) == [unlabelled[1].pk]  # compared with the others lacking it only
    assert labelled.pk not in similar_ids(unlabelled[0]) and similar_ids(labelled) == []
    assert page_card_ids(staff, unlabelled[0]) == [unlabelled[1].pk]
    overview = staff.get(reverse("visual_recs_oscar:visual-recs-index")).content.decode()
    assert 'data-partition=""><td>(none)</td><td>2</td>' in overview


class ByClass(OscarProducts):
    partition_field = "product_class"


class ByAttributeNamedAsAField(OscarProducts):
    partition_field = "gender"


def initial(product) -> str:
    return product.title[:1]


class LearningFromAttributes(OscarProducts):
    learn_from = {"attribute:gender": 1.0, initial: 0.5}  # a product attribute, and a function


def test_a_class_partition_puts_a_child_in_its_parents_class(shop, settings, women):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MODELS": {"products": ByClass}}
    parent = catalogue.add_product("Dress", "Women", None)
    parent.structure = Product.PARENT
    parent.save()
    child = Product.objects.create(parent=parent, structure=Product.CHILD, title="Dress, M")
    bare = Product.objects.create(title="Classless", structure=Product.STANDALONE)
    partition_of = registry.get("products").partition_of
    assert (partition_of(parent), partition_of(child), partition_of(bare)) == ("clothing", "clothing", "")


def test_staff_see_the_index_page_and_queue_a_reindex(staff, committed, women, django_user_model, client):
    product = create_product(staff, committed, "Dress", "Women", [women[0]])
    url = reverse("visual_recs_oscar:visual-recs-index")
    dashboard = staff.get(reverse("dashboard:index")).content.decode()
    assert f'href="{url}"' in dashboard  # the documented OSCAR_DASHBOARD_NAVIGATION entry

    page = staff.get(url)
    assert page.status_code == 200 and re.search(r'data-count="objects">1<', page.content.decode())
    FeatureVector.objects.all().delete()
    with committed():
        response = staff.post(url, {"force": "1"}, follow=True)
    assert "Queued 1 products for reindexing." in response.content.decode()
    assert vector_of(product).status == "ready"  # eager tasks in the suite: the queued work already ran


def test_the_index_page_is_staff_only_and_its_post_needs_the_csrf_token(shop, django_user_model, client):
    url = reverse("visual_recs_oscar:visual-recs-index")
    assert client.get(url).status_code == 302  # to the dashboard's login
    customer = django_user_model.objects.create_user("customer", "customer@example.com", "secret")
    client.force_login(customer)
    assert client.get(url).status_code in (302, 403)
    assert client.post(url).status_code in (302, 403)

    from django.test import Client

    checked = Client(enforce_csrf_checks=True)
    checked.force_login(django_user_model.objects.create_user("s2", "s2@example.com", "secret", is_staff=True))
    assert checked.post(url).status_code == 403


def test_staff_recommendations_are_kept(staff, committed, women):
    products = [create_product(staff, committed, f"Dress {n}", "Women", [pid]) for n, pid in enumerate(women[:3])]
    extra = create_product(staff, committed, "Handpicked", "Men", [women[3]])
    ProductRecommendation.objects.create(primary=products[0], recommendation=extra, ranking=9)
    staff_row = ProductRecommendation.objects.get(primary=products[0], recommendation=products[1])
    WrittenRecommendation.objects.filter(recommendation=staff_row).delete()  # as if staff had added it
    staff_row.ranking = 7
    staff_row.save()

    with committed():
        indexing.rebuild_partition(registry.get("products"), "Women")

    rows = {row.recommendation_id: row.ranking for row in ProductRecommendation.objects.filter(primary=products[0])}
    assert rows[extra.pk] == 9 and rows[products[1].pk] == 7  # untouched
    assert products[0].sorted_recommended_products[:2] == [extra, products[1]]


def test_a_partition_the_app_does_not_understand_is_a_check_error(shop, settings):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MODELS": {"products": ByAttributeNamedAsAField}}
    errors = [error for error in checks.run_checks() if error.id.startswith("visual_recs")]
    assert [error.id for error in errors] == ["visual_recs.E003"]
    assert "'attribute:gender'" in errors[0].msg  # the spelling it meant
    assert registry.get("products").partition_of(Product(title="x")) == ""  # and no product page breaks over it

    class Misspelt(OscarProducts):
        partition_field = "attribute:gen-der"
        learn_from = ["attribute:", "product_class"]

    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MODELS": {"products": Misspelt}}
    errors = [error for error in checks.run_checks() if error.id.startswith("visual_recs")]
    assert sorted(error.id for error in errors) == ["visual_recs.E003", "visual_recs.E010"]
    assert all("'attribute:<code>'" in error.msg for error in errors)


def test_a_fit_learns_from_product_attributes_and_classes(shop, settings, women, men, committed):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MODELS": {"products": LearningFromAttributes}}
    with committed():
        made = [catalogue.add_product(f"W{n}", "Women", CATALOG_DIR / "images" / f"{pid}.jpg") for n, pid in enumerate(women[:3])]
        made += [catalogue.add_product(f"M{n}", "Men", CATALOG_DIR / "images" / f"{pid}.jpg") for n, pid in enumerate(men[:3])]
        made.append(catalogue.add_product("Unlabelled", None, CATALOG_DIR / "images" / f"{women[3]}.jpg"))
    indexed_model = registry.get("products")
    assert indexed_model.learn_from == ("attribute:gender", "initial")
    assert indexed_model.labels_of(made[0]) == {"attribute:gender": "Women", "initial": "W"}
    assert indexed_model.labels_of(made[-1]) == {"attribute:gender": "", "initial": "U"}
    assert check_models() == []

    summary = indexing.fit(indexed_model)
    assert summary.labelled == {"attribute:gender": 6, "initial": 7}
    assert summary.classes == {"attribute:gender": 2, "initial": 3}
    assert summary.fit.fields == ["attribute:gender", "initial"]


@pytest.mark.slow
def test_dashboard_products_are_indexed_by_resnet50_by_gender(staff, committed, settings, resnet_weights, catalog_rows):
    """The real pipeline: ResNet50 on the sample catalog's photos, uploaded through the dashboard."""
    # The shop fixture's settings with ResNet50 back in, and (on pgvector) a table for its 2048-d vectors.
    use_fake_extractor(
        settings, vector_dims=2048, EXTRACTOR={"BACKEND": "visual_recs.backends.extractors.ResNet50Extractor", "OPTIONS": {}}
    )
    shoes = ids_of(catalog_rows, gender="Men", product_type="Sports Shoes", count=3)
    girls = ids_of(catalog_rows, gender="Girls", count=3)
    made = {
        pid: create_product(staff, committed, catalog_rows[pid]["ProductTitle"], catalog_rows[pid]["Gender"], [pid])
        for pid in shoes + girls
    }
    for product in made.values():
        vector = vector_of(product)
        assert vector.status == "ready" and vector.dims == 2048, vector.error
    for pid, product in made.items():
        genders = {made_pid for made_pid, other in made.items() if other.pk in similar_ids(product)}
        assert {catalog_rows[g]["Gender"] for g in genders} == {catalog_rows[pid]["Gender"]}
        assert page_card_ids(staff, product) == similar_ids(product)[:4]


def _photo_path(product_id: str):
    from tests.conftest import CATALOG_DIR

    return CATALOG_DIR / "images" / f"{product_id}.jpg"


def bulk_action(client, action: str, products) -> None:
    """Run one of the dashboard's two-step bulk actions on ``products`` as staff do: tick them in the
    product list, pick the action, then confirm on the page it leads to (its boxes as rendered)."""
    listing = reverse("dashboard:catalogue-product-list")
    response = client.post(listing, {"action": action, "selected_product": [product.pk for product in products]})
    assert response.status_code == 302, response
    confirm = response.url
    ticked = re.findall(r'name="selected_products" value="(\d+)"[^>]*checked', client.get(confirm).content.decode())
    assert sorted(map(int, ticked)) == sorted(product.pk for product in products)
    response = client.post(confirm, {"selected_products": ticked})
    assert (response.status_code, response.url) == (302, listing)


def test_the_dashboards_bulk_non_public_action_is_followed_and_undone_without_the_sweep(
    staff, committed, women, django_capture_on_commit_callbacks
):
    products = [create_product(staff, committed, f"Dress {n}", "Women", [pid]) for n, pid in enumerate(women)]
    hidden = products[1]
    others = [product for product in products if product != hidden]
    naming = [other for other in others if hidden in other.sorted_recommended_products]
    assert naming

    with django_capture_on_commit_callbacks() as queued:
        bulk_action(staff, "make_products_non_public", [hidden])
    hidden.refresh_from_db()
    assert hidden.is_public is False
    # In the request itself, before the worker's task runs: Oscar's "Recommended items" drop it.
    assert all(hidden not in other.sorted_recommended_products for other in naming)
    assert vector_of(hidden).listed is True and queued  # the move is the worker's, queued after the commit

    for task in queued:
        task()
    assert vector_of(hidden).listed is False
    for other in others:
        assert hidden.pk not in similar_ids(other) and hidden.pk not in page_card_ids(staff, other)
        # The worker's repair wrote the next similar item into the freed place: four again.
        assert written(other) == similar_ids(other)[:4] and len(written(other)) == 4
    assert page_card_ids(staff, hidden) == similar_ids(hidden)[:4] != []  # its own page keeps its similar items

    with committed():
        bulk_action(staff, "make_products_public", [hidden])
    assert vector_of(hidden).listed is True
    for other in naming:  # back at once, in the lists, the strips and the copied rows: no sweep ran
        assert hidden.pk in similar_ids(other) and hidden.pk in page_card_ids(staff, other)
        assert hidden in other.sorted_recommended_products and written(other) == similar_ids(other)[:4]


def test_the_bulk_actions_are_followed_once_whatever_view_serves_them():
    from oscar.core.loading import get_class

    from visual_recs.contrib.oscar.bulk_actions import FollowedAction, follow

    list_view = get_class("dashboard.catalogue.views", "ProductListView")
    confirm_view = get_class("dashboard.catalogue.views", "ProductBulkActionConfirmView")
    follow()  # again, as a second ready() would: nothing is wrapped twice
    actions = confirm_view.intermediate_actions
    assert actions is list_view.intermediate_actions
    assert all(type(action) is FollowedAction and type(action.action) is not FollowedAction for action in actions.values())
    assert str(actions["make_products_non_public"]) == "Make products non-public"  # the menu's label


def test_an_arm_of_the_shops_own_recommendations_shows_oscars_upselling(staff, committed, women, settings):
    from tests.conftest import declare

    declare(settings, "products", recommendations=0)  # the staff's own, not copies of ours
    products = [create_product(staff, committed, f"Dress {n}", "Women", [pid]) for n, pid in enumerate(women[:4])]
    first, sold_out = products[3], products[2]
    ProductRecommendation.objects.create(primary=products[0], recommendation=first, ranking=9)
    ProductRecommendation.objects.create(primary=products[0], recommendation=sold_out, ranking=5)
    ProductRecommendation.objects.create(primary=products[0], recommendation=products[1], ranking=1)
    catalogue.ProductClass.objects.update(track_stock=True)
    catalogue.StockRecord.objects.update(num_in_stock=5)
    catalogue.StockRecord.objects.filter(product=sold_out).update(num_in_stock=0)
    found = indexing.recommendations(products[0], 5, source="shop").items
    assert [(item.object, item.origin) for item in found] == [(first, "shop"), (products[1], "shop")]
    # The visual strip follows Oscar's stock as well, at once and both ways.
    assert sold_out.pk not in similar_ids(products[0]) and first.pk in similar_ids(products[0])
    catalogue.StockRecord.objects.filter(product=sold_out).update(num_allocated=0, num_in_stock=1)
    assert sold_out.pk in similar_ids(products[0])
    catalogue.StockRecord.objects.filter(product=sold_out).update(num_allocated=1)
    assert sold_out.pk not in similar_ids(products[0])


def test_reindexing_from_the_dashboard_needs_the_permission_to_change_products(shop, django_user_model, client, committed, women):
    from django.contrib.auth.models import Permission

    product = catalogue.add_product("Dress", "Women", CATALOG_DIR / "images" / f"{women[0]}.jpg")
    FeatureVector.objects.all().delete()
    url = reverse("visual_recs_oscar:visual-recs-index")
    staff = django_user_model.objects.create_user("clerk", "clerk@example.com", "secret", is_staff=True)
    client.force_login(staff)
    assert client.get(url).status_code == 200  # the status page: staff
    with committed():
        assert client.post(url, {"force": "1"}).status_code == 403
    assert vector_of(product) is None  # nothing was queued
    staff.user_permissions.add(Permission.objects.get(codename="change_product", content_type__app_label="catalogue"))
    client.force_login(django_user_model.objects.get(pk=staff.pk))
    with committed():
        assert client.post(url, {"force": "1"}).status_code == 302
    assert vector_of(product).status == "ready"
