"""The dashboard page: the index status of Oscar's products, and a button that queues a reindex.

Staff only (the app's ``default_permissions``, applied by Oscar to its URLs); the reindex is a
POST with Django's CSRF check, and queues batches for the worker as the admin action does.
"""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.generic import TemplateView
from oscar.core.loading import get_model

from visual_recs import indexing, queue, registry
from visual_recs.registry import IndexedModel


def oscar_entries() -> list[IndexedModel]:
    """The registered models that are Oscar's ``catalogue.Product``."""
    product = get_model("catalogue", "Product")
    return [indexed_model for indexed_model in registry.indexed_models().values() if indexed_model.model is product]


class IndexStatusView(TemplateView):
    template_name = "visual_recs/oscar/dashboard.html"

    def get_context_data(self, **kwargs):
        overview = indexing.index_overview()
        entries = [(entry.key, overview["models"][entry.key]) for entry in oscar_entries()]
        return super().get_context_data(entries=entries, model_id=overview["model_id"], **kwargs)

    def post(self, request, *args, **kwargs):
        force = request.POST.get("force") == "1"
        for indexed_model in oscar_entries():
            pks = list(indexed_model.all().values_list("pk", flat=True))
            queued = queue.enqueue_indexing(indexed_model.model, pks, force=force)
            if queued == len(pks):
                messages.success(request, _("Queued %(count)d products for reindexing.") % {"count": queued})
            else:
                messages.warning(
                    request,
                    _(
                        "Queued %(count)d of %(total)d products: the task queue cannot be reached. "
                        "Run `manage.py visual_recs_reindex --sync` on the server, or try again later."
                    )
                    % {"count": queued, "total": len(pks)},
                )
        return redirect("visual_recs_oscar:visual-recs-index")
