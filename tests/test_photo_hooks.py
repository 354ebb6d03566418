"""A shop whose photos live in another model (as django-oscar's do): the registry's hooks.

``tests.testapp`` has ``Listing`` (variants through ``parent``, ``visible()``) and
``ListingImage`` (the first by ``display_order`` is the photo); ``tests.testapp.visual`` has
the shop's declaration, ``ListingPhotos``, whose methods are the hooks. Images are saved after their listing, as a formset saves them.
"""

from __future__ import annotations

import hashlib

import pytest
from django.core import serializers
from django.core.files.base import ContentFile
from django.db import transaction

from tests.conftest import ids_of, photo_bytes, use_fake_extractor
from tests.test_celery import CLOSED_PORT_URL, broker
from tests.testapp import visual
from tests.testapp.models import Listing, ListingImage
from tests.testapp.visual import ListingPhotos
from visual_recs import indexing, queue, registry, tasks
from visual_recs.checks import check_models
from visual_recs.models import FeatureVector
from visual_recs.registration import ModelPhotos

pytestmark = pytest.mark.django_db

LISTINGS = "tests.testapp.visual.ListingPhotos"


@pytest.fixture
def listings(settings):
    """``Listing`` registered beside the suite's models, with the fast extractor."""
    use_fake_extractor(settings, MODELS={**settings.VISUAL_RECS["MODELS"], "listings": LISTINGS})
    return registry.get("listings")


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a block as if it were a transaction that commits: its on_commit work runs at the end."""

    def block():
        return django_capture_on_commit_callbacks(execute=True)

    return block


@pytest.fixture
def photo_ids(catalog_rows) -> list[str]:
    return ids_of(catalog_rows, gender="Women", count=6)


def sha_of(product_id: str) -> str:
    return hashlib.sha256(photo_bytes(product_id)).hexdigest()


def new_listing(title: str, department: str = "women", **fields) -> Listing:
    return Listing.objects.create(title=title, department=department, **fields)


def add_image(listing: Listing, product_id: str, display_order: int = 0) -> ListingImage:
    row = ListingImage(listing=listing, display_order=display_order)
    row.image.save(f"{product_id}.jpg", ContentFile(photo_bytes(product_id)), save=False)
    row.save()
    return row


def vector_of(listing: Listing) -> FeatureVector | None:
    content_type = registry.get("listings").content_type
    return FeatureVector.objects.filter(content_type=content_type, object_id=str(listing.pk)).first()


def test_an_image_saved_after_its_listing_indexes_the_listing(listings, committed, photo_ids):
    with committed():
        with transaction.atomic():  # the admin's change view: the listing, then its image formset
            listing = new_listing("Shirt")
            add_image(listing, photo_ids[0])
            add_image(listing, photo_ids[1], display_order=1)

    vector = vector_of(listing)
    assert vector.status == "ready" and vector.image_sha256 == sha_of(photo_ids[0])
    assert vector.partition == "women" and vector.listed is True
    assert indexing.recommendations(listing).status == "ready"


def test_the_first_image_by_display_order_is_the_photo(listings, committed, photo_ids):
    with committed():
        listing = new_listing("Shirt")
    with committed():
        first = add_image(listing, photo_ids[0], display_order=1)
        second = add_image(listing, photo_ids[1], display_order=2)
    assert vector_of(listing).image_sha256 == sha_of(photo_ids[0])

    first.display_order, second.display_order = 2, 1
    with committed():
        first.save()
        second.save()
    vector = vector_of(listing)
    assert vector.status == "ready" and vector.image_sha256 == sha_of(photo_ids[1])


def test_deleting_the_only_image_drops_the_vector_as_no_photo(listings, committed, photo_ids):
    with committed():
        listing = new_listing("Shirt")
        other = new_listing("Blouse")
    with committed():
        image = add_image(listing, photo_ids[0])
        add_image(other, photo_ids[1])
    assert [item.object for item in indexing.similar_to(other)] == [listing]

    with committed():
        image.delete()
    assert vector_of(listing) is None
    assert indexing.recommendations(listing).status == indexing.NO_IMAGE
    assert indexing.similar_to(other) == []
    assert indexing.index(listing) == "no_image"


def test_deleting_a_listing_with_its_images_does_not_bring_its_vector_back(listings, committed, photo_ids):
    with committed():
        listing = new_listing("Shirt")
        other = new_listing("Blouse")
    with committed():
        for order, product_id in enumerate(photo_ids[:2]):
            add_image(listing, product_id, display_order=order)
        add_image(other, photo_ids[2])
    assert vector_of(listing).status == "ready"

    with committed():
        listing.delete()  # cascades to its images first: their receivers find the listing gone
    assert not ListingImage.objects.filter(listing_id=listing.pk).exists()
    assert vector_of(listing) is None
    assert indexing.similar_to(other) == []


def test_a_variant_without_images_follows_its_parents_photo(listings, committed, photo_ids):
    with committed():
        parent = new_listing("Dress")
        variant = new_listing("Dress, size M", parent=parent)
        own = new_listing("Dress, size L", parent=parent)
    with committed():
        add_image(parent, photo_ids[0], display_order=1)
        add_image(own, photo_ids[1])
    assert vector_of(variant).image_sha256 == sha_of(photo_ids[0])
    assert vector_of(own).image_sha256 == sha_of(photo_ids[1])

    with committed():
        add_image(parent, photo_ids[2], display_order=0)  # the parent's new first image
    assert vector_of(parent).image_sha256 == sha_of(photo_ids[2])
    assert vector_of(variant).status == "ready" and vector_of(variant).image_sha256 == sha_of(photo_ids[2])
    assert vector_of(own).image_sha256 == sha_of(photo_ids[1])  # its own image still wins


def test_the_shown_hook_decides_what_is_recommended(settings, listings, committed, photo_ids):
    with committed():
        source = new_listing("Shirt")
        shown = new_listing("Blouse")
        hidden = new_listing("Top", visible=False)
        filtered = new_listing("Tunic")
    with committed():
        for listing, product_id in zip((source, shown, hidden, filtered), photo_ids):
            add_image(listing, product_id)
    assert {item.object for item in indexing.similar_to(source)} == {shown, filtered}
    assert vector_of(hidden).listed is False

    class SomeTitlesShown(ListingPhotos):
        def shown(self, queryset):
            return super().shown(queryset).filter(title__in=["Shirt", "Blouse", "Top"])

    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MODELS": {"listings": SomeTitlesShown}}
    assert list(registry.get("listings").shown().order_by("pk")) == [source, shown]
    assert [item.object for item in indexing.similar_to(source)] == [shown]

    hidden.visible = True
    with committed():
        hidden.save()
    assert vector_of(hidden).listed is True
    assert {item.object for item in indexing.similar_to(source)} == {shown, hidden}


def test_with_the_broker_down_an_image_save_leaves_the_listing_pending(listings, committed, photo_ids):
    with committed():
        listing = new_listing("Shirt")
    with broker(CLOSED_PORT_URL), committed():
        image = add_image(listing, photo_ids[0])  # saved, though nothing could be queued
    vector = vector_of(listing)
    assert vector.status == "pending" and vector.image_name == image.image.name  # no hash: the save read no photo
    assert listing in indexing.objects_needing_work(listings)

    tasks.sweep()
    assert vector_of(listing).status == "ready"

    with broker(CLOSED_PORT_URL), committed():
        image.delete()
    assert listing in indexing.objects_needing_work(listings)  # marked, though the task was lost
    tasks.sweep()
    assert vector_of(listing) is None


def test_fixture_loads_and_paused_imports_queue_nothing(listings, committed, photo_ids):
    with committed():
        listing = new_listing("Shirt")
        with queue.paused():
            add_image(listing, photo_ids[0])
    assert vector_of(listing) is None

    data = serializers.serialize("json", [add_image(new_listing("Blouse"), photo_ids[1])])
    ListingImage.objects.all().delete()
    with committed():
        for row in serializers.deserialize("json", data):
            row.save()  # as loaddata does: a raw save
    assert FeatureVector.objects.filter(content_type=listings.content_type).count() == 0

    summary = indexing.index_many(listings.with_photo())
    assert summary.indexed == 1  # the Blouse: the Shirt's image went with the delete


def test_without_a_with_photo_hook_every_object_is_looked_at_and_counted_without_a_photo(
    settings, listings, committed, photo_ids
):
    class WithoutWithPhoto(ListingPhotos):
        with_photo = ModelPhotos.with_photo  # the default again

    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MODELS": {"listings": WithoutWithPhoto}}
    with queue.paused():
        bare = new_listing("Shirt")
        pictured = new_listing("Blouse")
        add_image(pictured, photo_ids[0])
    indexed_model = registry.get("listings")
    assert set(indexed_model.with_photo()) == {bare, pictured}
    assert set(indexing.objects_needing_work(indexed_model)) == {bare, pictured}

    summary = indexing.index_many(indexing.objects_needing_work(indexed_model))
    assert (summary.indexed, summary.no_image) == (1, 1)
    assert indexing.recommendations(bare).status == indexing.NO_IMAGE


class Listings(ModelPhotos):
    """Listing declared here, and registered as a class rather than by its dotted path."""

    model = "testapp.Listing"
    partition_field = "department"
    photo_models = [{"model": "testapp.ListingImage", "owner": "listing"}]
    photo = staticmethod(visual.primary_photo)  # a function of the shop's, as it is

    def shown(self, queryset):
        return queryset.visible()


def test_a_class_itself_may_be_registered(settings, committed, photo_ids):
    use_fake_extractor(settings, MODELS={"listings": Listings})
    with committed():
        listing = new_listing("Shirt")
        add_image(listing, photo_ids[0])
        new_listing("Blouse", visible=False)
    assert vector_of(listing).status == "ready"
    assert list(registry.get("listings").shown()) == [listing]
    assert check_models() == []


def test_the_registered_hooks_pass_the_checks(settings):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MODELS": {"listings": LISTINGS}}
    assert check_models() == []


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"photo": "tests.testapp.visual.primary_photo"}, "visual_recs.E011"),  # 0.x's dotted path, not a method
        ({"dependants": 42}, "visual_recs.E011"),
        ({"shown": lambda self, queryset: queryset.published()}, "visual_recs.E004"),
        ({"shown": lambda self, queryset: list(queryset)}, "visual_recs.E004"),
        ({"with_photo": lambda self, queryset: list(queryset)}, "visual_recs.E011"),
        ({"photo_models": [{"model": "testapp.Missing", "owner": "listing"}]}, "visual_recs.E012"),
        ({"photo_models": [{"model": "testapp.ListingImage", "owner": "display_order"}]}, "visual_recs.E012"),
        ({"photo_models": [{"model": "testapp.ListingImage", "owner": "owner"}]}, "visual_recs.E012"),
        ({"photo_models": [{"model": "testapp.Garment", "owner": "photo"}]}, "visual_recs.E012"),
        ({"photo_models": "testapp.ListingImage"}, "visual_recs.E012"),
        ({"photo_field": "title"}, "visual_recs.E013"),
        ({"partition_field": None, "partition": "tests.testapp.visual.nowhere"}, "visual_recs.E011"),
        ({"partition": lambda self, listing: listing.department}, "visual_recs.E014"),
        ({"partition_field": "departement"}, "visual_recs.E003"),
        ({"prefetch": "images"}, "visual_recs.E017"),
        ({"serializer": "tests.nowhere.Serializer"}, "visual_recs.E017"),
    ],
)
def test_hook_mistakes_are_reported(settings, changes, expected):
    broken = type("Broken", (ListingPhotos,), changes)
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MODELS": {"listings": broken}}
    [error] = check_models()
    assert error.id == expected
    assert error.hint


@pytest.mark.slow
def test_listings_are_indexed_by_resnet50_from_their_images(settings, resnet_weights, catalog_rows, committed):
    """The real pipeline end to end: ResNet50 on the sample catalog's photos, kept in ListingImage."""
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MODELS": {"listings": LISTINGS}}
    women = ids_of(catalog_rows, gender="Women", count=3)
    men = ids_of(catalog_rows, gender="Men", count=3)
    listings = []
    for department, product_ids in (("women", women), ("men", men)):
        for product_id in product_ids:
            with committed():
                with transaction.atomic():
                    listing = new_listing(catalog_rows[product_id]["ProductTitle"], department)
                    add_image(listing, product_id)
            listings.append(listing)
    with committed():
        variant = new_listing("A variant", "men", parent=listings[-1])

    for listing in [*listings, variant]:
        vector = vector_of(listing)
        assert vector.status == "ready" and vector.dims == 2048, vector.error
    assert vector_of(variant).image_sha256 == sha_of(men[-1])
    for listing in listings:
        similar = indexing.similar_to(listing, limit=5)
        assert {item.object.department for item in similar} == {listing.department}
        assert len(similar) == 2  # the others of its department; the variant shares a photo, so never twice


def test_a_partition_hook_partitions_and_selects(listings, settings, committed, photo_ids):
    class ByTitle(ListingPhotos):
        partition_field = None

        def partition(self, listing):
            return (listing.title.split() or [None])[0]

    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MODELS": {"listings": ByTitle}}
    with committed():
        shirts = [new_listing("Shirt one"), new_listing("Shirt two")]
        blouse = new_listing("Blouse")
        untitled = new_listing("")
    with committed():
        for listing, product_id in zip([*shirts, blouse, untitled], photo_ids):
            add_image(listing, product_id)

    indexed_model = registry.get("listings")
    assert indexed_model.partitioned and indexed_model.partition_field is None
    assert [vector_of(listing).partition for listing in [*shirts, blouse, untitled]] == ["Shirt", "Shirt", "Blouse", ""]
    assert [item.object for item in indexing.similar_to(shirts[0])] == [shirts[1]]
    assert list(indexed_model.in_partition(indexed_model.all(), "Shirt").order_by("pk")) == shirts

