"""The dashboard pages: the index status of Oscar's products with a reindex button, and the merchandising rules.

The index page is staff only (the app's ``default_permissions``, applied by Oscar to its URLs);
the reindex is a POST with Django's CSRF check, and queues batches for the worker as the admin
action does. The rule pages list, add, edit and delete the rules of Oscar's products with the
admin's ``RuleForm`` (its model fixed to ``catalogue.Product``), for staff with the rule
permissions the app config's ``permissions_map`` names.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.contrib.contenttypes.models import ContentType
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.generic import CreateView, DeleteView, ListView, TemplateView, UpdateView
from oscar.core.loading import get_model

from visual_recs import forms, indexing, queue, registry
from visual_recs.models import Rule
from visual_recs.registry import IndexedModel


def oscar_entries() -> list[IndexedModel]:
    """The registered models that are Oscar's ``catalogue.Product``."""
    product = get_model("catalogue", "Product")
    return [indexed_model for indexed_model in registry.indexed_models().values() if indexed_model.model is product]


def change_permission(indexed_model: IndexedModel) -> str:
    """The permission to change objects of ``indexed_model``'s model, e.g. ``catalogue.change_product``."""
    opts = indexed_model.model._meta
    return f"{opts.app_label}.change_{opts.model_name}"


class IndexStatusView(TemplateView):
    template_name = "visual_recs/oscar/dashboard.html"

    def get_context_data(self, **kwargs):
        overview = indexing.index_overview()
        entries = [(entry.key, overview["models"][entry.key]) for entry in oscar_entries()]
        return super().get_context_data(entries=entries, model_id=overview["model_id"], **kwargs)

    def post(self, request, *args, **kwargs):
        force = request.POST.get("force") == "1"
        entries = oscar_entries()
        # As the admin's reindex action: only for those who may change the products.
        if not all(request.user.has_perm(change_permission(entry)) for entry in entries):
            raise PermissionDenied(_("Reindexing needs the permission to change products."))
        for indexed_model in entries:
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


def product_content_type() -> ContentType:
    """The content type of Oscar's ``catalogue.Product`` (a forked one's): the only model these rule pages edit."""
    return ContentType.objects.get_for_model(get_model("catalogue", "Product"), for_concrete_model=False)


class ProductRules:
    """The rules these pages show and change: those of Oscar's products; after a change, back to their list."""

    context_object_name = "rule"

    def get_queryset(self):
        return Rule.objects.filter(content_type=product_content_type())

    def get_success_url(self) -> str:
        return reverse("visual_recs_oscar:visual-recs-rules")


class RuleListView(ProductRules, ListView):
    """The rules of Oscar's products, their products and items by title; ``?product=<pk>``: one product's."""

    template_name = "visual_recs/oscar/rules.html"
    context_object_name = "rules"
    paginate_by = getattr(settings, "OSCAR_DASHBOARD_ITEMS_PER_PAGE", 20)

    def get_queryset(self):
        product = self.request.GET.get("product", "").strip()
        return super().get_queryset().filter(source_id=product) if product else super().get_queryset()

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        forms.label_rules(context["rules"])
        for rule in context["rules"]:
            rule.items_label = forms.describe_items(rule)
            rule.scope_label = forms.describe_scope(rule)
        return context


class RuleEditMixin(ProductRules):
    """What adding and editing share: the form for Oscar's products, and the messages."""

    template_name = "visual_recs/oscar/rule_form.html"
    form_class = forms.RuleForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "content_type": product_content_type()}

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, _("Rule saved: %(rule)s.") % {"rule": self.object})
        for warning in form.warnings():
            messages.warning(self.request, warning)
        return response


class RuleCreateView(RuleEditMixin, CreateView):
    def get_initial(self):
        # "Add a rule" from one product's list: ?product=<pk> fills it in.
        return {**super().get_initial(), "source_id": self.request.GET.get("product", "")}


class RuleUpdateView(RuleEditMixin, UpdateView):
    pass


class RuleDeleteView(ProductRules, DeleteView):
    template_name = "visual_recs/oscar/rule_delete.html"

    def form_valid(self, form):
        messages.success(self.request, _("Rule deleted: %(rule)s.") % {"rule": self.object})
        return super().form_valid(form)
