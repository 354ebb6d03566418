from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from visual_recs import indexing
from visual_recs.exceptions import LearningError
from visual_recs.management.progress import progress_bar
from visual_recs.management.selection import selected_models


class Command(BaseCommand):
    help = (
        "Learn each model's search space from its stored vectors and its 'learn_from' labels, then "
        "rebuild its index and lists in that space (the network does not run). Run it again after "
        "the catalog has grown or its labels changed; indexing never refits by itself."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--model", dest="key", help="Key in VISUAL_RECS['MODELS'] (default: every model with 'learn_from')."
        )

    def handle(self, *args, key=None, **options):
        selected = selected_models(key)
        if key is None:
            selected = [indexed_model for indexed_model in selected if indexed_model.learn_from]
            if not selected:
                raise CommandError("No model in VISUAL_RECS['MODELS'] has 'learn_from': there is nothing to fit.")
        for indexed_model in selected:
            total = indexing.neighbours.ready_rows(indexed_model).count()
            try:
                with progress_bar(self.stderr, total=total, desc=f"Fitting {indexed_model.key}", unit="vec") as bar:
                    summary = indexing.fit(indexed_model, progress=bar.update)
            except LearningError as exc:
                raise CommandError(f"{indexed_model.key}: {exc} Nothing was changed.") from exc
            self.stdout.write(f"{indexed_model.key}: {summary}.")
