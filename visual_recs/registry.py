"""Which host models are indexed, and how to read their photo, partition and "shown" filter.

Built from ``VISUAL_RECS["MODELS"]`` on each call (a few dict look-ups), so it always
matches the live settings; resolving a model needs the app registry to be ready.

A model's photo is a field of its own (``image_field``) or whatever a ``photo`` hook returns
(a shop that keeps photos in a related model); every reader of a photo goes through
``IndexedModel.image_of``/``with_photo``, never the field name, so both work everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models.fields.files import FieldFile
from django.utils.module_loading import import_string

from .conf import app_settings
from .exceptions import NotRegistered


#: The entry's keys that name a callable (a dotted path, or the callable itself).
HOOKS = ("photo", "with_photo", "shown", "dependants", "partition")


@dataclass(frozen=True)
class PhotoModel:
    """A related model holding a registered model's photos: its saves and deletes re-index ``owner``."""

    model: type[models.Model]
    #: The name of its foreign key to the registered model.
    owner: str

    def owner_pk(self, photo_row: models.Model) -> Any:
        """The primary key of the object ``photo_row`` belongs to (read from the row, no query)."""
        return getattr(photo_row, self.model._meta.get_field(self.owner).attname)


@dataclass(frozen=True)
class IndexedModel:
    """One entry of ``VISUAL_RECS["MODELS"]``, resolved to its model class and its hooks."""

    key: str
    model: type[models.Model]
    #: The model's own file field holding the photo; None when ``photo`` finds it.
    image_field: str | None = "image"
    partition_field: str | None = None
    filter: dict[str, Any] = field(default_factory=dict)
    #: ``photo(obj) -> FieldFile | None``: the photo of an object, for photos kept elsewhere.
    photo: Callable[[models.Model], FieldFile | None] | None = None
    #: ``with_photo(queryset) -> queryset``: those of ``queryset`` that have a photo.
    with_photo_hook: Callable[[models.QuerySet], models.QuerySet] | None = None
    #: ``shown(queryset) -> queryset``: the shop's own "may be shown", before ``filter``.
    shown_hook: Callable[[models.QuerySet], models.QuerySet] | None = None
    #: ``dependants(obj) -> iterable of objects`` whose photo follows ``obj``'s (re-indexed with it).
    dependants_hook: Callable[[models.Model], Iterable[models.Model]] | None = None
    #: ``partition(obj) -> str | None``: the partition of an object, when no field of its own holds it.
    partition_hook: Callable[[models.Model], Any] | None = None
    #: Related models whose rows are this model's photos.
    photo_models: tuple[PhotoModel, ...] = ()
    #: ``prefetch_related`` lookups for the recommended objects a page shows, so a ``photo``
    #: hook reading related rows costs one query per lookup, not one per card.
    prefetch: tuple[str, ...] = ()
    #: Fields (or attributes, or methods) whose values ``visual_recs_fit`` learns from.
    learn_from: tuple[str, ...] = ()
    #: Each ``learn_from`` field's share of the learned space (1 each unless the setting is a dict).
    learn_weights: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.model._meta.label

    @property
    def content_type(self) -> ContentType:
        # ContentType's manager caches, so this costs a query once per process.
        return ContentType.objects.get_for_model(self.model, for_concrete_model=False)

    def collection(self, model_id: str) -> str:
        """The index collection of this model's vectors made by the extractor ``model_id``.

        Vectors of different extractors (or weights, or options) live in different collections,
        so they are never compared; the old collection is dropped once a reindex is done.
        """
        return f"{self.model._meta.label_lower}:{model_id}"

    def image_of(self, obj: models.Model) -> FieldFile | None:
        """The photo of ``obj`` (through the ``photo`` hook when there is one), or None when it has none."""
        image = self.photo(obj) if self.photo is not None else getattr(obj, self.image_field)
        return image if image else None

    def photo_names(self, pks: Iterable[Any]) -> dict[str, str]:
        """The stored name of each object's photo now, read again from the database, by ``str(pk)``.

        One query with an ``image_field``; with a ``photo`` hook, the objects are read again
        and the hook asked for each (what it costs is the hook's).
        """
        objects = self.all().filter(pk__in=list(pks))
        if self.photo is None:
            return {str(pk): name or "" for pk, name in objects.values_list("pk", self.image_field)}
        return {str(obj.pk): getattr(self.image_of(obj), "name", "") for obj in objects}

    def dependants_of(self, obj: models.Model) -> list[models.Model]:
        """The objects whose photo follows ``obj``'s (a variant showing its parent's), none without the hook."""
        return list(self.dependants_hook(obj)) if self.dependants_hook is not None else []

    def title_of(self, obj: models.Model) -> str:
        """What a card calls ``obj``: its ``title`` when the model has one, else ``str(obj)``."""
        title = getattr(obj, "title", None)
        if title is None or title == "" or callable(title):
            return str(obj)
        return str(title)

    def url_of(self, obj: models.Model) -> str | None:
        """``obj.get_absolute_url()`` (also set by ``ABSOLUTE_URL_OVERRIDES``), or None when there is none."""
        get_absolute_url = getattr(obj, "get_absolute_url", None)
        return get_absolute_url() if callable(get_absolute_url) else None

    def image_url_of(self, obj: models.Model) -> str | None:
        """The storage URL of the photo of ``obj``, or None when it has none."""
        image = self.image_of(obj)
        return image.url if image is not None else None

    @property
    def partitioned(self) -> bool:
        """Whether the catalog is split into partitions (by ``partition_field`` or a ``partition`` hook)."""
        return bool(self.partition_field) or self.partition_hook is not None

    def partition_of(self, obj: models.Model) -> str:
        """The partition value of ``obj`` as a string ("" when the catalog is one partition, or the value is missing)."""
        if self.partition_hook is not None:
            value = self.partition_hook(obj)
        elif self.partition_field:
            value = self.model._meta.get_field(self.partition_field).value_from_object(obj)
        else:
            return ""
        return "" if value is None else str(value)

    def in_partition(self, queryset: models.QuerySet, partition: str) -> models.QuerySet:
        """Those of ``queryset`` in ``partition``: a filter on ``partition_field``, or (with a hook) each object asked."""
        if self.partition_hook is None:
            return queryset.filter(**{self.partition_field: partition})
        return queryset.filter(pk__in=[obj.pk for obj in queryset.iterator() if self.partition_of(obj) == partition])

    def labels_of(self, obj: models.Model) -> dict[str, str]:
        """The ``learn_from`` labels of ``obj``, each as a string ("" when blank).

        A name is a field (its stored value, not a choice's label, as partitions are), or any
        attribute or method of the model (a method is called with no arguments).
        """
        labels = {}
        for name in self.learn_from:
            value = getattr(obj, name, None)
            if callable(value):
                value = value()
            labels[name] = "" if value is None else str(value).strip()
        return labels

    def all(self) -> models.QuerySet:
        """Every object of the model, shown or not."""
        return self.model._default_manager.all()

    def shown(self) -> models.QuerySet:
        """The objects that may be shown as recommendations now: the ``shown`` hook's, then ``filter``."""
        queryset = self.model._default_manager.all()
        if self.shown_hook is not None:
            queryset = self.shown_hook(queryset)
        return queryset.filter(**self.filter)

    def with_photo(self) -> models.QuerySet:
        """Objects that have a photo, and so should have a vector.

        With a ``photo`` hook and no ``with_photo`` hook, every object: the database cannot tell
        which have one, so indexing asks the hook and counts those without as "no photo".
        """
        if self.with_photo_hook is not None:
            return self.with_photo_hook(self.all())
        if self.photo is not None:
            return self.all()
        return self.all().exclude(**{self.image_field: ""}).exclude(**{f"{self.image_field}__isnull": True})


def hook(options: dict[str, Any], name: str) -> Callable | None:
    """The callable an entry names under ``name`` (a dotted path, or the callable itself), or None.

    Raises ImportError for a path that does not import (``visual_recs.E011`` reports it).
    """
    value = options.get(name)
    if value is None:
        return None
    return import_string(value) if isinstance(value, str) else value


def photo_models(options: dict[str, Any]) -> tuple[PhotoModel, ...]:
    """The entry's ``photo_models``, resolved to model classes (LookupError for a missing one)."""
    return tuple(
        PhotoModel(model=apps.get_model(entry["model"]), owner=entry["owner"])
        for entry in options.get("photo_models") or ()
    )


def _resolve(key: str, options: dict[str, Any]) -> IndexedModel:
    model = apps.get_model(options["model"])
    learn_from = options.get("learn_from") or ()  # names, or a dict of name -> weight
    photo = hook(options, "photo")
    return IndexedModel(
        key=key,
        model=model,
        image_field=options.get("image_field", None if photo else "image"),
        partition_field=options.get("partition_field"),
        filter=dict(options.get("filter") or {}),
        photo=photo,
        with_photo_hook=hook(options, "with_photo"),
        shown_hook=hook(options, "shown"),
        dependants_hook=hook(options, "dependants"),
        partition_hook=hook(options, "partition"),
        photo_models=photo_models(options),
        prefetch=tuple(options.get("prefetch") or ()),
        learn_from=tuple(learn_from),
        learn_weights={name: float(learn_from[name]) if isinstance(learn_from, dict) else 1.0 for name in learn_from},
    )


def indexed_models() -> dict[str, IndexedModel]:
    """Every registered model by key. Raises LookupError/ValueError/ImportError on a wrong model or hook path (see checks)."""
    return {key: _resolve(key, options) for key, options in app_settings.MODELS.items()}


def get(key: str) -> IndexedModel:
    """The registered model under ``key``; NotRegistered if there is none."""
    options = app_settings.MODELS.get(key)
    if options is None:
        raise NotRegistered(f"No model is registered under the key {key!r} in VISUAL_RECS['MODELS'].")
    return _resolve(key, options)


def for_model(model: type[models.Model] | models.Model) -> IndexedModel:
    """The registration of ``model`` (a class or an instance); NotRegistered if it is not indexed."""
    model_class = model if isinstance(model, type) else type(model)
    label = model_class._meta.label_lower
    for key, options in app_settings.MODELS.items():
        if options["model"].lower() == label:
            return _resolve(key, options)
    raise NotRegistered(f"{model_class._meta.label} is not registered in VISUAL_RECS['MODELS'].")


def for_content_type(app_label: str, model_name: str) -> IndexedModel:
    """The registration of the model ``app_label.model_name`` (the form tasks carry)."""
    return for_model(apps.get_model(app_label, model_name))
