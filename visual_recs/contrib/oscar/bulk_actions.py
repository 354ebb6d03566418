"""Oscar's dashboard bulk actions on products, followed: what they hide or show again leaves or enters the lists at once.

Oscar's "Make products public" / "Make products non-public" run ``queryset.update(is_public=...)``:
no product is saved, so no signal reaches this app's receivers, and only the sweep's reconcile
would find the change (a hidden product kept in the copied ``ProductRecommendation`` rows, a
re-shown one missing from every list until then). Oscar sends no signal for its bulk actions and
has no setting for them; its product list view and the confirmation view hold them as instances
in the class attributes ``actions`` and ``intermediate_actions`` (one dict the two views share),
found through Oscar's ``get_class`` (so a forked dashboard's views are the ones followed).

``follow()``, run once at start-up, wraps each of those actions: after one runs, the copied
recommendations that name a product it hid are deleted in the request itself, and the products
whose visibility it changed are queued for indexing once the transaction commits (as a save of
each would be), so the worker moves them in or out of the other products' lists. A shop whose
forked view builds its actions anew in ``get_actions()`` is not followed: the sweep remains.
"""

from __future__ import annotations

from functools import partial

from django.db import transaction
from oscar.core.exceptions import AppNotFoundError
from oscar.core.loading import get_classes, get_model

from visual_recs import queue, registry
from visual_recs.exceptions import NotRegistered
from visual_recs.models import FeatureVector
from visual_recs.registry import IndexedModel
from visual_recs.utils import chunked

from . import recommendations

SQL_CHUNK = 500


class FollowedAction:
    """One of the dashboard's bulk actions on products, followed: all but ``execute`` is the action's own."""

    def __init__(self, action) -> None:
        self.action = action

    def __getattr__(self, name: str):
        return getattr(self.action, name)

    def __str__(self) -> str:
        return str(self.action)  # the label the product list's action menu shows

    def execute(self, request, objects, *args):
        """Run the action, then bring the products it changed into step (``follow_products``)."""
        pks = list(objects.values_list("pk", flat=True))
        response = self.action.execute(request, objects, *args)
        follow_products(pks)
        return response


def follow() -> None:
    """Wrap the bulk actions of Oscar's dashboard product views in ``FollowedAction``, once each."""
    try:
        views = get_classes("dashboard.catalogue.views", ["ProductListView", "ProductBulkActionConfirmView"])
    except AppNotFoundError:
        return  # a shop without Oscar's dashboard: nothing to follow
    for view in views:
        for actions in (getattr(view, "actions", None), view.intermediate_actions):
            if not isinstance(actions, dict):
                continue  # BulkEditMixin also takes a list of view method names: none is a bulk update
            for name, action in list(actions.items()):
                if hasattr(action, "execute") and not isinstance(action, FollowedAction):
                    actions[name] = FollowedAction(action)


def follow_products(pks) -> None:
    """Bring visual_recs into step with the products ``pks`` after a change that sent no signal.

    The copied recommendations naming those now hidden go at once; those whose vector is listed
    (recommendable) or not, unlike the product now, are queued for the worker after the commit.
    """
    try:
        indexed_model = registry.for_model(get_model("catalogue", "Product"))
    except NotRegistered:
        return
    for chunk in chunked(pks, SQL_CHUNK):
        recommendations.forget_hidden(indexed_model, chunk)
        moved = visibility_changed(indexed_model, chunk)
        if moved:
            transaction.on_commit(partial(queue.enqueue_indexing, indexed_model.model, moved))


def visibility_changed(indexed_model: IndexedModel, pks) -> list[str]:
    """The ids among ``pks`` whose vector is listed while the product is not shown now, or the reverse."""
    shown = {str(pk) for pk in indexed_model.shown().filter(pk__in=pks).values_list("pk", flat=True)}
    vectors = FeatureVector.objects.filter(
        content_type=indexed_model.content_type, object_id__in=[str(pk) for pk in pks]
    ).values_list("object_id", "listed")
    return [object_id for object_id, listed in vectors if listed != (object_id in shown)]
