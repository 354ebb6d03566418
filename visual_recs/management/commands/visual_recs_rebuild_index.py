from __future__ import annotations

from django.core.management.base import BaseCommand

from visual_recs import indexing
from visual_recs.management.progress import progress_bar
from visual_recs.management.selection import selected_models


class Command(BaseCommand):
    help = (
        "Fill the configured index backend from the stored vectors and rebuild every neighbour list. "
        "Run it after switching VISUAL_RECS['INDEX'] (e.g. to pgvector): no photo is read again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", dest="key", help="Key in VISUAL_RECS['MODELS'] (default: every model).")

    def handle(self, *args, key=None, **options):
        selected = selected_models(key)
        for indexed_model in selected:
            total = indexing.neighbours.ready_rows(indexed_model).count()
            with progress_bar(self.stderr, total=total, desc=f"Loading {indexed_model.key}", unit="vec") as bar:
                loaded = indexing.rebuild_index(indexed_model, progress=bar.update)
            self.stdout.write(f"{indexed_model.key}: {loaded} vectors in the index, every list rebuilt.")
