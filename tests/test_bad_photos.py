"""Every kind of photo a shop may upload: odd ones are indexed, bad ones fail their vector with a
readable reason, and never the save."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image

from tests.catalog_files import released_if_read_blocked
from tests.conftest import photo_bytes
from visual_recs import indexing, registry, tasks
from visual_recs.contrib.catalog.models import Product
from visual_recs.models import FeatureVector

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def shoe() -> Image.Image:
    return Image.open(io.BytesIO(photo_bytes("13683"))).convert("RGB")


def odd_photos() -> dict[str, bytes]:
    rgba = Image.new("RGBA", (200, 260), (0, 0, 0, 0))
    rgba.paste(shoe().resize((120, 160)), (40, 50))
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [shoe(), Image.new("RGB", shoe().size, "blue")]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:], duration=100)
    sixteen = Image.fromarray((np.asarray(shoe().convert("L"), dtype=np.uint16) * 257)).convert("I;16")
    return {
        "exif-rotated.jpg": encode(shoe(), "JPEG", exif=exif),
        "greyscale.jpg": encode(shoe().convert("L"), "JPEG"),
        "palette.png": encode(shoe().convert("P"), "PNG"),
        "transparent.png": encode(rgba, "PNG"),
        "grey-alpha.png": encode(rgba.convert("LA"), "PNG"),
        "cmyk.jpg": encode(shoe().convert("CMYK"), "JPEG"),
        "16-bit.png": encode(sixteen, "PNG"),
        "animated.gif": animated.getvalue(),
    }


def bad_photos() -> dict[str, tuple[bytes, str]]:
    jpeg = photo_bytes("13683")
    bomb = encode(Image.new("L", (9000, 9000)), "PNG")  # 81 Mpx, a few KB compressed
    return {
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated or corrupt"),
        "not-a-photo.jpg": (b"%PDF-1.4 this is a document, not a photo", "not an image"),
        "empty.jpg": (b"", "empty"),
        "bomb.png": (bomb, "pixels"),
        "huge.jpg": (jpeg + b"\0" * (3 * 1024 * 1024), "larger than"),
        # Pillow would render it with Ghostscript: the loader never opens EPS.
        "drawing.eps": (encode(shoe(), "EPS"), "not an image"),
    }


def save_with_photo(name: str, data: bytes, capture) -> Product:
    product = Product(title=name, gender="Men")
    product.image.save(name, ContentFile(data), save=False)
    with capture(execute=True):
        product.save()  # must not raise, whatever the photo
    return product


def test_odd_but_valid_photos_are_indexed(resnet_weights, django_capture_on_commit_callbacks):
    for name, data in odd_photos().items():
        product = save_with_photo(name, data, django_capture_on_commit_callbacks)
        vector = FeatureVector.objects.get(object_id=str(product.pk))
        assert vector.status == "ready", f"{name}: {vector.error}"
        assert vector.dims == 2048


def test_bad_photos_fail_their_vector_with_a_reason(resnet_weights, settings, django_capture_on_commit_callbacks):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MAX_IMAGE_BYTES": 2 * 1024 * 1024, "MAX_IMAGE_PIXELS": 40_000_000}
    for name, (data, reason) in bad_photos().items():
        product = save_with_photo(name, data, django_capture_on_commit_callbacks)
        vector = FeatureVector.objects.get(object_id=str(product.pk))
        assert vector.status == "failed", name
        assert reason in vector.error, f"{name}: {vector.error!r}"
        assert vector.vector is None and vector.attempts == 1


def test_a_photo_missing_from_storage_fails_with_its_name(resnet_weights, django_capture_on_commit_callbacks):
    product = save_with_photo("gone.jpg", photo_bytes("13683"), django_capture_on_commit_callbacks)
    product.image.storage.delete(product.image.name)
    assert indexing.index(product, force=True) == "failed"
    vector = FeatureVector.objects.get(object_id=str(product.pk))
    assert vector.status == "failed" and "gone" in vector.error


def test_a_photo_that_is_a_fifo_in_storage_fails_with_a_reason_and_never_holds_the_worker(
    resnet_weights, django_capture_on_commit_callbacks
):
    """Opening a FIFO for reading waits for a writer: the worker must refuse it by its type instead."""
    product = save_with_photo("pipe.jpg", photo_bytes("13683"), django_capture_on_commit_callbacks)
    path = product.image.path
    os.remove(path)
    os.mkfifo(path)
    with released_if_read_blocked(path) as released:  # the old code waited here until the watchdog wrote
        outcome = indexing.index(product, force=True)
    assert not released, "the worker waited on the FIFO"
    assert outcome == "failed"
    vector = FeatureVector.objects.get(object_id=str(product.pk))
    assert vector.error == f"the photo file '{product.image.name}' is a FIFO (named pipe), not a regular file"


def test_a_failed_photo_is_tried_up_to_the_attempt_limit_then_only_when_it_changes(
    settings, resnet_weights, django_capture_on_commit_callbacks
):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MAX_ATTEMPTS": 2}
    product = save_with_photo("truncated.jpg", photo_bytes("13683")[:5000], django_capture_on_commit_callbacks)
    assert FeatureVector.objects.get(object_id=str(product.pk)).status == "failed"

    # Saving the product again with the same photo does not queue it again.
    product.title = "Still the broken photo"
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        product.save()
    assert callbacks == []
    # The sweep tries it again (a file still being copied reads as truncated), up to the limit.
    products = registry.get("products")
    assert product in indexing.objects_needing_work(products)
    tasks.sweep()
    assert FeatureVector.objects.get(object_id=str(product.pk)).attempts == 2
    assert product not in indexing.objects_needing_work(products)

    # A new photo is indexed.
    with django_capture_on_commit_callbacks(execute=True):
        product.image.save("fixed.jpg", ContentFile(photo_bytes("13683")))
    vector = FeatureVector.objects.get(object_id=str(product.pk))
    assert vector.status == "ready" and vector.error == ""
