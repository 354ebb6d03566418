"""The admin through the real admin client: columns, the similar-items preview, the reindex action."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.core.files.base import ContentFile
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.conftest import declare, ids_of
from tests.testapp.models import Garment
from visual_recs import admin as visual_recs_admin
from visual_recs import indexing, queue
from visual_recs.contrib.catalog.models import Product
from visual_recs.models import FeatureVector

pytestmark = [pytest.mark.django_db]

CHANGELIST = "admin:visual_recs_catalog_product_changelist"


@pytest.fixture
def men(fake_extractor, catalog_rows, make_catalog):
    return make_catalog(ids_of(catalog_rows, gender="Men", count=6))


@pytest.fixture
def broken(men):
    product = Product(title="Broken photo", gender="Men")
    product.image.save("broken.jpg", ContentFile(b"not a photo"), save=False)
    with queue.paused():
        product.save()
    indexing.index(product)
    return product


@pytest.fixture
def enqueued(monkeypatch):
    """Every enqueue call, passed on to the real one (eager Celery runs the task here)."""
    calls = []
    real_enqueue = queue.enqueue

    def recording(task, *args):
        calls.append((task.name, args))
        return real_enqueue(task, *args)

    monkeypatch.setattr(queue, "enqueue", recording)
    return calls


def run_action(client, products):
    return client.post(
        reverse(CHANGELIST),
        {"action": "reindex_visual_features", "_selected_action": [p.pk for p in products]},
        follow=True,
    )


def test_the_change_list_shows_thumbnails_and_index_status_with_the_failure_reason(admin_client, men, broken):
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert html.count('alt="" width="36" height="48" loading="lazy"') == len(men) + 1
    assert f'src="{men[0].image.url}"' in html
    assert html.count('<td class="field-visual_recs_status">ready</td>') == len(men)
    assert 'failed: <span title="not an image file (or a format Pillow cannot read)">' in html


def test_the_change_list_costs_the_same_queries_for_more_rows(admin_client, fake_extractor, catalog_rows, make_catalog):
    make_catalog(ids_of(catalog_rows, gender="Men", count=3))
    admin_client.get(reverse(CHANGELIST))  # warm the session and content-type caches
    with CaptureQueriesContext(connection) as few:
        admin_client.get(reverse(CHANGELIST))
    make_catalog(ids_of(catalog_rows, gender="Women", count=9))
    with CaptureQueriesContext(connection) as more:
        admin_client.get(reverse(CHANGELIST))
    assert len(more) == len(few)


def test_the_change_page_previews_the_similar_items_with_distances(admin_client, men):
    html = admin_client.get(reverse("admin:visual_recs_catalog_product_change", args=[men[0].pk])).content.decode()
    assert "Visual recommendations" in html
    expected = indexing.recommendations(men[0], 10).items
    assert html.count("<small>d = ") == len(expected) == 5
    for item in expected:
        assert reverse("admin:visual_recs_catalog_product_change", args=[item.object.pk]) in html
        assert f"d = {item.distance:.2f}" in html


def test_the_change_page_of_a_failed_product_says_why(admin_client, broken):
    html = admin_client.get(reverse("admin:visual_recs_catalog_product_change", args=[broken.pk])).content.decode()
    assert "not an image file" in html and "None yet." in html


def test_the_action_enqueues_the_selection_and_reports_how_many(admin_client, men, enqueued):
    before = dict(FeatureVector.objects.values_list("object_id", "updated_at"))
    response = run_action(admin_client, men[:3])
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == ["Queued 3 products for reindexing."]
    assert enqueued == [("visual_recs.tasks.index_batch", ("visual_recs_catalog", "product", sorted(str(p.pk) for p in men[:3]), True))]
    after = dict(FeatureVector.objects.values_list("object_id", "updated_at"))
    # Forced: extracted again though the photos did not change; the others left alone.
    assert all(after[str(p.pk)] > before[str(p.pk)] for p in men[:3])
    assert all(after[str(p.pk)] == before[str(p.pk)] for p in men[3:])


def test_the_action_queues_large_selections_in_batches(admin_client, men, enqueued, monkeypatch):
    monkeypatch.setattr(visual_recs_admin, "REINDEX_BATCH", 4)
    response = run_action(admin_client, men)
    assert [str(m) for m in response.context["messages"]] == ["Queued 6 products for reindexing."]
    assert [len(args[2]) for _, args in enqueued] == [4, 2]


def test_the_action_says_so_when_the_queue_cannot_be_reached(admin_client, men, monkeypatch):
    monkeypatch.setattr(queue, "enqueue", lambda task, *args: False)
    response = run_action(admin_client, men[:2])
    [message] = response.context["messages"]
    assert message.level_tag == "warning"
    assert str(message).startswith("Queued 0 of 2 products for reindexing: the task queue cannot be reached.")


def test_a_user_who_may_only_view_products_cannot_run_the_action(client, men, enqueued):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_product", content_type__app_label="visual_recs_catalog"))
    client.force_login(viewer)
    page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200
    assert "reindex_visual_features" not in page.content.decode()
    response = run_action(client, men[:2])
    assert enqueued == []
    assert "Queued" not in " ".join(str(m) for m in response.context["messages"])

    editor = User.objects.create_user("editor", password="pw", is_staff=True)
    editor.user_permissions.add(*Permission.objects.filter(
            codename__in=["view_product", "change_product"], content_type__app_label="visual_recs_catalog"
        ))
    client.force_login(editor)
    assert [str(m) for m in run_action(client, men[:2]).context["messages"]] == ["Queued 2 products for reindexing."]


def test_the_mixin_gives_a_shops_own_admin_the_columns_action_and_preview_in_one_line():
    class GarmentAdmin(visual_recs_admin.VisualRecsAdminMixin, admin.ModelAdmin):
        list_display = ("name", "audience", "state")
        actions = ["some_action_of_the_shop"]

        @admin.action(description="Something else")
        def some_action_of_the_shop(self, request, queryset):
            pass

    model_admin = GarmentAdmin(Garment, admin.AdminSite(name="shop_admin"))
    request = RequestFactory().get("/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    assert model_admin.get_list_display(request) == [
        "name", "visual_recs_thumbnail", "audience", "state", "visual_recs_status",
    ]
    assert {"some_action_of_the_shop", "reindex_visual_features"} <= set(model_admin.get_actions(request))
    garment = Garment(name="A garment", audience="kids")
    fieldsets = model_admin.get_fieldsets(request, garment)
    assert fieldsets[-1][1]["fields"] == ["visual_recs_status", "visual_recs_similar", "visual_recs_rules"]
    assert not any("visual_recs_similar" in options["fields"] for _, options in fieldsets[:-1])
    assert model_admin.get_fieldsets(request, None)[-1][0] != "Visual recommendations"  # not on the add page


def test_the_feature_vector_admin_lists_and_filters_by_status_read_only(admin_client, men, broken):
    changelist = reverse("admin:visual_recs_featurevector_changelist")
    html = admin_client.get(changelist, {"status__exact": "failed"}).content.decode()
    assert html.count('<td class="field-status">failed</td>') == 1
    assert "not an image file" in html and '<td class="field-status">ready</td>' not in html
    for column in ("field-partition", "field-model_id", "field-updated_at", "field-short_error"):
        assert column in html

    vector = FeatureVector.objects.get(object_id=str(men[0].pk))
    page = admin_client.get(reverse("admin:visual_recs_featurevector_change", args=[vector.pk]))
    assert page.status_code == 200 and "colour-grid:4" in page.content.decode()
    assert 'name="status"' not in page.content.decode()  # read-only
    assert "vector" not in page.context["adminform"].form.fields
    assert admin_client.get(reverse("admin:visual_recs_featurevector_add")).status_code == 403


def test_after_a_fit_the_preview_shows_each_learned_part_of_a_distance(settings, admin_client, catalog_rows, make_catalog):
    from tests.conftest import use_fake_extractor
    from visual_recs import registry

    use_fake_extractor(settings)
    declare(settings, "products", learn_from={"product_type": 1.0, "colour": 0.5})
    ids = [
        pid
        for product_type in ("Sports Shoes", "Casual Shoes", "Formal Shoes")
        for pid in ids_of(catalog_rows, gender="Men", product_type=product_type, count=4)
    ]
    products = make_catalog(ids)
    indexing.fit(registry.get("products"))
    html = admin_client.get(reverse("admin:visual_recs_catalog_product_change", args=[products[0].pk])).content.decode()
    items = indexing.recommendations(products[0], 10).items
    parts = indexing.distance_parts(registry.get("products"), str(products[0].pk), [str(i.object.pk) for i in items])
    for item in items:
        shares = parts[str(item.object.pk)]
        assert set(shares) == {"learned product_type", "learned colour"}
        # The parts make up the distance the list ranks by.
        # (pgvector keeps half-precision vectors: the parts and the distance agree to its precision)
        assert sum(v * v for v in shares.values()) ** 0.5 == pytest.approx(item.distance, rel=1e-2, abs=1e-3)
        assert f"learned product_type: {shares['learned product_type']:.2f}" in html
    assert html.count("learned colour: ") == len(items)


def eps_photo() -> bytes:
    """An EPS file Pillow recognises (it would render it with Ghostscript): a format the app refuses."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), "red").save(buffer, "EPS")
    return buffer.getvalue()


def add_product(client, photo_name: str, photo: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile(photo_name, photo, content_type="application/octet-stream")
    data = {"title": "Uploaded in the admin", "gender": "Men", "is_active": "on", "image": upload}
    return client.post(reverse("admin:visual_recs_catalog_product_add"), data)


def test_the_admin_refuses_a_photo_format_the_worker_does_not_decode(admin_client, fake_extractor, media_root):
    # Django's own ImageField opens every format Pillow knows: the photo field goes through the app's loader.
    response = add_product(admin_client, "photo.eps", eps_photo())
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["image"] == [
        "This photo cannot be used: not an image file, or a format the shop does not read (such as EPS)."
    ]
    assert not Product.objects.exists()

    from tests.conftest import photo_bytes

    response = add_product(admin_client, "shoe.jpg", photo_bytes("13683"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    product = Product.objects.get()
    assert product.image.read() == photo_bytes("13683")  # read to the end by the check, stored whole
