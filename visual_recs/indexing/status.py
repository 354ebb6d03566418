"""What staff and the sweep need to know: counts by status, and what is left to index."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import models
from django.db.models import Count

from .. import registry
from ..backends import get_extractor
from ..conf import app_settings
from ..models import FeatureVector, IndexStatus
from ..registry import IndexedModel

Status = IndexStatus
#: The statuses a ``FeatureVector`` row can have (``no_image`` is never stored).
STORED_STATUSES = (Status.PENDING.value, Status.READY.value, Status.FAILED.value)



def objects_needing_work(indexed_model: IndexedModel) -> models.QuerySet:
    """Objects whose vector is pending, failed below the attempt limit, made by another
    extractor, or missing though they have a photo, and ready ones whose lists wait for a
    repair (a move whose task could not be queued, a repair that failed)."""
    content_type = indexed_model.content_type
    model_id = get_extractor().model_id
    vectors = FeatureVector.objects.filter(content_type=content_type)
    to_do = set(vectors.filter(status=Status.PENDING).values_list("object_id", flat=True))
    to_do |= set(
        vectors.filter(status=Status.FAILED, attempts__lt=app_settings.MAX_ATTEMPTS).values_list("object_id", flat=True)
    )
    ready = vectors.filter(status=Status.READY)
    to_do |= set(ready.exclude(model_id=model_id).values_list("object_id", flat=True))
    to_do |= set(ready.filter(list_radius=None).values_list("object_id", flat=True))
    known = set(vectors.values_list("object_id", flat=True))
    with_photo = {str(pk) for pk in indexed_model.with_photo().values_list("pk", flat=True)}
    to_do |= with_photo - known
    to_pk = indexed_model.model._meta.pk.to_python
    return indexed_model.all().filter(pk__in=[to_pk(object_id) for object_id in to_do])



def index_overview() -> dict[str, Any]:
    """Counts for staff: per registered model, its objects, and its vectors by partition and status.

    ``stale`` counts ready vectors made by another extractor (a reindex redoes them);
    ``not_indexed`` counts objects with a photo and no vector row yet; ``lists_to_repair``
    ready vectors whose neighbour lists wait for a repair (moved or re-shown while the broker
    was down, or a repair that failed); ``failed_to_retry`` failed vectors the sweep tries
    again (below ``MAX_ATTEMPTS``). The sweep and ``visual_recs_reindex --pending`` do all of these.
    """
    model_id = get_extractor().model_id
    overview: dict[str, Any] = {"model_id": model_id, "models": {}}
    for key, indexed_model in registry.indexed_models().items():
        vectors = FeatureVector.objects.filter(content_type=indexed_model.content_type)
        partitions: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STORED_STATUSES, 0))
        for row in vectors.values("partition", "status").annotate(n=Count("id")).order_by("partition", "status"):
            partitions[row["partition"]][row["status"]] = row["n"]
        objects = indexed_model.all().count()
        with_photo = {str(pk) for pk in indexed_model.with_photo().values_list("pk", flat=True)}
        overview["models"][key] = {
            "model": indexed_model.label,
            "partition_field": indexed_model.partition_field,
            "objects": objects,
            "no_image": objects - len(with_photo),
            "not_indexed": len(with_photo - set(vectors.values_list("object_id", flat=True))),
            "stale": vectors.filter(status=Status.READY).exclude(model_id=model_id).count(),
            "lists_to_repair": vectors.filter(status=Status.READY, list_radius=None).count(),
            "failed_to_retry": vectors.filter(status=Status.FAILED, attempts__lt=app_settings.MAX_ATTEMPTS).count(),
            "partitions": dict(partitions),
        }
    return overview
