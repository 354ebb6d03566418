"""Which host models are indexed, and how to read their photo, partition and "shown" set.

Built from ``VISUAL_RECS["MODELS"]`` (key -> a ``visual_recs.registration.ModelPhotos``
subclass, or its dotted path) on each call (a few look-ups), so it always matches the live
settings; resolving a model needs the app registry to be ready.

``IndexedModel`` is the one face the rest of the app sees of a registered model: it wraps the
shop's declaration and answers in the app's terms (the photo as a ``FieldFile`` or None, a
partition as a string). Every reader of a photo goes through ``IndexedModel.image_of``/
``with_photo``, never a field name, so a photo kept in another model works everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.fields.files import FieldFile
from django.utils.module_loading import import_string

from .conf import app_settings
from .exceptions import NotRegistered
from .registration import ModelPhotos, concrete_fields, entry_name, overrides


@dataclass(frozen=True)
class PhotoModel:
    """A related model holding a registered model's photos: its saves and deletes re-index ``owner``."""

    model: type[models.Model]
    #: The name of its foreign key to the registered model.
    owner: str

    def owner_pk(self, photo_row: models.Model) -> Any:
        """The primary key of the object ``photo_row`` belongs to (read from the row, no query)."""
        return getattr(photo_row, self.model._meta.get_field(self.owner).attname)


class IndexedModel:
    """One entry of ``VISUAL_RECS["MODELS"]``: the shop's declaration, resolved to its model class."""

    def __init__(self, key: str, declaration: ModelPhotos):
        self.key = key
        #: The shop's ``ModelPhotos`` instance; its options and methods answer everything below.
        self.declaration = declaration
        self.model: type[models.Model] = resolve_model(declaration.model)
        photo_hook = overrides(declaration, "photo")
        #: The model's own file field holding the photo; None when ``photo()`` finds it.
        self.image_field: str | None = None if photo_hook else declaration.photo_field
        #: ``photo(obj)``, when the declaration finds photos itself (else None: ``image_field``).
        self.photo: Callable[[models.Model], Any] | None = declaration.photo if photo_hook else None
        field = declaration.partition_field
        in_database = bool(field) and field in concrete_fields(self.model) and not overrides(declaration, "partition")
        #: The concrete field the partition is filtered by in the database; None when each object is asked.
        self.partition_field: str | None = field if in_database else None
        #: ``partition(obj)``, when no concrete field holds the partition (else None).
        self.partition_hook: Callable[[models.Model], Any] | None = (
            declaration.partition if (field or overrides(declaration, "partition")) and not in_database else None
        )
        self.photo_models: tuple[PhotoModel, ...] = tuple(
            PhotoModel(model=resolve_model(entry["model"]), owner=entry["owner"]) for entry in declaration.photo_models
        )
        self.prefetch: tuple[str, ...] = tuple(declaration.prefetch)
        entries = declaration.learn_from
        self._learn_from = {entry_name(entry): entry for entry in entries}
        #: The names of the ``learn_from`` entries ``visual_recs_fit`` learns from.
        self.learn_from: tuple[str, ...] = tuple(self._learn_from)
        #: Each ``learn_from`` entry's share of the learned space (1 each unless a dict gives them).
        self.learn_weights: dict[str, float] = {
            entry_name(entry): float(entries[entry]) if isinstance(entries, dict) else 1.0 for entry in entries
        }
        #: The DRF serializer of one object (a dotted path or a class), or None for the default.
        self.serializer: str | type | None = declaration.serializer

    def __repr__(self) -> str:
        return f"<IndexedModel {self.key!r}: {self.label} by {type(self.declaration).__qualname__}>"

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
        """The photo of ``obj`` (the declaration's ``photo()``), or None when it has none."""
        image = self.declaration.photo(obj)
        return image if image else None

    def photo_names(self, pks: Iterable[Any]) -> dict[str, str]:
        """The stored name of each object's photo now, read again from the database, by ``str(pk)``.

        One query with an ``image_field``; with a ``photo()`` of the declaration's own, the
        objects are read again and it is asked for each (what it costs is the shop's).
        """
        objects = self.all().filter(pk__in=list(pks))
        if self.photo is None:
            return {str(pk): name or "" for pk, name in objects.values_list("pk", self.image_field)}
        return {str(obj.pk): getattr(self.image_of(obj), "name", "") for obj in objects}

    def dependants_of(self, obj: models.Model) -> list[models.Model]:
        """The objects whose photo follows ``obj``'s (a variant showing its parent's)."""
        return list(self.declaration.dependants(obj))

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
        """Whether the catalog is split into partitions (by ``partition_field`` or ``partition()``)."""
        return self.partition_field is not None or self.partition_hook is not None

    def partition_of(self, obj: models.Model) -> str:
        """The partition value of ``obj`` as a string ("" when the catalog is one partition, or the value is missing)."""
        value = self.declaration.partition(obj)
        return "" if value is None else str(value)

    def in_partition(self, queryset: models.QuerySet, partition: str) -> models.QuerySet:
        """Those of ``queryset`` in ``partition``: a filter on ``partition_field``, or (otherwise) each object asked."""
        if self.partition_hook is None:
            return queryset.filter(**{self.partition_field: partition})
        return queryset.filter(pk__in=[obj.pk for obj in queryset.iterator() if self.partition_of(obj) == partition])

    def labels_of(self, obj: models.Model) -> dict[str, str]:
        """The ``learn_from`` labels of ``obj`` by entry name, each as a string ("" when blank)."""
        labels = {}
        for name, entry in self._learn_from.items():
            value = self.declaration.value_of(obj, entry)
            labels[name] = "" if value is None else str(value).strip()
        return labels

    def pk_from(self, object_id: str) -> Any:
        """The primary key ``object_id`` (text, as the app's tables keep ids) names; None when it cannot be one.

        "abc" for an integer key, or an integer beyond the database's range (its validators say
        so): one such value in a ``pk__in`` would fail, or make the whole query find nothing.
        """
        field = self.model._meta.pk
        try:
            pk = field.to_python(object_id)
            field.run_validators(pk)
        except (ValidationError, ValueError, TypeError):
            return None
        if isinstance(pk, int) and not -(2**63) <= pk < 2**63:
            return None  # beyond every database's integers (Django 4.2 has no such validator on SQLite)
        return pk

    def value_of(self, obj: models.Model, name: Any) -> Any:
        """What ``obj`` holds under ``name``, read as the declaration reads its options (``value_of``)."""
        return self.declaration.value_of(obj, name)

    def group_of(self, obj: models.Model) -> str:
        """The variant group of ``obj`` as a string (its declared ``group()``, else its own pk)."""
        value = self.declaration.group(obj)
        return f"pk:{obj.pk}" if value is None or value == "" else str(value)

    def available(self, queryset: models.QuerySet) -> models.QuerySet:
        """Those of ``queryset`` that may be bought now (the declaration's ``available()``, asked at read time)."""
        return self.declaration.available(queryset)

    def shown_now(self) -> models.QuerySet:
        """What a strip may show on this page view: shown, and available now."""
        return self.available(self.shown())

    def all(self) -> models.QuerySet:
        """Every object of the model, shown or not."""
        return self.model._default_manager.all()

    def shown(self) -> models.QuerySet:
        """The objects that may be shown as recommendations now (the declaration's ``shown()``)."""
        return self.declaration.shown(self.model._default_manager.all())

    def with_photo(self) -> models.QuerySet:
        """Objects that have a photo, and so should have a vector (the declaration's ``with_photo()``)."""
        return self.declaration.with_photo(self.all())


def resolve_model(model: str | type) -> type[models.Model]:
    """The model class of a declaration's ``model`` ("app_label.ModelName" or the class); LookupError/ValueError if none."""
    if isinstance(model, type) and issubclass(model, models.Model):
        return model
    if not isinstance(model, str):
        raise ValueError(f"{model!r} is not 'app_label.ModelName' or a model class")
    return apps.get_model(model)


def declaration_class(key: str, value: Any) -> type[ModelPhotos]:
    """The ``ModelPhotos`` subclass registered under ``key`` (``value``: the class or its dotted path).

    Raises ImportError for a path that does not import, TypeError for anything else that is
    not a subclass (the 0.x dict form included); ``visual_recs.E015`` reports both.
    """
    declaration = import_string(value) if isinstance(value, str) else value
    if not (isinstance(declaration, type) and issubclass(declaration, ModelPhotos)):
        raise TypeError(
            f"VISUAL_RECS['MODELS'][{key!r}] must be a subclass of visual_recs.registration.ModelPhotos "
            f"(or its dotted path), not {value!r}; `manage.py check` shows how to write one."
        )
    return declaration


def _resolve(key: str, value: Any) -> IndexedModel:
    return IndexedModel(key, declaration_class(key, value)())


def indexed_models() -> dict[str, IndexedModel]:
    """Every registered model by key. Raises LookupError/ValueError/ImportError/TypeError on a wrong entry (see checks)."""
    return {key: _resolve(key, value) for key, value in app_settings.MODELS.items()}


def get(key: str) -> IndexedModel:
    """The registered model under ``key``; NotRegistered if there is none."""
    value = app_settings.MODELS.get(key)
    if value is None:
        raise NotRegistered(f"No model is registered under the key {key!r} in VISUAL_RECS['MODELS'].")
    return _resolve(key, value)


def for_model(model: type[models.Model] | models.Model) -> IndexedModel:
    """The registration of ``model`` (a class or an instance); NotRegistered if it is not indexed."""
    model_class = model if isinstance(model, type) else type(model)
    label = model_class._meta.label_lower
    for key, value in app_settings.MODELS.items():
        declaration = declaration_class(key, value)
        declared = declaration.model
        # Compared by label, not resolved: only the matching entry is built (a save or a page
        # view asks this), and another entry naming a missing model does not break this one.
        if declared is model_class or (isinstance(declared, str) and declared.lower() == label):
            return IndexedModel(key, declaration())
    raise NotRegistered(f"{model_class._meta.label} is not registered in VISUAL_RECS['MODELS'].")


def for_content_type(app_label: str, model_name: str) -> IndexedModel:
    """The registration of the model ``app_label.model_name`` (the form tasks carry)."""
    return for_model(apps.get_model(app_label, model_name))
