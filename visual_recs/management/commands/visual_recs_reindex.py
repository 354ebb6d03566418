from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from visual_recs import indexing, registry, tasks
from visual_recs.conf import app_settings
from visual_recs.exceptions import NotRegistered
from visual_recs.management.progress import progress_bar
from visual_recs.signals import enqueue


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
        try:
            selected = [registry.get(key)] if key else list(registry.indexed_models().values())
        except NotRegistered as exc:
            raise CommandError(str(exc)) from exc
        for indexed_model in selected:
            queryset = indexing.objects_needing_work(indexed_model) if pending else indexed_model.all()
            if partition is not None:
                if not indexed_model.partition_field:
                    raise CommandError(f"{indexed_model.key} has no partition field.")
                queryset = queryset.filter(**{indexed_model.partition_field: partition})
            queryset = queryset.order_by("pk")
            total = queryset.count()
            if sync:
                self._index_here(indexed_model, queryset, total, force)
            else:
                self._enqueue(indexed_model, queryset, total, force, batch_size)

    def _index_here(self, indexed_model, queryset, total, force):
        with progress_bar(self.stderr, total=total, desc=f"Indexing {indexed_model.key}", unit="img") as bar:
            summary = indexing.index_many(queryset.iterator(chunk_size=500), force=force, progress=bar.update)
        self.stdout.write(f"{indexed_model.key}: {summary}.")
        for object_id, reason in summary.failures[:20]:
            self.stdout.write(f"  failed {object_id}: {reason}")
        if len(summary.failures) > 20:
            self.stdout.write(f"  ... and {len(summary.failures) - 20} more (see the admin, filtered by status).")

    def _enqueue(self, indexed_model, queryset, total, force, batch_size):
        meta = indexed_model.model._meta
        pks = list(queryset.values_list("pk", flat=True))
        queued = 0
        with progress_bar(self.stderr, total=total, desc=f"Queueing {indexed_model.key}", unit="obj") as bar:
            for start in range(0, len(pks), batch_size):
                batch = [str(pk) for pk in pks[start : start + batch_size]]
                if not enqueue(tasks.index_batch, meta.app_label, meta.model_name, batch, force):
                    raise CommandError("The Celery broker cannot be reached; run with --sync to index here.")
                queued += len(batch)
                bar.update(len(batch))
        self.stdout.write(f"{indexed_model.key}: queued {queued} objects on the '{app_settings.QUEUE}' queue.")
