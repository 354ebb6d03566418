"""``visual_recs_import_catalog`` on a shop's own CSV, its columns mapped onto its own model.

The CSV has none of the sample dataset's column names; ``testapp.Article`` is found by its SKU
(a unique field, not the primary key) and has a price. The import keeps the guarantees it has
for the bundled Product: paths confined to the images directory, images recognised from their
bytes, reruns that write nothing, and one batch of indexing after the saves.
"""

from __future__ import annotations

import csv
import io
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import CATALOG_DIR, ids_of
from tests.testapp.models import Article
from visual_recs.models import FeatureVector

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_extractor")]

COLUMNS = ["SKU", "productDisplayName", "Audience", "Price", "photo_path"]
MAPPING = [
    "--model", "testapp.Article", "--id-column", "SKU", "--id-field", "sku", "--image-column", "photo_path",
    "--column", "name=productDisplayName", "--column", "audience=Audience", "--column", "price=Price",
]  # fmt: skip


@pytest.fixture(autouse=True)
def articles_indexed(settings):
    settings.VISUAL_RECS = {
        **settings.VISUAL_RECS,
        "MODELS": {**settings.VISUAL_RECS["MODELS"], "articles": "tests.testapp.visual.ArticlePhotos"},
    }


@pytest.fixture
def photos(tmp_path, catalog_rows) -> Path:
    """The shop's photo directory: real photos in a subfolder, as a shop's export lays them out."""
    directory = tmp_path / "export"
    (directory / "shots").mkdir(parents=True)
    for pid in ids_of(catalog_rows, gender="Men", count=2) + ids_of(catalog_rows, gender="Women", count=1):
        shutil.copyfile(CATALOG_DIR / "images" / f"{pid}.jpg", directory / "shots" / f"{pid}.jpg")
    return directory


@pytest.fixture
def rows(photos) -> list[dict[str, str]]:
    shots = sorted(p.name for p in (photos / "shots").iterdir())
    return [
        {"SKU": "AB-1", "productDisplayName": "Blue shirt", "Audience": "men", "Price": "19.90", "photo_path": f"shots/{shots[0]}"},
        {"SKU": "AB-2", "productDisplayName": "Grey shirt", "Audience": "men", "Price": "", "photo_path": f"shots/{shots[1]}"},
        {"SKU": "CD-7", "productDisplayName": "Red dress", "Audience": "women", "Price": "45", "photo_path": f"shots/{shots[2]}"},
    ]


def write_csv(path: Path, rows: list[dict[str, str]], columns: list[str] = COLUMNS) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_import(csv_path: Path, images: Path, *args: str) -> str:
    out = io.StringIO()
    call_command(
        "visual_recs_import_catalog", "--csv", str(csv_path), "--images", str(images), *MAPPING, *args,
        stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    return out.getvalue()


def test_the_columns_fill_the_shops_own_model_and_the_photos_are_indexed(tmp_path, photos, rows, media_root):
    output = run_import(write_csv(tmp_path / "export.csv", rows), photos, "--index")

    assert "3 rows: 3 created, 0 updated, 0 unchanged, 0 skipped." in output and "articles: 3 indexed" in output
    shirt = Article.objects.get(sku="AB-1")
    assert (shirt.name, shirt.audience, shirt.price) == ("Blue shirt", "men", Decimal("19.90"))
    assert Article.objects.get(sku="AB-2").price is None
    # Named after the SKU under the field's upload_to, whatever the export called the file.
    assert shirt.picture.name == "articles/AB-1.jpg"
    assert shirt.picture.read() == (photos / rows[0]["photo_path"]).read_bytes()
    vectors = {fv.object_id: fv for fv in FeatureVector.objects.all()}
    assert {vectors[str(a.pk)].partition for a in Article.objects.all()} == {"men", "women"}
    assert {fv.status for fv in vectors.values()} == {FeatureVector.Status.READY}


def test_a_rerun_of_the_same_file_changes_nothing(tmp_path, photos, rows, media_root):
    csv_path = write_csv(tmp_path / "export.csv", rows)
    run_import(csv_path, photos, "--index")
    files = {p: p.stat().st_mtime_ns for p in media_root.rglob("*") if p.is_file()}
    saved = dict(Article.objects.values_list("sku", "pk"))
    vectors = dict(FeatureVector.objects.values_list("object_id", "updated_at"))

    output = run_import(csv_path, photos, "--index")

    assert "3 rows: 0 created, 0 updated, 3 unchanged, 0 skipped." in output
    assert "Nothing changed" in output and "Index up to date" in output
    assert {p: p.stat().st_mtime_ns for p in media_root.rglob("*") if p.is_file()} == files
    assert dict(Article.objects.values_list("sku", "pk")) == saved
    assert dict(FeatureVector.objects.values_list("object_id", "updated_at")) == vectors


def test_a_changed_audience_moves_the_vector(tmp_path, photos, rows):
    csv_path = write_csv(tmp_path / "export.csv", rows)
    run_import(csv_path, photos, "--index")
    rows[1]["Audience"] = "women"
    write_csv(csv_path, rows)

    output = run_import(csv_path, photos, "--index")

    assert "0 created, 1 updated, 2 unchanged" in output
    moved = Article.objects.get(sku="AB-2")
    assert FeatureVector.objects.get(object_id=str(moved.pk)).partition == "women"


def test_bad_rows_are_skipped_with_the_reason_and_the_rest_imported(tmp_path, photos, rows, media_root):
    (photos / "notes.jpg").write_text("not a photo at all")
    (tmp_path / "secret.jpg").write_bytes((photos / rows[0]["photo_path"]).read_bytes())
    bad = [
        {**rows[0], "SKU": "X-1", "photo_path": "../secret.jpg"},
        {**rows[0], "SKU": "X-2", "photo_path": "notes.jpg"},
        {**rows[0], "SKU": "X-3", "photo_path": str(tmp_path / "secret.jpg")},
        {**rows[0], "SKU": "X-4", "Price": "cheap"},
        {**rows[0], "SKU": "X-5", "Audience": "robots"},
        {**rows[0], "SKU": ""},
        {**rows[0], "SKU": "X" * 30},
        rows[0],  # the same SKU twice
    ]
    csv_path = write_csv(tmp_path / "export.csv", [rows[0], *bad])

    output = run_import(csv_path, photos)

    assert "9 rows: 1 created, 0 updated, 0 unchanged, 8 skipped." in output
    for expected in (
        "line 3 (SKU X-1): photo path '../secret.jpg' leads out of the images directory",
        "line 4 (SKU X-2): photo 'notes.jpg' is not an image",
        f"line 5 (SKU X-3): photo path '{tmp_path / 'secret.jpg'}' is absolute",
        "line 6 (SKU X-4): Price 'cheap': “cheap” value must be a decimal number.",
        "line 7 (SKU X-5): audience: Value 'robots' is not a valid choice.",
        "line 8 (no SKU): the SKU column is empty",
        f"line 9 (SKU {'X' * 30}): sku: Ensure this value has at most 20 characters (it has 30).",
        "line 10 (SKU AB-1): SKU AB-1 already appeared on line 2",
    ):
        assert f"  skipped {expected}" in output
    assert list(Article.objects.values_list("sku", flat=True)) == ["AB-1"]
    assert [p.name for p in media_root.rglob("*") if p.is_file()] == ["AB-1.jpg"]


def test_a_missing_column_or_a_wrong_name_stops_the_import_naming_it(tmp_path, photos, rows):
    without_photo = write_csv(tmp_path / "export.csv", rows, columns=[c for c in COLUMNS if c != "photo_path"])
    with pytest.raises(CommandError, match=r"lacks the column\(s\) photo_path\."):
        run_import(without_photo, photos)
    csv_path = write_csv(tmp_path / "ok.csv", rows)
    with pytest.raises(CommandError, match=r"testapp\.Article has no field 'title'"):
        run_import(csv_path, photos, "--column", "title=productDisplayName")
    with pytest.raises(CommandError, match=r"testapp\.Article\.name is not unique"):
        run_import(csv_path, photos, "--id-field", "name")
    with pytest.raises(CommandError, match=r"must read FIELD=COLUMN"):
        run_import(csv_path, photos, "--column", "name")
    with pytest.raises(CommandError, match=r"--model testapp\.Garment needs --id-column and --image-column"):
        call_command("visual_recs_import_catalog", "--csv", str(csv_path), "--images", str(photos), "--model", "testapp.Garment")
    assert not Article.objects.exists()
