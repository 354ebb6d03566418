"""``manage.py visual_recs_import_catalog``: a thin shell over :mod:`visual_recs.catalog`."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from visual_recs import catalog
from visual_recs.conf import app_settings
from visual_recs.exceptions import NotRegistered
from visual_recs.management.progress import MAX_LISTED, index_here, progress_bar
from visual_recs.models import Product
from visual_recs.queue import enqueue_indexing


class Command(BaseCommand):
    help = (
        "Import products into the bundled Product from a CSV in the sample fashion dataset's format "
        "(ProductId, Gender, Category, SubCategory, ProductType, Colour, Usage, ProductTitle, Image), "
        "copying each photo from the images directory into the media storage. Running it again "
        "changes nothing that is the same. Then indexes what changed: queued for the Celery worker, "
        "or here with --index."
    )

    def add_arguments(self, parser):
        parser.add_argument("--csv", type=Path, required=True, help="The catalog CSV (e.g. fashion.csv).")
        parser.add_argument("--images", type=Path, required=True, help="Directory holding the photos the CSV names.")
        parser.add_argument("--limit", type=int, help="Import only the first N rows.")
        parser.add_argument(
            "--index", action="store_true", help="Index here, with a progress bar, instead of queueing."
        )
        parser.add_argument("--batch-size", type=int, default=64, help="Products per queued task (default 64).")

    def handle(self, *args, csv: Path, images: Path, limit=None, index=False, batch_size=64, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        try:
            rows = catalog.read_catalog(csv, limit=limit)
            with progress_bar(self.stderr, total=len(rows), desc="Importing", unit="row") as bar:
                summary = catalog.import_rows(rows, images, progress=bar.update)
        except catalog.CatalogError as exc:
            raise CommandError(str(exc)) from exc
        self._report(csv, len(rows), summary)
        try:
            to_index = catalog.ids_to_index(summary)
        except NotRegistered as exc:
            self.stdout.write(f"Not indexed: {exc}")
            return
        if not to_index:
            self.stdout.write("Index up to date: no imported product needs indexing.")
        elif index:
            products = Product.objects.filter(pk__in=to_index).order_by("pk").iterator(chunk_size=500)
            index_here(self, products, len(to_index), label="products")
        else:
            self._enqueue(to_index, batch_size)

    def _report(self, csv: Path, total: int, summary: catalog.ImportSummary) -> None:
        self.stdout.write(f"{csv.name}: {total} rows: {summary}.")
        if not summary.changed:
            self.stdout.write("Nothing changed: the catalog was already imported.")
        for skipped in summary.skipped[:MAX_LISTED]:
            self.stdout.write(f"  skipped {skipped}")
        self._more(len(summary.skipped))

    def _enqueue(self, pks: list[int], batch_size: int) -> None:
        if enqueue_indexing(Product, pks, batch_size=batch_size) < len(pks):
            # The products are saved and their vectors missing or pending: the sweep will find them.
            raise CommandError(
                "The Celery broker cannot be reached; the catalog is imported but not indexed. "
                "Run `manage.py visual_recs_reindex --pending --sync` to index here."
            )
        self.stdout.write(f"Queued {len(pks)} products for indexing on the '{app_settings.QUEUE}' queue.")

    def _more(self, count: int) -> None:
        if count > MAX_LISTED:
            self.stdout.write(f"  ... and {count - MAX_LISTED} more.")
