"""``manage.py visual_recs_import_catalog``: a thin shell over :mod:`visual_recs.contrib.catalog.importer`."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from visual_recs import registry
from visual_recs.conf import app_settings
from visual_recs.contrib.catalog import importer
from visual_recs.contrib.catalog.exceptions import CatalogError
from visual_recs.contrib.catalog.mapping import BUNDLED_MODEL, Mapping, bundled_mapping, parse_columns
from visual_recs.exceptions import NotRegistered
from visual_recs.management.progress import MAX_LISTED, index_here, progress_bar
from visual_recs.queue import enqueue_indexing


class Command(BaseCommand):
    help = (
        "Import products and their photos from a CSV, copying each photo from the images directory into "
        "the media storage. By default the CSV is in the sample fashion dataset's format (ProductId, Gender, "
        "Category, SubCategory, ProductType, Colour, Usage, ProductTitle, Image) and goes into the bundled "
        "Product; --model, --id-column, --image-column and --column map another file onto another model. "
        "Running it again changes nothing that is the same. Then indexes what changed: queued for the "
        "Celery worker, or here with --index."
    )

    def add_arguments(self, parser):
        parser.add_argument("--csv", type=Path, required=True, help="The catalog CSV (e.g. fashion.csv).")
        parser.add_argument("--images", type=Path, required=True, help="Directory holding the photos the CSV names.")
        parser.add_argument("--limit", type=int, help="Import only the first N rows.")
        parser.add_argument(
            "--index", action="store_true", help="Index here, with a progress bar, instead of queueing."
        )
        parser.add_argument("--batch-size", type=int, default=64, help="Products per queued task (default 64).")
        mapping = parser.add_argument_group(
            "mapping", "How the CSV's columns fill a model (default: the sample dataset's, onto the bundled Product)."
        )
        mapping.add_argument("--model", help=f"The model to import into, as app_label.ModelName (default {BUNDLED_MODEL}).")
        mapping.add_argument("--id-column", help="Column identifying each row's object (default for the bundled Product: ProductId).")
        mapping.add_argument("--id-field", help="Unique field the id column matches (default: the primary key).")
        mapping.add_argument("--image-column", help="Column naming the photo under --images (default for the bundled Product: Image).")
        mapping.add_argument("--image-field", help="File field the photo is stored in (default: the registered class's photo_field, else image).")
        mapping.add_argument(
            "--column", action="append", default=[], metavar="FIELD=COLUMN",
            help="A field filled from a column, e.g. title=productDisplayName; repeat for each (default for the "
            "bundled Product: the sample dataset's columns).",
        )  # fmt: skip

    def handle(self, *args, csv: Path, images: Path, limit=None, index=False, batch_size=64, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        try:
            mapping = self._mapping(options)
            rows = importer.read_catalog(csv, mapping, limit=limit)
            with progress_bar(self.stderr, total=len(rows), desc="Importing", unit="row") as bar:
                summary = importer.import_rows(rows, images, mapping, progress=bar.update)
        except CatalogError as exc:
            raise CommandError(str(exc)) from exc
        self._report(csv, len(rows), summary)
        try:
            to_index = importer.ids_to_index(mapping, summary)
        except NotRegistered as exc:
            self.stdout.write(f"Not indexed: {exc}")
            return
        label = str(mapping.model._meta.verbose_name_plural)
        if not to_index:
            self.stdout.write(f"Index up to date: no imported {label} need indexing.")
        elif index:
            objects = registry.for_model(mapping.model).all().filter(pk__in=to_index).order_by("pk")
            index_here(self, objects.iterator(chunk_size=500), len(to_index), label=label)
        else:
            self._enqueue(mapping, to_index, batch_size, label)

    @staticmethod
    def _mapping(options) -> Mapping:
        """The bundled layout with whatever parts the options replace; for another model, only the options."""
        parts = {
            "id_column": options.get("id_column"),
            "image_column": options.get("image_column"),
            "columns": parse_columns(options.get("column") or []),
            "id_field": options.get("id_field"),
            "image_field": options.get("image_field"),
        }
        model = options.get("model")
        if model is None or model.lower() == BUNDLED_MODEL.lower():
            return bundled_mapping(**parts)
        missing = [f"--{name.replace('_', '-')}" for name in ("id_column", "image_column") if not parts[name]]
        if missing:
            raise CatalogError(f"--model {model} needs {' and '.join(missing)}: the CSV columns of its id and photo.")
        return Mapping.build(model, **parts)

    def _report(self, csv: Path, total: int, summary: importer.ImportSummary) -> None:
        self.stdout.write(f"{csv.name}: {total} rows: {summary}.")
        if not summary.changed:
            self.stdout.write("Nothing changed: the catalog was already imported.")
        for skipped in summary.skipped[:MAX_LISTED]:
            self.stdout.write(f"  skipped {skipped}")
        if len(summary.skipped) > MAX_LISTED:
            self.stdout.write(f"  ... and {len(summary.skipped) - MAX_LISTED} more.")

    def _enqueue(self, mapping: Mapping, pks: list, batch_size: int, label: str) -> None:
        if enqueue_indexing(mapping.model, pks, batch_size=batch_size) < len(pks):
            # The objects are saved and their vectors missing or pending: the sweep will find them.
            raise CommandError(
                "The Celery broker cannot be reached; the catalog is imported but not indexed. "
                "Run `manage.py visual_recs_reindex --pending --sync` to index here."
            )
        self.stdout.write(f"Queued {len(pks)} {label} for indexing on the '{app_settings.QUEUE}' queue.")
