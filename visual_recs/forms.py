"""The staff side of merchandising rules: the one form that edits them, and how a list names them.

The Django admin (``RuleAdmin``) and Oscar's dashboard (``visual_recs.contrib.oscar.views``)
both edit rules with ``RuleForm``, so a rule is checked the same way wherever it is made. A
rule names products by id (text, as every table here: a shop's keys are not always integers);
the form checks each id against the registered model and stores it as the model writes it
(``"012"`` becomes ``"12"``), so a typo is a message on its field, never a rule that silently
matches nothing. What each kind does is the ``Rule`` docstring's.

Lists of rules name the products they point at by title: ``label_rules`` reads the titles of a
page of rules in one query per model, not one per row, and says "deleted (id X)" for a product
gone since, so a rule outliving its product still lists and edits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.html import format_html
from django.utils.translation import gettext

from . import registry
from .conf import app_settings
from .exceptions import ImageError
from .images import image_format, read_image_bytes
from .indexing.merchandising import MAX_STRENGTH
from .models import FeatureVector, Rule
from .registry import IndexedModel
from .templatetags.visual_recs import DEFAULT_LIMIT

#: The last place a pin may take: beyond the longest strip a page would ask for.
PIN_POSITIONS = 50
#: How many of a model's partitions the message about an unknown one names.
PARTITIONS_NAMED = 20

_ID_FIELDS = ("source_id", "target_id")
#: What each kind reads; the form empties the rest, so a stored rule holds only what it does.
_USED = {
    Rule.Kind.PIN: {"target_id", "position"},
    Rule.Kind.EXCLUDE: {"target_id", "field", "value"},
    Rule.Kind.BOOST: {"field", "within_percent", "strength"},
}
_KIND_FIELDS = ("target_id", "field", "value", "position", "within_percent", "strength")


class PhotoField(forms.FileField):
    """A product photo upload, sniffed by the app's own loader (:func:`visual_recs.images.image_format`).

    Django's ``forms.ImageField`` opens an upload with every format Pillow registers (EPS too,
    which the app refuses); this field opens it only with the formats the worker decodes, so a
    photo staff upload is refused here, with the reason, rather than failing its vector later.
    """

    def to_python(self, data):
        upload = super().to_python(data)
        if upload is None:
            return None
        try:
            content = read_image_bytes(upload, max_bytes=app_settings.MAX_IMAGE_BYTES)
        except ImageError as exc:
            raise ValidationError(gettext("This photo cannot be used: %(reason)s."), params={"reason": exc}) from exc
        if image_format(content) is None:
            raise ValidationError(
                gettext("This photo cannot be used: not an image file, or a format the shop does not read (such as EPS).")
            )
        if hasattr(upload, "seek") and callable(upload.seek):
            upload.seek(0)  # read again when the model saves it
        return upload


def registrations() -> dict[int, IndexedModel]:
    """Every registered model that resolves, by its content type's id.

    An entry that does not resolve (a typo, a missing app) is left out here: the system checks
    report it, and the other models' rules stay editable meanwhile.
    """
    found = {}
    for key in app_settings.MODELS:
        try:
            indexed_model = registry.get(key)
        except (LookupError, ValueError, ImportError, TypeError):
            continue
        found[indexed_model.content_type.pk] = indexed_model
    return found


def existing_objects(indexed_model: IndexedModel, object_ids: Iterable[str]) -> dict[str, Any]:
    """The objects of ``object_ids`` that exist, by id as given: ``{object_id: the object}``, in one query."""
    pks = {object_id: indexed_model.pk_from(object_id) for object_id in object_ids}
    wanted = {pk for pk in pks.values() if pk is not None}
    if not wanted:
        return {}
    found = {obj.pk: obj for obj in indexed_model.all().filter(pk__in=wanted)}
    return {object_id: found[pk] for object_id, pk in pks.items() if pk in found}


def deleted_label(object_id: str) -> str:
    return gettext("deleted (id %(id)s)") % {"id": object_id}


def label_rules(rules: Iterable[Rule]) -> None:
    """Set ``source_label`` and ``target_label`` on each rule: the titles of its product and item.

    One query per model among the rules (a page of a list is usually one): a title, "deleted
    (id X)" for an id no object has now, the bare id for a model no longer registered, and ""
    for an empty id.
    """
    rules = list(rules)
    models_by_id = registrations()
    ids = defaultdict(set)
    for rule in rules:
        ids[rule.content_type_id].update(getattr(rule, name) for name in _ID_FIELDS if getattr(rule, name))
    titles: dict[int, dict[str, str]] = {}
    for content_type_id, object_ids in ids.items():
        indexed_model = models_by_id.get(content_type_id)
        if indexed_model is not None:
            found = existing_objects(indexed_model, object_ids)
            titles[content_type_id] = {object_id: indexed_model.title_of(obj) for object_id, obj in found.items()}
    for rule in rules:
        for name in _ID_FIELDS:
            object_id = getattr(rule, name)
            known = titles.get(rule.content_type_id)
            if not object_id:
                label = ""
            elif known is None:
                label = gettext("id %(id)s") % {"id": object_id}
            else:
                label = known.get(object_id) or deleted_label(object_id)
            setattr(rule, name.replace("_id", "_label"), label)


def labelled(rule: Rule, name: str) -> str:
    """``rule.source_label`` or ``target_label`` (``name``: "source" or "target"), read for this rule alone if not set yet."""
    attribute = f"{name}_label"
    if not hasattr(rule, attribute):
        label_rules([rule])
    return getattr(rule, attribute)


def describe_scope(rule: Rule) -> str:
    """Which strips the rule changes: one product's, one partition's, or every product's."""
    if rule.source_id:
        return gettext("this product only")
    if rule.partition:
        return gettext("partition “%(partition)s”") % {"partition": rule.partition}
    return gettext("every product")


def describe_items(rule: Rule) -> str:
    """What the rule acts on: its item, or the items a field picks."""
    if rule.kind == Rule.Kind.PIN:
        return gettext("%(item)s at %(position)s") % {"item": labelled(rule, "target"), "position": rule.position}
    if rule.kind == Rule.Kind.EXCLUDE:
        if rule.target_id:
            return labelled(rule, "target")
        return gettext("items whose %(field)s is “%(value)s”") % {"field": rule.field, "value": rule.value}
    if rule.within_percent is not None:
        return gettext("items whose %(field)s is within %(percent)s%% of the product's") % {
            "field": rule.field, "percent": f"{rule.within_percent:g}",
        }
    return gettext("items with the product's %(field)s") % {"field": rule.field}


def known_partitions(indexed_model: IndexedModel) -> list[str]:
    """The partitions the model's vectors are in, at most ``PARTITIONS_NAMED`` (an index-only read)."""
    rows = FeatureVector.objects.filter(content_type=indexed_model.content_type).order_by("partition")
    return list(rows.values_list("partition", flat=True).distinct()[:PARTITIONS_NAMED])


def pin_warning(position: int | None) -> str:
    """What staff should know of a pin at ``position`` ("" when every default strip shows it)."""
    if position is None or position <= DEFAULT_LIMIT:
        return ""
    return gettext(
        "Position %(position)s is beyond the %(limit)s items a strip shows by default: the pin shows only "
        "in strips of %(position)s or more ({%% similar_items product limit=%(position)s %%}, the API's limit)."
    ) % {"position": position, "limit": DEFAULT_LIMIT}


class RuleForm(forms.ModelForm):
    """A rule, checked against the registered model it is for: messages attached to the field at fault.

    ``content_type`` fixes the model (Oscar's dashboard: ``catalogue.Product``) and leaves its
    field out; otherwise staff choose among the registered models. Ids already stored are not
    checked again unless changed, so a rule whose product was deleted since still saves (to
    deactivate it, or change its note).
    """

    class Meta:
        model = Rule
        fields = [
            "content_type", "kind", "active", "source_id", "partition", "target_id", "position",
            "field", "value", "within_percent", "strength", "note",
        ]

    def __init__(self, *args, content_type: ContentType | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.registrations = registrations()
        if content_type is not None:
            self.instance.content_type = content_type
            self.fields.pop("content_type", None)
        elif "content_type" in self.fields:
            self._limit_content_types()
        # Only a boost reads it, and empty is its default: a pin is never refused over it.
        self.fields["strength"].required = False
        self.fields["position"].help_text = gettext(
            "Pin: the place in the strip, from 1 to %(most)s. Strips show %(limit)s items unless the page asks for "
            "more: a pin further down shows only in strips that long."
        ) % {"most": PIN_POSITIONS, "limit": DEFAULT_LIMIT}
        self._name_current_products()

    # --- the choices and what the page shows ---

    def _limit_content_types(self) -> None:
        field = self.fields["content_type"]
        ids = set(self.registrations)
        if self.instance.content_type_id:
            ids.add(self.instance.content_type_id)  # a model unregistered since: shown, refused on save
        field.queryset = ContentType.objects.filter(pk__in=ids).order_by("app_label", "model")
        field.label_from_instance = self._content_type_label

    def _content_type_label(self, content_type: ContentType) -> str:
        indexed_model = self.registrations.get(content_type.pk)
        if indexed_model is None:
            return gettext("%(model)s (no longer registered)") % {"model": f"{content_type.app_label}.{content_type.model}"}
        return f"{indexed_model.model._meta.verbose_name} ({indexed_model.key})"

    def _initial_model(self) -> IndexedModel | None:
        if self.instance.content_type_id:
            return self.registrations.get(self.instance.content_type_id)
        value = self.initial.get("content_type")  # the admin's ?content_type=<id>, any text
        try:
            return self.registrations.get(int(getattr(value, "pk", value)))
        except (TypeError, ValueError):
            return None

    def _name_current_products(self) -> None:
        """Under the product and item fields, what their ids name now (a title, or "deleted (id X)")."""
        indexed_model = self._initial_model()
        if indexed_model is None:
            return
        object_ids = [str(self.initial.get(name) or "") for name in _ID_FIELDS]
        found = existing_objects(indexed_model, [object_id for object_id in object_ids if object_id])
        for name, object_id in zip(_ID_FIELDS, object_ids):
            if object_id:
                now = indexed_model.title_of(found[object_id]) if object_id in found else deleted_label(object_id)
                # Both the admin and Oscar render help text unescaped: the title is escaped here.
                self.fields[name].help_text = format_html("{}<br>{} {}", self.fields[name].help_text, gettext("Now:"), now)

    # --- checks ---

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        indexed_model = self._indexed_model(data)
        kind = data.get("kind")
        if indexed_model is None or kind not in _USED:
            return data
        self._check_kind(kind, data)
        self._check_ids(indexed_model, kind, data)
        self._check_scope(indexed_model, data)
        if data.get("field") and (problem := indexed_model.declaration.name_problem(indexed_model.model, data["field"])):
            self.add_error("field", problem)
        self._keep_only_used(kind, data)
        return data

    def _indexed_model(self, data: dict[str, Any]) -> IndexedModel | None:
        content_type = data.get("content_type") if "content_type" in self.fields else self.instance.content_type
        if content_type is None:
            return None  # its field says why
        indexed_model = self.registrations.get(content_type.pk)
        if indexed_model is None:
            message = gettext("%(model)s is not registered in VISUAL_RECS['MODELS']: its rules cannot change.") % {
                "model": f"{content_type.app_label}.{content_type.model}",
            }
            self.add_error("content_type" if "content_type" in self.fields else None, message)
        return indexed_model

    def _check_kind(self, kind: str, data: dict[str, Any]) -> None:
        {Rule.Kind.PIN: self._check_pin, Rule.Kind.EXCLUDE: self._check_exclude, Rule.Kind.BOOST: self._check_boost}[kind](data)

    def _check_pin(self, data: dict[str, Any]) -> None:
        if not data.get("target_id"):
            self.add_error("target_id", gettext("A pin needs the item it puts in the strip."))
        position = data.get("position")
        if position is None:
            self.add_error("position", gettext("A pin needs a position, from 1 to %(most)s.") % {"most": PIN_POSITIONS})
        elif not 1 <= position <= PIN_POSITIONS:
            self.add_error("position", gettext("A position is from 1 to %(most)s.") % {"most": PIN_POSITIONS})

    def _check_exclude(self, data: dict[str, Any]) -> None:
        target, field, value = data.get("target_id"), data.get("field"), data.get("value")
        if target and (field or value):
            self.add_error("field", gettext("Exclude one item, or the items whose field reads a value: not both."))
        elif not target and not field and not value:
            self.add_error("target_id", gettext("An exclude needs an item, or a field and the value to leave out."))
        elif not target and not value:
            self.add_error("value", gettext("Give the value of “%(field)s” to leave out.") % {"field": field})
        elif not target and not field:
            self.add_error("field", gettext("Give the field that reads “%(value)s”.") % {"value": value})

    def _check_boost(self, data: dict[str, Any]) -> None:
        if not data.get("field"):
            self.add_error(
                "field",
                gettext("A boost needs the field items share with the product (a brand) or a number near its own (a price)."),
            )
        strength = data.get("strength")
        if strength is None:
            data["strength"] = _empty(Rule._meta.get_field("strength"))  # left empty: the usual strength
        elif not 0 < strength <= MAX_STRENGTH:
            self.add_error("strength", gettext("The strength is above 0 and at most %(most)s.") % {"most": MAX_STRENGTH})
        percent = data.get("within_percent")
        if percent is not None and percent <= 0:
            self.add_error("within_percent", gettext("The band is above 0 percent (leave it empty for equal values)."))

    def _check_ids(self, indexed_model: IndexedModel, kind: str, data: dict[str, Any]) -> None:
        """Each id names an object of the model (stored as the model writes it); a product never pins or excludes itself."""
        to_check = [
            name for name in _ID_FIELDS
            if data.get(name) and (name in _USED[kind] or name == "source_id") and self._changed(name)
        ]
        found = existing_objects(indexed_model, [data[name] for name in to_check])
        for name in to_check:
            obj = found.get(data[name])
            if obj is None:
                model = indexed_model.model._meta.verbose_name
                self.add_error(name, gettext("No %(model)s with the id %(id)s.") % {"model": model, "id": data[name]})
            else:
                data[name] = str(obj.pk)
        source, target = data.get("source_id"), data.get("target_id")
        if source and source == target and "target_id" in _USED[kind] and "target_id" not in self.errors:
            self.add_error("target_id", gettext("A product cannot pin or exclude itself."))

    def _check_scope(self, indexed_model: IndexedModel, data: dict[str, Any]) -> None:
        """A partition only with no product, and only one the catalog has (its vectors' partitions).

        The vectors' partitions, rather than every product's ``partition_of``: one indexed
        query however the partition is declared, and they are what a strip is read by (a
        partition no vector is in has no strips to change).
        """
        partition = data.get("partition")
        if not partition or not self._changed("partition"):
            return
        if data.get("source_id"):
            self.add_error("partition", gettext("A rule for one product applies in its partition: leave the partition empty."))
        elif not indexed_model.partitioned:
            self.add_error("partition", gettext("The %(model)s catalog has no partitions: leave it empty.") % {
                "model": indexed_model.model._meta.verbose_name,
            })
        elif not FeatureVector.objects.filter(content_type=indexed_model.content_type, partition=partition).exists():
            known = ", ".join(f"“{name}”" for name in known_partitions(indexed_model) if name)
            self.add_error(
                "partition",
                gettext("No indexed %(model)s is in the partition “%(partition)s”. The partitions: %(known)s.")
                % {"model": indexed_model.model._meta.verbose_name, "partition": partition, "known": known or gettext("none yet")},
            )

    def _changed(self, name: str) -> bool:
        """Whether ``name`` is new or changed: a stored value is not checked again (its product may be gone since)."""
        return self.instance._state.adding or name in self.changed_data

    def _keep_only_used(self, kind: str, data: dict[str, Any]) -> None:
        """Empty what this kind does not read (a pin's leftover field), so the stored rule says only what it does."""
        for name in _KIND_FIELDS:
            if name not in _USED[kind] and name in data:
                data[name] = _empty(Rule._meta.get_field(name))

    def warnings(self) -> list[str]:
        """What staff should know of a valid rule before relying on it (a pin beyond the default strip)."""
        if self.cleaned_data.get("kind") != Rule.Kind.PIN:
            return []
        warning = pin_warning(self.cleaned_data.get("position"))
        return [warning] if warning else []


def _empty(field: models.Field) -> Any:
    """A model field's value when unused: its default, else None or ""."""
    if field.has_default():
        return field.get_default()
    return None if field.null else ""
