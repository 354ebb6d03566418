"""Saves read no photo: they compare stored names and mark; the worker hashes (issue 17, item 5).

The photo fields are given a storage that counts ``open()`` calls. A save's on_commit work is
captured without running it, so what the request path opened is counted apart from what the
(eager) task opens when the captured callbacks are then run.
"""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.db import transaction

from tests.conftest import ids_of, photo_bytes, use_fake_extractor
from tests.test_photo_hooks import LISTINGS, add_image
from tests.testapp.models import Listing, ListingImage
from visual_recs import indexing, queue, registry, signals
from visual_recs.backends import get_extractor
from visual_recs.contrib.catalog.models import Product
from visual_recs.models import FeatureVector

pytestmark = pytest.mark.django_db


class CountingStorage(FileSystemStorage):
    """A file system storage that counts the files opened through it (as reads from S3 would cost)."""

    opened = 0

    def open(self, name, mode="rb"):
        type(self).opened += 1
        return super().open(name, mode)


class OverwritingStorage(CountingStorage):
    """A storage that keeps an uploaded file's name, replacing the old file (S3's default)."""

    # Written out rather than Django 5.1's allow_overwrite=True, so it runs on Django 4.2 too.
    def get_available_name(self, name, max_length=None):
        if self.exists(name):
            self.delete(name)
        return name


def use_storage(monkeypatch, media_root, storage_class, *fields) -> None:
    storage = storage_class(location=str(media_root))
    for field in fields:
        monkeypatch.setattr(field, "storage", storage)
    monkeypatch.setattr(CountingStorage, "opened", 0)


@pytest.fixture
def extractions(settings, monkeypatch) -> list[int]:
    """The fast extractor, recording how many photos each network pass was given."""
    use_fake_extractor(settings)
    extractor = get_extractor()
    passes: list[int] = []
    real_extract = extractor.extract

    def extract(images):
        passes.append(len(images))
        return real_extract(images)

    monkeypatch.setattr(extractor, "extract", extract)
    return passes


@pytest.fixture
def counted_products(monkeypatch, media_root):
    use_storage(monkeypatch, media_root, CountingStorage, Product._meta.get_field("image"))


def vector_of(obj) -> FeatureVector:
    return FeatureVector.objects.get(content_type=registry.for_model(obj).content_type, object_id=str(obj.pk))


def save_on_the_request_path(obj, django_capture_on_commit_callbacks) -> tuple[int, list]:
    """Save ``obj`` and return the storage opens up to its commit, and its captured commit work."""
    CountingStorage.opened = 0
    with django_capture_on_commit_callbacks(execute=False) as after_commit:
        obj.save()
    return CountingStorage.opened, after_commit


def run(after_commit) -> int:
    """Run a save's commit work (its eager task); the storage opens it made."""
    CountingStorage.opened = 0
    for callback in after_commit:
        callback()
    return CountingStorage.opened


def test_a_price_edit_opens_no_photo_and_queues_nothing(
    extractions, counted_products, catalog_rows, make_product, django_capture_on_commit_callbacks
):
    product = make_product(ids_of(catalog_rows, gender="Men", count=1)[0])
    assert vector_of(product).status == "ready" and extractions == [1]

    product.price = 12
    opened, after_commit = save_on_the_request_path(product, django_capture_on_commit_callbacks)
    assert (opened, after_commit) == (0, [])
    assert vector_of(product).status == "ready" and extractions == [1]


def test_a_new_photo_is_marked_on_save_and_hashed_by_the_task(
    extractions, counted_products, catalog_rows, make_product, django_capture_on_commit_callbacks
):
    first, second = ids_of(catalog_rows, gender="Men", count=2)
    product = make_product(first)
    marks = vector_of(product).photo_marks

    product.image.save(f"{second}.jpg", ContentFile(photo_bytes(second)), save=False)
    opened, after_commit = save_on_the_request_path(product, django_capture_on_commit_callbacks)
    assert opened == 0
    row = vector_of(product)
    assert (row.status, row.image_name, row.photo_marks) == ("pending", product.image.name, marks + 1)
    assert len(after_commit) == 1  # one task

    assert run(after_commit) >= 1  # the worker read the new photo
    row = vector_of(product)
    assert row.status == "ready" and row.image_sha256 == hashlib.sha256(photo_bytes(second)).hexdigest()
    assert extractions == [1, 1]


def test_the_same_photo_under_a_new_name_costs_the_worker_a_hash_not_the_network(
    extractions, counted_products, catalog_rows, make_product, django_capture_on_commit_callbacks
):
    pid = ids_of(catalog_rows, gender="Men", count=1)[0]
    product = make_product(pid)
    before = vector_of(product)

    product.image.save(f"{pid}.jpg", ContentFile(photo_bytes(pid)), save=False)  # the storage renames it
    assert product.image.name != before.image_name
    opened, after_commit = save_on_the_request_path(product, django_capture_on_commit_callbacks)
    assert opened == 0 and vector_of(product).status == "pending"

    assert run(after_commit) == 1
    after = vector_of(product)
    assert (after.status, after.image_name, after.vector) == ("ready", product.image.name, before.vector)
    assert extractions == [1]  # no second network pass


def test_a_photo_uploaded_under_its_old_name_is_marked_and_reindexed(
    extractions, monkeypatch, media_root, catalog_rows, make_product, django_capture_on_commit_callbacks
):
    """A storage that overwrites keeps the name: the upload itself, not the name, tells the save."""
    use_storage(monkeypatch, media_root, OverwritingStorage, Product._meta.get_field("image"))
    first, second = ids_of(catalog_rows, gender="Men", count=2)
    product = make_product(first)
    name = product.image.name

    product.image = ContentFile(photo_bytes(second), name=f"{first}.jpg")  # a form's upload
    opened, after_commit = save_on_the_request_path(product, django_capture_on_commit_callbacks)
    assert product.image.name == name and opened == 0
    assert vector_of(product).status == "pending"

    run(after_commit)
    assert vector_of(product).image_sha256 == hashlib.sha256(photo_bytes(second)).hexdigest()
    assert extractions == [1, 1]


def test_a_task_reading_a_photo_overwritten_under_its_name_is_superseded(
    extractions, monkeypatch, media_root, catalog_rows, make_product, django_capture_on_commit_callbacks
):
    """The older task's photo was replaced in place (same name) while it ran: the save's mark tells it."""
    from visual_recs.indexing import pipeline

    use_storage(monkeypatch, media_root, OverwritingStorage, Product._meta.get_field("image"))
    first, second = ids_of(catalog_rows, gender="Men", count=2)
    product = make_product(first)
    real_extract = pipeline._extract

    def extract_while_the_photo_is_replaced(extractor, jobs):
        real_extract(extractor, jobs)
        newer = Product.objects.get(pk=product.pk)  # staff upload a new photo under the same name
        newer.image = ContentFile(photo_bytes(second), name=f"{first}.jpg")
        with django_capture_on_commit_callbacks(execute=False):
            newer.save()

    monkeypatch.setattr(pipeline, "_extract", extract_while_the_photo_is_replaced)
    assert indexing.index(product, force=True) == "superseded"
    assert vector_of(product).status == "pending"
    monkeypatch.setattr(pipeline, "_extract", real_extract)
    assert indexing.index(Product.objects.get(pk=product.pk)) == "indexed"
    assert vector_of(product).image_sha256 == hashlib.sha256(photo_bytes(second)).hexdigest()


@pytest.fixture
def listings(settings, monkeypatch, media_root, extractions):
    use_fake_extractor(settings, MODELS={**settings.VISUAL_RECS["MODELS"], "listings": LISTINGS})
    use_storage(monkeypatch, media_root, CountingStorage, ListingImage._meta.get_field("image"))
    return registry.get("listings")


def test_saving_a_listing_and_its_variants_opens_no_photo(
    listings, catalog_rows, django_capture_on_commit_callbacks
):
    photo = ids_of(catalog_rows, gender="Women", count=1)[0]
    with django_capture_on_commit_callbacks(execute=True):
        parent = Listing.objects.create(title="Dress", department="women")
        variant = Listing.objects.create(title="Dress, red", department="women", parent=parent)
        add_image(parent, photo)
    assert vector_of(parent).status == vector_of(variant).status == "ready"

    parent.title = "Summer dress"
    opened, after_commit = save_on_the_request_path(parent, django_capture_on_commit_callbacks)
    assert (opened, after_commit) == (0, [])

    parent.department = "men"  # moves the parent and its variant: no photo read either
    opened, after_commit = save_on_the_request_path(parent, django_capture_on_commit_callbacks)
    assert opened == 0
    run(after_commit)
    assert vector_of(parent).partition == "men"


def test_n_photo_rows_of_one_owner_in_one_transaction_queue_one_task(
    listings, catalog_rows, monkeypatch, django_capture_on_commit_callbacks
):
    photos = ids_of(catalog_rows, gender="Women", count=3)
    sent = []
    real_enqueue = signals.enqueue
    monkeypatch.setattr(signals, "enqueue", lambda task, *args: sent.append((task.name, args)) or real_enqueue(task, *args))
    with django_capture_on_commit_callbacks(execute=True):
        listing = Listing.objects.create(title="Shirt", department="women")
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            for order, photo in enumerate(photos):
                add_image(listing, photo, display_order=order)
    assert sent == [("visual_recs.tasks.index_object", ("testapp", "listing", str(listing.pk)))]
    assert vector_of(listing).status == "ready"

    sent.clear()
    CountingStorage.opened = 0
    with django_capture_on_commit_callbacks(execute=False) as after_commit:  # a rolled back transaction
        with pytest.raises(RuntimeError), transaction.atomic():
            add_image(listing, photos[0], display_order=9)
            raise RuntimeError
    assert after_commit == []
    with queue.paused():  # a paused import adds images without looking at the owner
        add_image(listing, photos[1], display_order=10)
    with django_capture_on_commit_callbacks(execute=True):
        add_image(listing, photos[2], display_order=11)  # not the first image: the photo is the same
    assert sent == [] and CountingStorage.opened == 0
