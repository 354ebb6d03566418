"""``visual_recs_import_catalog`` on small CSVs in the dataset's format, with real photos.

The fast colour-grid extractor stands in for ResNet50 here: these tests are about the
import (fields, photos, idempotency, refusals); the browser test imports with the real network.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from tests.catalog_files import released_if_read_blocked, write_catalog_csv
from tests.conftest import CATALOG_DIR, ids_of
from visual_recs import indexing, registry
from visual_recs.contrib.catalog import importer
from visual_recs.contrib.catalog.mapping import bundled_mapping
from visual_recs.contrib.catalog.models import Product
from visual_recs.models import FeatureVector, SimilarItem

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_extractor")]


@pytest.fixture
def sample_ids(catalog_rows) -> list[str]:
    return ids_of(catalog_rows, gender="Men", count=3) + ids_of(catalog_rows, gender="Girls", count=3)


@pytest.fixture
def images_dir(tmp_path, sample_ids) -> Path:
    """A directory with the sample's real photos (plus one spare), which a test may change."""
    directory = tmp_path / "images"
    directory.mkdir()
    for pid in [*sample_ids, "13683"]:
        shutil.copyfile(CATALOG_DIR / "images" / f"{pid}.jpg", directory / f"{pid}.jpg")
    return directory


def run_import(csv_path: Path, images: Path, *args: str) -> str:
    out = io.StringIO()
    call_command(
        "visual_recs_import_catalog", "--csv", str(csv_path), "--images", str(images), *args,
        stdout=out, stderr=io.StringIO(),
    )
    return out.getvalue()


def media_files(media_root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``media_root`` with its size and modification time."""
    return {
        str(p.relative_to(media_root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in media_root.rglob("*")
        if p.is_file()
    }


def test_import_creates_products_with_their_photos_and_indexes_them(
    tmp_path, images_dir, sample_ids, catalog_rows, media_root
):
    csv_path = write_catalog_csv(tmp_path / "fashion.csv", [catalog_rows[pid] for pid in sample_ids])

    output = run_import(csv_path, images_dir)

    assert "6 rows: 6 created, 0 updated, 0 unchanged, 0 skipped." in output
    assert "Queued 6 products for indexing on the 'visual_recs' queue." in output
    for pid in sample_ids:
        product = Product.objects.get(pk=int(pid))
        row = catalog_rows[pid]
        assert (product.title, product.gender, product.product_type, product.colour) == (
            row["ProductTitle"], row["Gender"], row["ProductType"], row["Colour"]
        )
        assert product.image.name == f"products/{pid}.jpg"
        assert (media_root / "products" / f"{pid}.jpg").read_bytes() == (images_dir / f"{pid}.jpg").read_bytes()
    # Eager tasks: the queued batches ran, each product has a vector and a list within its gender.
    assert set(FeatureVector.objects.values_list("status", flat=True)) == {FeatureVector.Status.READY}
    gender = {pid: catalog_rows[pid]["Gender"] for pid in sample_ids}
    pairs = list(SimilarItem.objects.values_list("source_id", "target_id"))
    assert len(pairs) == 6 * 2 and all(gender[s] == gender[t] for s, t in pairs)


def test_second_run_changes_nothing_and_says_so(tmp_path, images_dir, sample_ids, catalog_rows, media_root):
    csv_path = write_catalog_csv(tmp_path / "fashion.csv", [catalog_rows[pid] for pid in sample_ids])
    run_import(csv_path, images_dir, "--index")
    files_before = media_files(media_root)
    updated_before = dict(Product.objects.values_list("pk", "updated_at"))
    vectors_before = dict(FeatureVector.objects.values_list("object_id", "updated_at"))

    output = run_import(csv_path, images_dir, "--index")

    assert "6 rows: 0 created, 0 updated, 6 unchanged, 0 skipped." in output
    assert "Nothing changed" in output and "Index up to date" in output
    assert media_files(media_root) == files_before  # no new file, none rewritten
    assert dict(Product.objects.values_list("pk", "updated_at")) == updated_before
    assert dict(FeatureVector.objects.values_list("object_id", "updated_at")) == vectors_before


def test_changed_fields_and_photo_update_the_product_in_place(
    tmp_path, images_dir, sample_ids, catalog_rows, media_root, django_capture_on_commit_callbacks
):
    rows = [dict(catalog_rows[pid]) for pid in sample_ids]
    csv_path = write_catalog_csv(tmp_path / "fashion.csv", rows)
    run_import(csv_path, images_dir)
    renamed, rephotographed = rows[0], rows[1]
    old_vector = FeatureVector.objects.get(object_id=rephotographed["ProductId"])
    renamed["ProductTitle"] = "A new title"
    rephotographed["Image"] = "13683.jpg"  # another shoe's photo
    write_catalog_csv(csv_path, rows)

    with django_capture_on_commit_callbacks(execute=True):  # as after a real commit
        output = run_import(csv_path, images_dir)

    assert "6 rows: 0 created, 2 updated, 4 unchanged, 0 skipped." in output
    assert Product.objects.get(pk=int(renamed["ProductId"])).title == "A new title"
    product = Product.objects.get(pk=int(rephotographed["ProductId"]))
    # A name of the new content's own (so the old file stays until the rows commit), and the
    # old file gone after the commit: no "<name>_<random>.jpg" beside it.
    new_photo = (images_dir / "13683.jpg").read_bytes()
    pid = rephotographed["ProductId"]
    assert product.image.name == f"products/{pid}-{hashlib.sha256(new_photo).hexdigest()[:16]}.jpg"
    assert product.image.read() == new_photo
    assert len(media_files(media_root)) == 6 and not (media_root / f"products/{pid}.jpg").exists()
    new_vector = FeatureVector.objects.get(object_id=rephotographed["ProductId"])
    assert new_vector.status == FeatureVector.Status.READY
    assert new_vector.image_sha256 != old_vector.image_sha256 and new_vector.vector != old_vector.vector


def test_unusable_rows_are_reported_and_skipped_without_stopping(
    tmp_path, images_dir, sample_ids, catalog_rows, media_root
):
    good = [catalog_rows[pid] for pid in sample_ids[:2]]
    (images_dir / "not-a-photo.jpg").write_text("just text")
    base = dict(catalog_rows[sample_ids[2]])
    bad = [
        {**base, "ProductId": "900001", "Image": "900001.jpg"},  # no such file
        {**base, "ProductId": "900002", "Image": "not-a-photo.jpg"},
        {**base, "ProductId": "900003", "Image": ""},
        {**base, "ProductId": "900004", "Gender": "Robots"},
        {**base, "ProductId": "abc"},
        {**base, "ProductId": "900005", "ProductTitle": ""},
        {**good[0]},  # the same ProductId twice
    ]
    csv_path = write_catalog_csv(tmp_path / "fashion.csv", good + bad)

    output = run_import(csv_path, images_dir)

    assert "9 rows: 2 created, 0 updated, 0 unchanged, 7 skipped." in output
    for expected in (
        "line 4 (ProductId 900001): photo '900001.jpg' is not in the images directory",
        "line 5 (ProductId 900002): photo 'not-a-photo.jpg' is not an image",
        "line 6 (ProductId 900003): the Image column is empty",
        "line 7 (ProductId 900004): gender: Value 'Robots' is not a valid choice.",
        "line 8 (ProductId abc): ProductId 'abc' is not a positive whole number",
        "line 9 (ProductId 900005): title: This field cannot be blank.",
        f"line 10 (ProductId {good[0]['ProductId']}): ProductId {good[0]['ProductId']} already appeared on line 2",
    ):
        assert f"  skipped {expected}" in output
    assert sorted(Product.objects.values_list("pk", flat=True)) == sorted(int(r["ProductId"]) for r in good)
    assert len(media_files(media_root)) == 2


def test_photo_paths_cannot_leave_the_images_directory(tmp_path, images_dir, sample_ids, catalog_rows, media_root):
    outside = tmp_path / "outside.jpg"
    shutil.copyfile(images_dir / f"{sample_ids[0]}.jpg", outside)
    (images_dir / "sub").mkdir()
    os.symlink(outside, images_dir / "sub" / "link.jpg")
    base = dict(catalog_rows[sample_ids[0]])
    rows = [
        {**base, "ProductId": "1", "Image": "../outside.jpg"},
        {**base, "ProductId": "2", "Image": "sub/../../outside.jpg"},
        {**base, "ProductId": "3", "Image": str(outside)},
        {**base, "ProductId": "4", "Image": "sub/link.jpg"},
        {**base, "ProductId": "5", "Image": "..\\outside.jpg"},
    ]
    csv_path = write_catalog_csv(tmp_path / "fashion.csv", rows)

    output = run_import(csv_path, images_dir)

    assert "5 rows: 0 created, 0 updated, 0 unchanged, 5 skipped." in output
    assert "photo path '../outside.jpg' leads out of the images directory" in output
    assert "photo path 'sub/../../outside.jpg' leads out of the images directory" in output
    assert f"photo path '{outside}' is absolute" in output
    assert "photo path 'sub/link.jpg' resolves outside the images directory" in output
    assert "photo path '..\\\\outside.jpg' leads out" in output
    assert not Product.objects.exists() and media_files(media_root) == {}


def test_rows_with_a_nul_or_a_photo_that_is_not_a_regular_file_are_skipped_with_a_reason(
    tmp_path, images_dir, sample_ids, catalog_rows, media_root
):
    os.mkfifo(images_dir / "fifo.jpg")  # opening it to read would wait for a writer forever
    (images_dir / "folder.jpg").mkdir()
    os.mknod(images_dir / "device.jpg", 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    eps = io.BytesIO()
    Image.new("RGB", (20, 20), "red").save(eps, "EPS")  # Pillow would render it with Ghostscript
    (images_dir / "drawing.eps").write_bytes(eps.getvalue())
    good = [dict(catalog_rows[pid]) for pid in sample_ids[:2]]
    good[1]["ImageURL"] = "http://example.com/\x00.jpg"  # a column the import does not read
    base = dict(catalog_rows[sample_ids[2]])
    bad = [
        {**base, "ProductId": "900001", "Image": "fifo.jpg"},
        {**base, "ProductId": "900002", "Image": "folder.jpg"},
        {**base, "ProductId": "900003", "Image": "device.jpg"},
        {**base, "ProductId": "900004", "ProductTitle": "Shoes\x00"},
        {**base, "ProductId": "900\x005"},
        {**base, "ProductId": "900006", "Image": f"{sample_ids[2]}.jpg\x00.txt"},
        {**base, "ProductId": "900007", "Image": "drawing.eps"},
    ]
    csv_path = write_catalog_csv(tmp_path / "fashion.csv", good + bad)

    with released_if_read_blocked(images_dir / "fifo.jpg") as released:
        output = run_import(csv_path, images_dir)

    assert not released, "the import waited on the FIFO"
    assert "9 rows: 2 created, 0 updated, 0 unchanged, 7 skipped." in output
    for expected in (
        "line 4 (ProductId 900001): photo 'fifo.jpg': the photo file",
        "line 5 (ProductId 900002): photo 'folder.jpg': the photo file",
        "line 6 (ProductId 900003): photo 'device.jpg': the photo file",
        "line 7 (ProductId 900004): the ProductTitle column contains a NUL character",
        "line 8 (ProductId 900\\x005): the ProductId column contains a NUL character",
        "line 9 (ProductId 900006): the Image column contains a NUL character",
        "line 10 (ProductId 900007): photo 'drawing.eps' is not an image",
    ):
        assert f"  skipped {expected}" in output
    assert "fifo.jpg' is a FIFO (named pipe), not a regular file" in output
    assert "folder.jpg' is a directory, not a regular file" in output
    assert "device.jpg' is a character device, not a regular file" in output
    assert "\x00" not in output
    assert sorted(Product.objects.values_list("pk", flat=True)) == sorted(int(r["ProductId"]) for r in good)
    assert len(media_files(media_root)) == 2


def test_limit_imports_the_first_rows_only(tmp_path, images_dir, sample_ids, catalog_rows):
    csv_path = write_catalog_csv(tmp_path / "fashion.csv", [catalog_rows[pid] for pid in sample_ids])

    output = run_import(csv_path, images_dir, "--limit", "2", "--index")

    assert "2 rows: 2 created" in output and "products: 2 indexed" in output
    assert sorted(Product.objects.values_list("pk", flat=True)) == sorted(map(int, sample_ids[:2]))


def test_unindexed_products_are_indexed_by_a_rerun(tmp_path, images_dir, sample_ids, catalog_rows):
    """A first run that stopped after the import (or whose queue was down) is finished by the next."""
    csv_path = write_catalog_csv(tmp_path / "fashion.csv", [catalog_rows[pid] for pid in sample_ids])
    mapping = bundled_mapping()
    importer.import_rows(importer.read_catalog(csv_path, mapping), images_dir, mapping)  # imported, never indexed
    assert not FeatureVector.objects.exists()

    output = run_import(csv_path, images_dir, "--index")

    assert "6 unchanged" in output and "products: 6 indexed" in output


def test_a_csv_that_cannot_be_used_is_a_command_error(tmp_path, images_dir):
    with pytest.raises(CommandError, match="no CSV file"):
        run_import(tmp_path / "missing.csv", images_dir)
    (tmp_path / "other.csv").write_text("id,name\n1,shoe\n")
    with pytest.raises(CommandError, match="lacks the column"):
        run_import(tmp_path / "other.csv", images_dir)
    with pytest.raises(CommandError, match="images directory"):
        run_import(write_catalog_csv(tmp_path / "fashion.csv", []), tmp_path / "no-such-dir")


def test_photos_left_in_media_by_a_reset_database_are_reused(
    tmp_path, images_dir, sample_ids, catalog_rows, media_root
):
    csv_path = write_catalog_csv(tmp_path / "fashion.csv", [catalog_rows[pid] for pid in sample_ids])
    run_import(csv_path, images_dir)
    files_before = media_files(media_root)
    Product.objects.all().delete()

    output = run_import(csv_path, images_dir)

    assert "6 created" in output
    assert media_files(media_root) == files_before  # same names, not rewritten


def test_a_catalog_model_that_is_not_indexed_is_imported_and_says_so(
    tmp_path, images_dir, sample_ids, catalog_rows, settings
):
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MODELS": {"garments": settings.VISUAL_RECS["MODELS"]["garments"]}}
    csv_path = write_catalog_csv(tmp_path / "fashion.csv", [catalog_rows[pid] for pid in sample_ids])

    output = run_import(csv_path, images_dir)

    assert "6 created" in output and "Not indexed: visual_recs_catalog.Product is not registered" in output
    assert not FeatureVector.objects.exists()


def test_an_import_stopped_midway_leaves_nothing_a_rerun_misses(
    tmp_path, images_dir, sample_ids, catalog_rows, media_root, monkeypatch
):
    """The import dies after a new photo is stored, before its block commits; a rerun finishes it."""
    rows = [dict(catalog_rows[pid]) for pid in sample_ids]
    csv_path = write_catalog_csv(tmp_path / "fashion.csv", rows)
    run_import(csv_path, images_dir)
    rephotographed = rows[0]
    pid = rephotographed["ProductId"]
    old_photo = Product.objects.get(pk=int(pid)).image.read()
    old_vector = FeatureVector.objects.get(object_id=pid)
    rephotographed["Image"] = "13683.jpg"
    write_catalog_csv(csv_path, rows)

    real_validate = importer._Importer.validate

    def killed_after_the_first_photo(self, product):
        if str(product.pk) == rows[1]["ProductId"]:
            raise KeyboardInterrupt  # the process stopped: nothing after this line runs
        real_validate(self, product)

    monkeypatch.setattr(importer._Importer, "validate", killed_after_the_first_photo)
    with pytest.raises(KeyboardInterrupt):
        run_import(csv_path, images_dir)
    # The block rolled back: the row still names the old photo, whose file and vector are intact.
    product = Product.objects.get(pk=int(pid))
    assert product.image.read() == old_photo
    assert FeatureVector.objects.get(object_id=pid).image_sha256 == old_vector.image_sha256

    monkeypatch.setattr(importer._Importer, "validate", real_validate)
    assert "1 updated" in run_import(csv_path, images_dir)
    vector = FeatureVector.objects.get(object_id=pid)
    assert vector.status == FeatureVector.Status.READY
    assert vector.image_sha256 == hashlib.sha256((images_dir / "13683.jpg").read_bytes()).hexdigest()


def test_a_committed_block_has_its_changed_vectors_marked_pending(
    tmp_path, images_dir, sample_ids, catalog_rows, monkeypatch
):
    """The import stops in a later block: the changes already committed are marked for the sweep."""
    rows = [dict(catalog_rows[pid]) for pid in sample_ids]
    csv_path = write_catalog_csv(tmp_path / "fashion.csv", rows)
    run_import(csv_path, images_dir)
    rows[0]["Image"] = "13683.jpg"
    rows[3]["ProductTitle"] = "Changed too"
    write_catalog_csv(csv_path, rows)
    monkeypatch.setattr(importer, "_ROWS_PER_TRANSACTION", 2)
    real_validate = importer._Importer.validate

    def killed_in_the_second_block(self, product):
        if str(product.pk) == rows[3]["ProductId"]:
            raise KeyboardInterrupt
        real_validate(self, product)

    monkeypatch.setattr(importer._Importer, "validate", killed_in_the_second_block)
    with pytest.raises(KeyboardInterrupt):
        run_import(csv_path, images_dir)
    assert FeatureVector.objects.get(object_id=rows[0]["ProductId"]).status == FeatureVector.Status.PENDING
    products = registry.get("products")
    assert int(rows[0]["ProductId"]) in set(indexing.objects_needing_work(products).values_list("pk", flat=True))
