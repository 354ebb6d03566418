"""What staff and the sweep need to know: counts by status, and what is left to index.

Both are questions about every object of a model against its vector rows, so the database
answers them: ``Exists`` subqueries on ``FeatureVector``'s unique (content_type, object_id)
index, never Python sets of every id (100,000 products would be sets of 100,000 strings).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import connections, models, router
from django.db.models import CharField, Count, Exists, OuterRef, Q, Value
from django.db.models.functions import Cast, Concat, Substr

from .. import registry
from ..backends import get_extractor
from ..conf import app_settings
from ..models import FeatureVector, IndexStatus
from ..registry import IndexedModel

Status = IndexStatus
#: The statuses a ``FeatureVector`` row can have (``no_image`` is never stored).
STORED_STATUSES = (Status.PENDING.value, Status.READY.value, Status.FAILED.value)


def vectors_of_outer_object(indexed_model: IndexedModel) -> models.QuerySet:
    """The ``FeatureVector`` rows of the object of an enclosing query on ``indexed_model``'s model.

    For ``Exists(...)`` in a queryset of the model: ``object_id`` holds ``str(pk)``, so the
    outer pk is written as that text (an integer cast; a UUID with its hyphens where the
    database stores it as 32 hex digits) rather than ``object_id`` cast to the pk's type,
    which keeps the lookup on the unique (content_type, object_id) index.
    """
    pk_field = indexed_model.model._meta.pk
    connection = connections[router.db_for_read(indexed_model.model)]
    if isinstance(pk_field, models.UUIDField) and not connection.features.has_native_uuid_field:
        hex_digits, dash = OuterRef("pk"), Value("-")
        as_text = Concat(
            Substr(hex_digits, 1, 8), dash, Substr(hex_digits, 9, 4), dash, Substr(hex_digits, 13, 4), dash,
            Substr(hex_digits, 17, 4), dash, Substr(hex_digits, 21, 12), output_field=CharField(),
        )
    else:
        as_text = Cast(OuterRef("pk"), CharField())
    return FeatureVector.objects.filter(content_type=indexed_model.content_type, object_id=as_text)


def objects_needing_work(indexed_model: IndexedModel) -> models.QuerySet:
    """Objects whose vector is pending, failed below the attempt limit, made by another
    extractor, or missing though they have a photo, and ready ones whose lists wait for a
    repair (a move whose task could not be queued, a repair that failed).

    One query, evaluated by the database: iterate it (``.iterator(chunk_size=...)``) and no
    process holds the ids of the whole catalog.
    """
    vectors = vectors_of_outer_object(indexed_model)
    to_redo = vectors.filter(
        Q(status=Status.PENDING)
        | Q(status=Status.FAILED, attempts__lt=app_settings.MAX_ATTEMPTS)
        | Q(Q(status=Status.READY) & (~Q(model_id=get_extractor().model_id) | Q(list_radius=None)))
    )
    never_indexed = indexed_model.with_photo().filter(~Exists(vectors))
    return indexed_model.all().filter(Q(Exists(to_redo)) | Q(pk__in=never_indexed.values("pk")))


def index_overview() -> dict[str, Any]:
    """Counts for staff: per registered model, its objects, and its vectors by partition and status.

    ``stale`` counts ready vectors made by another extractor (a reindex redoes them);
    ``not_indexed`` counts objects with a photo and no vector row yet; ``lists_to_repair``
    ready vectors whose neighbour lists wait for a repair (moved or re-shown while the broker
    was down, or a repair that failed); ``failed_to_retry`` failed vectors the sweep tries
    again (below ``MAX_ATTEMPTS``). The sweep and ``visual_recs_reindex --pending`` do all of these.
    Every figure is a count in the database.
    """
    model_id = get_extractor().model_id
    overview: dict[str, Any] = {"model_id": model_id, "models": {}}
    for key, indexed_model in registry.indexed_models().items():
        vectors = FeatureVector.objects.filter(content_type=indexed_model.content_type)
        partitions: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STORED_STATUSES, 0))
        for row in vectors.values("partition", "status").annotate(n=Count("id")).order_by("partition", "status"):
            partitions[row["partition"]][row["status"]] = row["n"]
        objects = indexed_model.all().count()
        with_photo = indexed_model.with_photo()
        overview["models"][key] = {
            "model": indexed_model.label,
            "partition_field": indexed_model.partition_field,
            "objects": objects,
            "no_image": objects - with_photo.count(),
            "not_indexed": with_photo.filter(~Exists(vectors_of_outer_object(indexed_model))).count(),
            "stale": vectors.filter(status=Status.READY).exclude(model_id=model_id).count(),
            "lists_to_repair": vectors.filter(status=Status.READY, list_radius=None).count(),
            "failed_to_retry": vectors.filter(status=Status.FAILED, attempts__lt=app_settings.MAX_ATTEMPTS).count(),
            "partitions": dict(partitions),
        }
    return overview
