"""Admin: the feature vectors, and a mixin that shows a registered model's index status.

A shop's own product admin gets it in one line (``visual_recs.contrib.catalog`` does this for
the bundled Product)::

    @admin.register(Garment)
    class GarmentAdmin(VisualRecsAdminMixin, admin.ModelAdmin):
        ...

It adds a thumbnail and an index-status column to the change list, the "Reindex visual
features" action (for users who may change the model), and on the change page a "Visual
recommendations" section: the status with the failure reason, the similar items with
their distances, and links to the product's merchandising rules.

``RuleAdmin`` edits those rules (``visual_recs.forms.RuleForm``, which Oscar's dashboard
uses too).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import model_ngettext, quote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.text import Truncator
from django.utils.translation import gettext, gettext_lazy as _

from . import forms, indexing, queue, registry, reports
from .models import Event, FeatureVector, IndexStatus, Origin, Rule

REINDEX_ACTION = "reindex_visual_features"
#: Objects per queued task: one pass of the network over a batch, as the reindex command queues.
REINDEX_BATCH = 64
_STATUS_LABELS = dict(IndexStatus.choices)
#: How the preview marks an item without a distance (pinned, or from the fallback).
_ORIGIN_LABELS = dict(Origin.choices)


class VisualRecsAdminMixin:
    """Thumbnail and index-status columns, the reindex action and a similar-items preview.

    Put it before ``admin.ModelAdmin`` in the bases of a registered model's admin.
    """

    #: How many similar items the change page previews.
    visual_recs_preview_limit = 10
    visual_recs_detail_fields = ("visual_recs_status", "visual_recs_similar", "visual_recs_rules")

    def formfield_for_dbfield(self, db_field: models.Field, request: HttpRequest, **kwargs):
        # The indexed photo is uploaded through the app's loader, with the formats the worker decodes.
        if isinstance(db_field, models.ImageField) and db_field.name == registry.for_model(self.model).image_field:
            kwargs.setdefault("form_class", forms.PhotoField)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    # --- change list ---

    def get_list_display(self, request: HttpRequest):
        columns = [c for c in super().get_list_display(request) if c not in ("visual_recs_thumbnail", "visual_recs_status")]
        # After the first column, which links to the change page.
        return [*columns[:1], "visual_recs_thumbnail", *columns[1:], "visual_recs_status"]

    def get_changelist_instance(self, request: HttpRequest):
        changelist = super().get_changelist_instance(request)
        # Every row's status in one query (the columns would otherwise cost one query a row).
        page = list(changelist.result_list)
        states = indexing.index_states(page)
        for obj in page:
            obj._visual_recs_state = states[str(obj.pk)]
        return changelist

    @admin.display(description=_("photo"))
    def visual_recs_thumbnail(self, obj: models.Model) -> str:
        image_url = registry.for_model(obj).image_url_of(obj)
        if image_url is None:
            return "—"
        # alt="" since the row names the product; width/height keep the rows from jumping.
        return format_html(
            '<img src="{}" alt="" width="36" height="48" loading="lazy" style="object-fit:contain;background:#fff">',
            image_url,
        )

    @admin.display(description=_("visual index"))
    def visual_recs_status(self, obj: models.Model) -> str:
        state = getattr(obj, "_visual_recs_state", None) or indexing.index_states([obj])[str(obj.pk)]
        label = _STATUS_LABELS.get(state.status, state.status)
        if state.error:
            return format_html('{}: <span title="{}">{}</span>', label, state.error, Truncator(state.error).chars(80))
        return str(label)

    # --- action ---

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        if self.actions is None or IS_POPUP_VAR in request.GET:
            return actions
        func, name, description = self.get_action(REINDEX_ACTION)
        if any(getattr(self, f"has_{perm}_permission")(request) for perm in func.allowed_permissions):
            actions[name] = (func, name, description)
        return actions

    @admin.action(description=_("Reindex visual features"), permissions=["change"])
    def reindex_visual_features(self, request: HttpRequest, queryset: models.QuerySet) -> None:
        """Queue the selected objects for extraction even if their photos did not change."""
        pks = list(queryset.values_list("pk", flat=True))
        queued = queue.enqueue_indexing(self.model, pks, force=True, batch_size=REINDEX_BATCH)
        if queued == len(pks):
            self.message_user(
                request,
                gettext("Queued %(count)d %(items)s for reindexing.")
                % {"count": queued, "items": model_ngettext(self.opts, queued)},
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                gettext(
                    "Queued %(count)d of %(total)d %(items)s for reindexing: the task queue cannot be reached. "
                    "Run `manage.py visual_recs_reindex --sync` on the server, or try again later."
                )
                % {"count": queued, "total": len(pks), "items": model_ngettext(self.opts, len(pks))},
                messages.WARNING,
            )

    # --- change page ---

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # What this user may do with rules, for the section's links: a display function gets only the object.
            obj._visual_recs_rule_access = self._visual_recs_rule_access(request)
        return obj

    def _visual_recs_rule_access(self, request: HttpRequest) -> tuple[bool, bool]:
        """(may view rules, may add one) in this admin site; both False where ``RuleAdmin`` is not registered."""
        rule_admin = self.admin_site._registry.get(Rule)
        if rule_admin is None:
            return False, False
        return rule_admin.has_view_permission(request), rule_admin.has_add_permission(request)

    def get_readonly_fields(self, request: HttpRequest, obj: models.Model | None = None):
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is None:
            return fields
        return fields + tuple(f for f in self.visual_recs_detail_fields if f not in fields)

    def get_fieldsets(self, request: HttpRequest, obj: models.Model | None = None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        ours = self.visual_recs_detail_fields
        # Our fields in a section of their own at the end, wherever the default layout put them.
        stripped = [
            (title, {**options, "fields": [f for f in options["fields"] if f not in ours]})
            for title, options in fieldsets
        ]
        return [*stripped, (_("Visual recommendations"), {"fields": list(ours)})]

    @admin.display(description=_("similar items"))
    def visual_recs_similar(self, obj: models.Model) -> str:
        indexed_model = registry.for_model(obj)
        found = indexing.recommendations(obj, self.visual_recs_preview_limit)
        if not found.items:
            return gettext("None yet.") if found.status != "ready" else gettext("None: no other shown product in its partition.")
        # Why each is recommended: its distance part by part (kind of product, colour...).
        parts = indexing.distance_parts(indexed_model, str(obj.pk), [str(item.object.pk) for item in found.items])
        cards = format_html_join(
            "",
            '<li style="width:120px"><a href="{}">{}<br>{}</a><br><small>{}</small>{}</li>',
            (
                (
                    self._visual_recs_admin_url(item.object),
                    self._visual_recs_image(indexed_model.image_url_of(item.object)),
                    Truncator(indexed_model.title_of(item.object)).chars(40),
                    f"d = {item.distance:.2f}" if item.distance is not None else _ORIGIN_LABELS[item.origin],
                    self._visual_recs_parts(parts.get(str(item.object.pk), {})),
                )
                for item in found.items
            ),
        )
        return format_html(
            '<ol style="display:flex;flex-wrap:wrap;gap:12px;list-style:none;margin:0;padding:0">{}</ol>', cards
        )

    @admin.display(description=_("merchandising rules"))
    def visual_recs_rules(self, obj: models.Model) -> str:
        """"Rules for this product (N)", to the rule list filtered to it, and "Add a rule" with it filled in."""
        may_view, may_add = getattr(obj, "_visual_recs_rule_access", (False, False))
        content_type = registry.for_model(obj).content_type
        links = []
        if may_view:
            count = Rule.objects.filter(content_type=content_type, source_id=str(obj.pk)).count()
            query = {"content_type__id__exact": content_type.pk, "source_id": str(obj.pk)}
            links.append((
                self._visual_recs_rule_url("changelist", query),
                gettext("Rules for this %(model)s (%(count)d)") % {"model": obj._meta.verbose_name, "count": count},
            ))
        if may_add:
            query = {"content_type": content_type.pk, "source_id": str(obj.pk)}
            links.append((self._visual_recs_rule_url("add", query), gettext("Add a rule")))
        if not links:
            return "—"
        return format_html_join(" · ", '<a href="{}">{}</a>', links)

    def _visual_recs_rule_url(self, view: str, query: dict) -> str:
        return f"{reverse(f'{self.admin_site.name}:visual_recs_rule_{view}')}?{urlencode(query)}"

    @staticmethod
    def _visual_recs_parts(parts: dict[str, float]) -> str:
        """Each part's distance, one per line, when there are several (one part is the distance itself)."""
        if len(parts) < 2:
            return ""
        return format_html_join("", "<br><small>{}: {}</small>", ((name, f"{value:.2f}") for name, value in parts.items()))

    @staticmethod
    def _visual_recs_image(image_url: str | None) -> str:
        if image_url is None:
            return ""
        return format_html('<img src="{}" alt="" width="72" height="96" loading="lazy" style="object-fit:contain">', image_url)

    def _visual_recs_admin_url(self, obj: models.Model) -> str:
        meta = obj._meta
        try:
            return reverse(
                f"{self.admin_site.name}:{meta.app_label}_{meta.model_name}_change", args=[quote(obj.pk)]
            )
        except NoReverseMatch:
            return "#"


@admin.register(FeatureVector)
class FeatureVectorAdmin(admin.ModelAdmin):
    """Read-only: rows are written by indexing; the reindex action on the products redoes them."""

    list_display = ("object_id", "content_type", "status", "partition", "model_id", "updated_at", "short_error")
    list_filter = ("status", "content_type", "partition")
    list_select_related = ("content_type",)
    search_fields = ("object_id", "error")
    # Everything but the vector itself (8 KB of float32 bytes: nothing to read there).
    fields = (
        "content_type", "object_id", "partition", "listed", "status", "error", "attempts",
        "model_id", "dims", "image_sha256", "created_at", "updated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return super().get_queryset(request).defer("vector")

    @admin.display(description=_("error"), ordering="error")
    def short_error(self, obj: FeatureVector) -> str:
        return Truncator(obj.error).chars(80)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: FeatureVector | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: FeatureVector | None = None) -> bool:
        return False


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    """Merchandising rules: the registered model, the kind, the scope and what it acts on, checked by ``RuleForm``.

    The list names each rule's product and item by title, read in one query per model for the
    page (``forms.label_rules``); a product deleted since reads "deleted (id X)".
    """

    form = forms.RuleForm
    list_display = ("kind", "product", "items", "scope", "active", "note")
    list_filter = ("kind", "active")
    list_select_related = ("content_type",)
    # Ids exactly (a search for 12 is not one for 112), the note by its words.
    search_fields = ("=source_id", "=target_id", "note")
    fieldsets = (
        (None, {"fields": ("content_type", "kind", "active", "note")}),
        (_("Scope"), {"fields": ("source_id", "partition")}),
        (_("What it does"), {"fields": ("target_id", "position", "field", "value", "within_percent", "strength")}),
    )

    def get_changelist_instance(self, request: HttpRequest):
        changelist = super().get_changelist_instance(request)
        forms.label_rules(changelist.result_list)
        return changelist

    def save_model(self, request: HttpRequest, obj: Rule, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        for warning in form.warnings():
            self.message_user(request, warning, messages.WARNING)

    @admin.display(description=_("product"), ordering="source_id")
    def product(self, rule: Rule) -> str:
        return forms.labelled(rule, "source") or "—"

    @admin.display(description=_("items"))
    def items(self, rule: Rule) -> str:
        return forms.describe_items(rule)

    @admin.display(description=_("scope"))
    def scope(self, rule: Rule) -> str:
        return forms.describe_scope(rule)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """Read-only: events come from shoppers' browsers only; the report sums them up.

    The report ("Recommendation performance") is linked from the change list and needs the
    ``visual_recs.view_event`` permission, as the list does.
    """

    list_display = ("created_at", "kind", "source_id", "target_id", "position", "origin", "partition", "rule_id", "arm")
    list_filter = ("kind", "origin", "arm", "created_at")
    list_select_related = ("content_type",)
    search_fields = ("source_id", "target_id")
    date_hierarchy = "created_at"
    change_list_template = "admin/visual_recs/event/change_list.html"
    report_template = "admin/visual_recs/event/report.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False  # the sweep deletes them after EVENT_RETENTION_DAYS

    def get_urls(self) -> list:
        report = self.admin_site.admin_view(self.report_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_report"
        return [path("report/", report, name=name), *super().get_urls()]

    def report_view(self, request: HttpRequest) -> HttpResponse:
        """Click-through by position (a chart), partition, origin and rule, and the A/B test's arms."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        days = reports.period(request.GET.get("days"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Recommendation performance"),
            "report": reports.build(days),
            "periods": reports.PERIODS,
        }
        return TemplateResponse(request, self.report_template, context)
