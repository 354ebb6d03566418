"""Neighbour lists copied into Oscar's ``ProductRecommendation``, for themes that show those.

On when the declaration's ``recommendations`` is above 0 (``OscarProducts.recommendations``).
Each time lists are written (``visual_recs.indexing.lists_changed``), a product's first N
similar items, as its page's strip shows them, become its recommendations ranked N down to 1
(Oscar shows the highest ranking first). Only rows this app wrote (``WrittenRecommendation``)
are rewritten or deleted; a recommendation staff added is kept, and when it names a product
the list names too, the staff's row stays as they made it. Children get none: Oscar does not
support recommendations on a child. A product hidden by a change that saves nothing (the
dashboard's bulk action, see ``bulk_actions``) leaves the written rows at once (``forget_hidden``).
"""

from __future__ import annotations

from oscar.core.loading import get_model

from visual_recs import indexing
from visual_recs.registry import IndexedModel
from visual_recs.utils import chunked

from .models import WrittenRecommendation

SQL_CHUNK = 500


def connect() -> None:
    """Listen to every list written (the receiver returns at once for other models, or when off)."""
    indexing.lists_changed.connect(on_lists_changed, dispatch_uid="visual_recs.contrib.oscar.recommendations")


def on_lists_changed(sender, indexed_model: IndexedModel, source_ids: list[str], **kwargs) -> None:
    limit = int(getattr(indexed_model.declaration, "recommendations", 0) or 0)
    if limit > 0 and sender is get_model("catalogue", "Product"):
        write_recommendations(indexed_model, source_ids, limit)


def write_recommendations(indexed_model: IndexedModel, source_ids: list[str], limit: int) -> None:
    """Make the written recommendations of the products ``source_ids`` their first ``limit`` similar items."""
    to_pk = indexed_model.model._meta.pk.to_python
    for chunk in chunked(source_ids, SQL_CHUNK):
        pks = [to_pk(object_id) for object_id in chunk]
        products = indexed_model.all().filter(pk__in=pks).exclude(structure="child")
        for product in products:
            wanted = [item.object.pk for item in indexing.similar_to(product, limit)]
            _write(product, wanted, limit)
        # A product gone, or a child, keeps no written rows (a delete cascades to them anyway).
        _written().filter(primary_id__in=pks).exclude(primary__in=products).delete()


def forget_hidden(indexed_model: IndexedModel, pks) -> None:
    """Delete the written recommendations naming one of the products ``pks`` that is not shown now.

    Before the worker repairs the lists (which then writes the next similar item in its place),
    so Oscar's "Recommended items" never link a product hidden meanwhile. Staff's rows stay.
    """
    hidden = indexed_model.all().filter(pk__in=pks).exclude(pk__in=indexed_model.shown().values("pk"))
    _written().filter(recommendation__in=hidden).delete()


def _written():
    return get_model("catalogue", "ProductRecommendation").objects.filter(visual_recs_mark__isnull=False)


def _write(product, wanted: list, limit: int) -> None:
    Recommendation = get_model("catalogue", "ProductRecommendation")
    rows = {row.recommendation_id: row for row in Recommendation.objects.filter(primary=product).select_related("visual_recs_mark")}
    ours = {pk: row for pk, row in rows.items() if hasattr(row, "visual_recs_mark")}
    Recommendation.objects.filter(pk__in=[row.pk for pk, row in ours.items() if pk not in wanted]).delete()
    for position, target in enumerate(wanted):
        ranking = limit - position
        row = rows.get(target)
        if row is None:
            row = Recommendation.objects.create(primary=product, recommendation_id=target, ranking=ranking)
            WrittenRecommendation.objects.create(recommendation=row)
        elif target in ours and row.ranking != ranking:
            Recommendation.objects.filter(pk=row.pk).update(ranking=ranking)
