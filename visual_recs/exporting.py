"""Every shown product's recommendation list, for feeds, email and other systems (``visual_recs_export``).

Each product's list is ``indexing.recommendations``: the list a shopper sees on its page, so
whatever the read path leaves out (hidden products, duplicate photos, and the merchandiser's
rules and stock once it applies them) is left out here too, and no list is computed twice.

Products are read in chunks of ``CHUNK_SIZE`` and each record is written, and flushed, as
soon as it is made: an export of any catalog size holds one chunk of products in memory, and
whatever reads the stream (a pipe, a feed uploader) gets each product as it is done.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urljoin

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from . import indexing
from .registry import IndexedModel

logger = logging.getLogger(__name__)

#: Products read from the database at a time (and prefetched together).
CHUNK_SIZE = 500
#: The status of a product whose list could not be built (the reason is logged).
ERROR = "error"
#: The keys of one exported item, in the order the CSV has them.
ITEM_KEYS = ("rank", "id", "distance", "origin", "title", "url")
#: The CSV header: the product, then one item (``item_id`` is the item's ``id``).
CSV_HEADER = ("model", "id", "partition", "status", "rank", "item_id", "distance", "origin", "title", "url")


@dataclass
class ExportSummary:
    """What one model's export wrote."""

    products: int = 0
    items: int = 0
    errors: int = 0

    def __str__(self) -> str:
        return f"{self.products} products, {self.items} similar items, {self.errors} lists failed"


def exported_products(indexed_model: IndexedModel, partition: str | None = None) -> models.QuerySet:
    """The products an export writes, by primary key: the shown ones (of ``partition`` only, if given)."""
    shown = indexed_model.shown()
    if partition is not None:
        shown = indexed_model.in_partition(shown, partition)
    # Prefetched after the partition's filter: a partition() hook reads the objects with a plain iterator().
    return shown.order_by("pk").prefetch_related(*indexed_model.prefetch)


def product_record(indexed_model: IndexedModel, obj: models.Model, *, limit: int, base_url: str | None = None) -> dict:
    """``{"model", "id", "partition", "status", "items"}`` of ``obj``: its list as its page shows it.

    A list that fails to build (the shop's hooks, a storage or index down for this product)
    is logged and recorded with the status "error" and no items: one bad product never stops
    a feed of thousands.
    """
    try:
        found = indexing.recommendations(obj, limit)
        items = [_item(indexed_model, similar, base_url) for similar in found.items]
        partition, status = found.partition, found.status
    except Exception:
        logger.exception(
            "visual_recs: the list of %s %s could not be built; exported as 'error'", indexed_model.key, obj.pk
        )
        partition, status, items = _partition_or_blank(indexed_model, obj), ERROR, []
    return {"model": indexed_model.key, "id": obj.pk, "partition": partition, "status": status, "items": items}


def _item(indexed_model: IndexedModel, similar: indexing.Similar, base_url: str | None) -> dict[str, Any]:
    url = indexed_model.url_of(similar.object)
    return {
        "rank": similar.rank,
        "id": similar.object.pk,
        # None for an item a rule pinned or the fallback brought: it is no neighbour by photo.
        "distance": None if similar.distance is None else round(float(similar.distance), 6),
        "origin": similar.origin,
        "title": indexed_model.title_of(similar.object),
        # A path is made absolute on the shop's address; a URL that is already absolute stays as it is.
        "url": urljoin(base_url, url) if url and base_url else url,
    }


def _partition_or_blank(indexed_model: IndexedModel, obj: models.Model) -> str:
    """The partition of a product whose list failed; "" if that fails too (it may be why)."""
    try:
        return indexed_model.partition_of(obj)
    except Exception:
        return ""


class RecordWriter:
    """Writes product records to a text stream in one format, flushing after each product."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, record: dict) -> None:
        self._write(record)
        self.stream.flush()

    def _write(self, record: dict) -> None:
        raise NotImplementedError


class JsonlWriter(RecordWriter):
    """One JSON object per line and product; ids keep their JSON type (a number, or a UUID's string)."""

    def _write(self, record: dict) -> None:
        self.stream.write(json.dumps(record, cls=DjangoJSONEncoder, ensure_ascii=False) + "\n")


class CsvWriter(RecordWriter):
    """``CSV_HEADER``, then one row per product and item; a product without items gets one row
    with the item's columns empty, so the feed lists every product."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.rows = csv.writer(stream)
        self.rows.writerow(CSV_HEADER)

    def _write(self, record: dict) -> None:
        product = [record["model"], record["id"], record["partition"], record["status"]]
        for item in record["items"] or [dict.fromkeys(ITEM_KEYS, "")]:
            self.rows.writerow(product + [item[key] for key in ITEM_KEYS])


WRITERS: dict[str, type[RecordWriter]] = {"jsonl": JsonlWriter, "csv": CsvWriter}
FORMATS = tuple(WRITERS)


def export(
    indexed_model: IndexedModel,
    products: models.QuerySet,
    writer: RecordWriter,
    *,
    limit: int,
    base_url: str | None = None,
    progress: Callable[[int], Any] | None = None,
) -> ExportSummary:
    """Write the record of each of ``products`` (see ``exported_products``), one chunk in memory at a time."""
    summary = ExportSummary()
    for obj in products.iterator(chunk_size=CHUNK_SIZE):
        record = product_record(indexed_model, obj, limit=limit, base_url=base_url)
        writer.write(record)
        summary.products += 1
        summary.items += len(record["items"])
        summary.errors += record["status"] == ERROR
        if progress is not None:
            progress(1)
    return summary
