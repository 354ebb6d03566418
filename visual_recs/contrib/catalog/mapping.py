"""How the columns of a catalog CSV map onto a model: which column identifies a row's object,
which names its photo, and which fill which fields.

The sample fashion dataset's layout onto the bundled Product is the default
(:func:`bundled_mapping`); a shop maps its own file onto its own model with :meth:`Mapping.build`
(the import command's ``--model``, ``--id-column``, ``--image-column`` and ``--column`` options).
Everything is checked before the first row is read, so a wrong name stops the import with a
message naming it instead of skipping every row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models
from django.db.models.fields import AutoFieldMixin

from visual_recs import registry
from visual_recs.exceptions import NotRegistered

from .exceptions import CatalogError

BUNDLED_MODEL = "visual_recs_catalog.Product"
#: The sample dataset's columns (``fashion.csv``) for the bundled Product's fields: field -> column.
SAMPLE_COLUMNS: dict[str, str] = {
    "title": "ProductTitle",
    "gender": "Gender",
    "category": "Category",
    "subcategory": "SubCategory",
    "product_type": "ProductType",
    "colour": "Colour",
    "usage": "Usage",
}
SAMPLE_ID_COLUMN = "ProductId"
SAMPLE_IMAGE_COLUMN = "Image"


class InvalidValue(ValueError):
    """A row's value cannot be stored in its field; ``str()`` says why, naming the column."""


@dataclass(frozen=True)
class Mapping:
    """A CSV layout resolved against a model: its fields, checked to exist and to fit the role given."""

    model: type[models.Model]
    #: The column whose value finds a row's object, in ``id_field`` (the primary key, or a unique field).
    id_column: str
    id_field: models.Field
    #: The column naming the photo's file, relative to the images directory; stored in ``image_field``.
    image_column: str
    image_field: models.FileField
    #: Model field -> CSV column, for the fields the import keeps in step with the file.
    columns: dict[str, str]

    @classmethod
    def build(
        cls,
        model: str,
        *,
        id_column: str,
        image_column: str,
        columns: dict[str, str],
        id_field: str | None = None,
        image_field: str | None = None,
    ) -> Mapping:
        """The mapping of these names onto ``model`` ("app_label.ModelName"); CatalogError naming what is wrong.

        ``id_field`` defaults to the primary key; ``image_field`` to the ``photo_field`` of the
        model's registered ``ModelPhotos`` class, else ``image``.
        """
        try:
            model_class = apps.get_model(model)
        except (LookupError, ValueError) as exc:
            raise CatalogError(f"{model!r} is not an installed model (write 'app_label.ModelName').") from exc
        label = model_class._meta.label
        for option, column in (("id column", id_column), ("image column", image_column), *columns.items()):
            if not column:
                raise CatalogError(f"No CSV column is given for the {option} of {label}.")
        key = _field(model_class, id_field) if id_field else model_class._meta.pk
        if not (key.primary_key or key.unique):
            raise CatalogError(f"{label}.{key.name} is not unique: a row's {id_column} could match several objects.")
        photo = _field(model_class, image_field or _registered_image_field(model_class))
        if not isinstance(photo, models.FileField):
            raise CatalogError(f"{label}.{photo.name} is not a FileField/ImageField: it cannot hold the photo.")
        for name in columns:
            field = _field(model_class, name)
            if field in (key, photo) or field.is_relation or not field.editable:
                raise CatalogError(f"{label}.{name} cannot be set from a column (it is the id, the photo, a relation, or not editable).")
        return cls(model_class, id_column, key, image_column, photo, dict(columns))

    @property
    def required_columns(self) -> frozenset[str]:
        return frozenset({self.id_column, self.image_column, *self.columns.values()})

    def key_of(self, values: dict[str, str]) -> Any:
        """The row's identity as ``id_field`` stores it; InvalidValue when it is empty or malformed."""
        raw = self._cell(values, self.id_column)
        if not raw:
            raise InvalidValue(f"the {self.id_column} column is empty")
        if isinstance(self.id_field, (AutoFieldMixin, models.IntegerField)):
            # A whole number > 0: what an auto-incremented key can hold (and no "1.0" or "-3" aliases).
            if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
                raise InvalidValue(f"{self.id_column} {raw!r} is not a positive whole number")
            return int(raw)
        try:
            return self.id_field.to_python(raw)
        except ValidationError as exc:
            raise InvalidValue(f"{self.id_column} {raw!r}: {' '.join(exc.messages)}") from exc

    def values_of(self, values: dict[str, str]) -> dict[str, Any]:
        """The mapped fields' values as the model stores them; InvalidValue naming the column otherwise."""
        converted = {}
        for name, column in self.columns.items():
            raw = self._cell(values, column)
            field = self.model._meta.get_field(name)
            if raw == "" and not field.empty_strings_allowed:
                converted[name] = None  # an empty cell of a number or a date: no value (validation says if one is needed)
                continue
            try:
                converted[name] = field.to_python(raw)
            except ValidationError as exc:
                raise InvalidValue(f"{column} {raw!r}: {' '.join(exc.messages)}") from exc
        return converted

    def photo_name_of(self, values: dict[str, str]) -> str:
        return self._cell(values, self.image_column)

    @staticmethod
    def _cell(values: dict[str, str], column: str) -> str:
        """The row's value in ``column``, stripped; InvalidValue if it holds a NUL character, which no
        field or file name can take (PostgreSQL refuses it in text, the OS in a path)."""
        raw = (values.get(column) or "").strip()
        if "\x00" in raw:
            raise InvalidValue(f"the {column} column contains a NUL character")
        return raw


def bundled_mapping(
    *,
    id_column: str | None = None,
    image_column: str | None = None,
    columns: dict[str, str] | None = None,
    id_field: str | None = None,
    image_field: str | None = None,
) -> Mapping:
    """The sample dataset's layout onto the bundled Product, with any part given replaced."""
    return Mapping.build(
        BUNDLED_MODEL,
        id_column=id_column or SAMPLE_ID_COLUMN,
        image_column=image_column or SAMPLE_IMAGE_COLUMN,
        columns=columns or SAMPLE_COLUMNS,
        id_field=id_field,
        image_field=image_field,
    )


def parse_columns(pairs: Iterable[str]) -> dict[str, str]:
    """``["title=productDisplayName", ...]`` (field=column, as the command takes them) as a dict."""
    columns = {}
    for pair in pairs:
        name, sep, column = pair.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise CatalogError(f"--column {pair!r} must read FIELD=COLUMN, e.g. title=productDisplayName.")
        if name.strip() in columns:
            raise CatalogError(f"The field {name.strip()!r} is given two columns.")
        columns[name.strip()] = column.strip()
    return columns


def _field(model: type[models.Model], name: str) -> models.Field:
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist as exc:
        raise CatalogError(f"{model._meta.label} has no field {name!r}.") from exc
    if not field.concrete:
        raise CatalogError(f"{model._meta.label}.{name} is not a column of its table.")
    return field


def _registered_image_field(model: type[models.Model]) -> str:
    try:
        return registry.for_model(model).image_field or "image"
    except NotRegistered:
        return "image"
