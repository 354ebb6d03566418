"""visual_recs_export: every shown product's list, as its page shows it, in JSON Lines or CSV.

The catalog products are indexed with the real ResNet50 (the export writes what the read path
returns, so the lists are the real ones), eagerly, in one batch.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re

import pytest
from django.core.management import CommandError, call_command
from django.db.models.signals import post_init

from tests.conftest import declare, ids_of
from visual_recs import exporting, indexing
from visual_recs.contrib.catalog import CatalogProducts
from visual_recs.contrib.catalog.models import Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def feeds(tmp_path):
    """A folder for export files alone (the test's media lives in tmp_path)."""
    folder = tmp_path / "feeds"
    folder.mkdir()
    return folder


@pytest.fixture
def catalog(resnet_weights, catalog_rows, make_catalog):
    """Five men's and four women's products indexed; one of the men hidden since; one without a photo."""
    men = make_catalog(ids_of(catalog_rows, gender="Men", count=5))
    women = make_catalog(ids_of(catalog_rows, gender="Women", count=4))
    hidden = men[-1]
    Product.objects.filter(pk=hidden.pk).update(is_active=False)  # behind the signals' back: lists still name it
    no_photo = Product.objects.create(title="No photo yet", gender="Men")
    return {"shown": [*men[:-1], *women, no_photo], "hidden": hidden, "no_photo": no_photo}


def export(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("visual_recs_export", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def jsonl(text: str) -> list[dict]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def summary_line(records: list[dict], failed: int = 0) -> str:
    items = sum(len(record["items"]) for record in records)
    return f"products: {len(records)} products, {items} similar items, {failed} lists failed."


def expected_record(product: Product, limit: int = 5) -> dict:
    """What the export should say of ``product``: its list from the read path, written out here."""
    found = indexing.recommendations(Product.objects.get(pk=product.pk), limit)
    items = [
        {
            "rank": item.rank,
            "id": item.object.pk,
            "distance": None if item.distance is None else round(float(item.distance), 6),
            "origin": item.origin,
            "title": item.object.title,
            "url": None,  # the bundled Product has no get_absolute_url in the test settings
        }
        for item in found.items
    ]
    return {"model": "products", "id": product.pk, "partition": found.partition, "status": found.status, "items": items}


def test_jsonl_is_each_shown_products_list_as_its_page_shows_it(catalog):
    out, err = export("--model", "products", "--no-progress")
    records = jsonl(out)
    shown = sorted(catalog["shown"], key=lambda product: product.pk)
    assert records == [expected_record(product) for product in shown]
    # The expectation is not vacuous: full lists of one gender, the hidden product nowhere, a product without items.
    by_id = {record["id"]: record for record in records}
    assert catalog["hidden"].pk not in by_id
    assert all(catalog["hidden"].pk != item["id"] for record in records for item in record["items"])
    man = by_id[catalog["shown"][0].pk]
    assert man["status"] == "ready" and [item["rank"] for item in man["items"]] == [1, 2, 3]  # 3 other shown men
    assert {by_id[item["id"]]["partition"] for item in man["items"]} == {"Men"}
    no_photo = by_id[catalog["no_photo"].pk]
    assert (no_photo["status"], no_photo["items"]) == ("no_image", [])
    assert err.strip() == summary_line(records)


def test_a_pinned_item_is_exported_where_the_rule_puts_it_without_a_distance(catalog):
    from django.contrib.contenttypes.models import ContentType

    from visual_recs.models import Rule

    source, women = catalog["shown"][0], [p for p in catalog["shown"] if p.gender == "Women"]
    men = [p for p in catalog["shown"] if p.gender == "Men" and p.pk != source.pk and p.image]
    content_type = ContentType.objects.get_for_model(Product)
    Rule.objects.create(content_type=content_type, kind="pin", source_id=str(source.pk), target_id=str(men[-1].pk), position=1)
    records = {record["id"]: record for record in jsonl(export("--model", "products", "--no-progress")[0])}
    first = records[source.pk]["items"][0]
    assert (first["id"], first["origin"], first["distance"]) == (men[-1].pk, "pinned", None)
    assert records[source.pk] == expected_record(source)
    assert all(item["origin"] == "visual" for item in records[women[0].pk]["items"])


def test_limit_and_partition_select_what_is_written(catalog):
    records = jsonl(export("--model", "products", "--limit", "2", "--partition", "Women", "--no-progress")[0])
    women = sorted(product.pk for product in catalog["shown"] if product.gender == "Women")
    assert [record["id"] for record in records] == women
    assert [len(record["items"]) for record in records] == [2] * len(women)
    assert records[0] == expected_record(Product.objects.get(pk=women[0]), limit=2)


def test_csv_has_a_row_per_item_and_one_for_a_product_without_items(catalog):
    csv_text, _ = export("--model", "products", "--format", "csv", "--no-progress")
    records = jsonl(export("--model", "products", "--no-progress")[0])
    assert csv_text.splitlines()[0] == "model,id,partition,status,rank,item_id,distance,origin,title,url"
    rows = list(csv.DictReader(io.StringIO(csv_text, newline="")))

    expected_rows = []
    for record in records:
        product = {"model": "products", "id": str(record["id"])} | {key: record[key] for key in ("partition", "status")}
        items = [
            {"rank": str(item["rank"]), "item_id": str(item["id"]), "distance": str(item["distance"]),
             "origin": item["origin"], "title": item["title"], "url": ""}
            for item in record["items"]
        ]
        empty = {"rank": "", "item_id": "", "distance": "", "origin": "", "title": "", "url": ""}
        expected_rows += [{**product, **item} for item in items or [empty]]
    assert rows == expected_rows
    no_photo_rows = [row for row in rows if row["id"] == str(catalog["no_photo"].pk)]
    assert no_photo_rows == [{"model": "products", "id": str(catalog["no_photo"].pk), "partition": "Men",
                              "status": "no_image", "rank": "", "item_id": "", "distance": "", "origin": "",
                              "title": "", "url": ""}]
    assert len(rows) > len(records)  # most products have several items


def test_every_model_by_default_and_absolute_urls_with_a_base_url(
    resnet_weights, catalog_rows, make_catalog, make_garments
):
    products = make_catalog(ids_of(catalog_rows, gender="Girls", count=2))
    garments = make_garments(ids_of(catalog_rows, gender="Boys", count=3), audience="boys")
    records = jsonl(export("--base-url", "https://shop.example", "--no-progress")[0])
    assert [(record["model"], record["id"]) for record in records] == [
        *(("products", product.pk) for product in products),
        *sorted(("garments", str(garment.pk)) for garment in garments),  # a UUID key, as its string
    ]
    garment_items = [item for record in records if record["model"] == "garments" for item in record["items"]]
    assert len(garment_items) == 6
    assert {item["url"] for item in garment_items} == {f"https://shop.example/garments/{g.pk}/" for g in garments}
    assert {item["title"] for item in garment_items} == {g.name for g in garments}


def test_an_output_file_appears_whole_with_the_summary_on_stdout(catalog, feeds):
    target = feeds / "feed.jsonl"
    out, err = export("--model", "products", "--output", str(target))
    records = jsonl(target.read_text(encoding="utf-8"))
    assert records == jsonl(export("--model", "products", "--no-progress")[0])
    assert out.splitlines() == [summary_line(records), f"Written to {target}."]
    n = len(catalog["shown"])
    assert f"{n}/{n}" in err  # the progress bar
    assert list(feeds.iterdir()) == [target]  # no temporary file left beside it


def test_an_export_that_fails_leaves_the_previous_file_and_no_other(catalog, feeds, monkeypatch):
    target = feeds / "feed.csv"
    target.write_text("yesterday's feed\n")
    read = indexing.recommendations
    calls = []

    def interrupted(obj, limit):
        calls.append(obj.pk)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C, or a deploy stopping the job, does mid-export
        return read(obj, limit)

    monkeypatch.setattr(indexing, "recommendations", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export("--format", "csv", "--output", str(target), "--no-progress")
    assert len(calls) == 3
    assert target.read_text() == "yesterday's feed\n"
    assert list(feeds.iterdir()) == [target]


def test_a_product_whose_list_fails_is_written_as_error_and_the_export_goes_on(catalog, settings, caplog):
    broken = catalog["shown"][1]

    def photo(self, obj):
        if obj.pk == broken.pk:
            raise OSError("storage timed out")  # the shop's own photo() failing for one product
        return CatalogProducts.photo(self, obj)

    declare(settings, "products", photo=photo)
    with caplog.at_level(logging.ERROR, logger="visual_recs.exporting"):
        out, err = export("--model", "products", "--no-progress")
    records = jsonl(out)
    assert len(records) == len(catalog["shown"])
    failed = [record for record in records if record["status"] == "error"]
    assert failed == [{"model": "products", "id": broken.pk, "partition": "Men", "status": "error", "items": []}]
    assert sum(bool(record["items"]) for record in records) >= 6  # the others still have their lists
    assert f"products {broken.pk} could not be built" in caplog.text and "storage timed out" in caplog.text
    assert err.strip() == summary_line(records, failed=1)


def test_each_product_is_written_and_flushed_before_the_next_is_read(catalog, monkeypatch):
    """Streaming: a product's line leaves before the next list is built, and the products are
    read a chunk at a time (an export that first loads every product, or collects every line,
    fails this)."""
    events: list[tuple[str, object]] = []
    read = indexing.recommendations
    in_read_path = []

    def recommendations(obj, limit):
        events.append(("built", obj.pk))
        in_read_path.append(True)
        try:
            return read(obj, limit)
        finally:
            in_read_path.pop()

    def loaded(sender, instance, **kwargs):
        if not in_read_path:  # a product the export loaded, not an item the read path did
            events.append(("loaded", None))

    class Recorder(io.StringIO):
        def write(self, text):
            events.append(("wrote", json.loads(text)["id"]))
            return super().write(text)

        def flush(self):
            events.append(("flushed", None))

    monkeypatch.setattr(indexing, "recommendations", recommendations)
    monkeypatch.setattr(exporting, "CHUNK_SIZE", 2)
    post_init.connect(loaded, sender=Product)
    try:
        call_command("visual_recs_export", "--model", "products", "--no-progress", stdout=Recorder())
    finally:
        post_init.disconnect(loaded, sender=Product)

    ids = sorted(product.pk for product in catalog["shown"])
    writes = [event for event in events if event[0] != "loaded"]
    while writes[-2:] == [("flushed", None), ("flushed", None)]:
        writes.pop()  # the command's own final flush (Django 4.2's OutputWrapper flushes on close)
    assert writes == [event for pk in ids for event in (("built", pk), ("wrote", pk), ("flushed", None))]
    first_write = events.index(("wrote", ids[0]))
    assert events[:first_write].count(("loaded", None)) <= 2  # one chunk, not the catalog
    assert events.count(("loaded", None)) == len(ids)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "shoes"], "No model is registered under the key 'shoes'"),
        (["--format", "xml"], "invalid choice: 'xml'"),
        (["--limit", "0"], "--limit must be from 1 to 100, not 0"),
        (["--limit", "101"], "--limit must be from 1 to 100, not 101"),
        (["--base-url", "shop.example"], "--base-url must be an http(s) address"),
    ],
)
def test_bad_options_are_clear_errors(args, message, feeds):
    target = feeds / "feed.jsonl"
    with pytest.raises(CommandError, match=re.escape(message)):
        export(*args, "--output", str(target))
    assert not list(feeds.iterdir())  # nothing written


def test_a_partition_for_a_model_without_partitions_is_refused(settings):
    declare(settings, "garments", partition_field=None)
    with pytest.raises(CommandError, match="garments has no partitions"):
        export("--partition", "boys")


@pytest.mark.parametrize("where", ["missing/feed.jsonl", "."])
def test_an_unwritable_output_is_a_clear_error(where, feeds):
    with pytest.raises(CommandError, match=re.escape(f"Cannot write to {feeds}")):
        export("--output", str(feeds / where), "--no-progress")
    assert not list(feeds.iterdir())
