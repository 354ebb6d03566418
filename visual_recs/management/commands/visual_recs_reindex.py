from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from visual_recs import indexing
from visual_recs.conf import app_settings
from visual_recs.management.progress import index_here, progress_bar
from visual_recs.management.selection import check_partition, selected_models
from visual_recs.queue import enqueue_indexing


class Command(BaseCommand):
    help = (
        "Index product photos and rebuild their neighbour lists. By default queues batches for the "
        "Celery worker; --sync does the work here, with a progress bar."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", dest="key", help="Key in VISUAL_RECS['MODELS'] (default: every model).")
        parser.add_argument("--partition", help="Only objects of this partition (e.g. a gender).")
        parser.add_argument("--force", action="store_true", help="Extract again even when the photo is unchanged.")
        parser.add_argument(
            "--pending", action="store_true", help="Only pending vectors, stale ones, and objects never indexed."
        )
        parser.add_argument("--sync", action="store_true", help="Work in this process instead of queueing.")
        parser.add_argument("--batch-size", type=int, default=64, help="Objects per queued task (default 64).")

    def handle(self, *args, key=None, partition=None, force=False, pending=False, sync=False, batch_size=64, **options):
        selected = selected_models(key)
        check_partition(selected, partition)
        for indexed_model in selected:
            queryset = indexing.objects_needing_work(indexed_model) if pending else indexed_model.all()
            if partition is not None:
                queryset = indexed_model.in_partition(queryset, partition)
            queryset = queryset.order_by("pk")
            total = queryset.count()
            if sync:
                index_here(self, queryset.iterator(chunk_size=500), total, label=indexed_model.key, force=force)
            else:
                self._enqueue(indexed_model, queryset, total, force, batch_size)

    def _enqueue(self, indexed_model, queryset, total, force, batch_size):
        pks = list(queryset.values_list("pk", flat=True))
        with progress_bar(self.stderr, total=total, desc=f"Queueing {indexed_model.key}", unit="obj") as bar:
            queued = enqueue_indexing(indexed_model.model, pks, force=force, batch_size=batch_size, progress=bar.update)
        if queued < len(pks):
            raise CommandError("The Celery broker cannot be reached; run with --sync to index here.")
        self.stdout.write(f"{indexed_model.key}: queued {queued} objects on the '{app_settings.QUEUE}' queue.")
