"""Migrations and system checks."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from django.core import checks

from visual_recs.checks import check_backends, check_models, check_queue
from visual_recs.contrib.catalog import CatalogProducts
from visual_recs.contrib.catalog.models import Product
from visual_recs.registration import ModelPhotos


@pytest.mark.django_db
def test_migrations_are_complete():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def ids(messages):
    return sorted(m.id for m in messages)


def test_the_configured_settings_pass_the_checks(resnet_weights):
    assert check_models() == [] and check_backends() == []


def declaration(**options) -> type[ModelPhotos]:
    """A subclass of the bundled Product's declaration with ``options`` set on it."""
    return type("Products", (CatalogProducts,), options)


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"model": "shop.Missing"}, ["visual_recs.E001"]),
        ({"model": None}, ["visual_recs.E001"]),
        ({"photo_field": "photo"}, ["visual_recs.E002"]),
        ({"photo_field": "title"}, ["visual_recs.E002"]),
        ({"partition_field": "sex"}, ["visual_recs.E003"]),
        ({"shown": lambda self, queryset: queryset.filter(in_stock=True)}, ["visual_recs.E004"]),
        ({"learn_from": ["product_type", "season"]}, ["visual_recs.E010"]),
        ({"learn_from": [lambda product: product.colour]}, ["visual_recs.E010"]),  # no name to store it under
        ({"learn_from": "product_type"}, ["visual_recs.E010"]),
        ({"group_field": "style"}, ["visual_recs.E019"]),
        ({"fallback": "categry"}, ["visual_recs.E019"]),
        ({"fallback": "category", "fallback_order": "-popularity"}, ["visual_recs.E019"]),
        ({"available": lambda self, queryset: queryset.filter(in_stock=True)}, ["visual_recs.E019"]),
        ({"fallback": "partition", "fallback_order": ["-price", "pk"], "group_field": "group"}, []),
    ],
)
def test_model_mistakes_are_reported(settings, options, expected):
    settings.VISUAL_RECS = {"MODELS": {"products": declaration(**options)}}
    assert ids(check_models()) == expected


@pytest.mark.parametrize(
    "name, meant",
    [("partiton_field", "Did you mean 'partition_field'?"), ("filter", "def shown(self, queryset)"), ("image_field", "'photo_field'")],
)
def test_a_name_that_is_no_option_is_an_error_that_names_it(settings, name, meant):
    settings.VISUAL_RECS = {"MODELS": {"products": declaration(**{name: "gender"})}}
    (error,) = check_models()
    assert error.id == "visual_recs.E016" and repr(name) in error.msg and meant in error.hint
    # A helper of the shop's own, or a name a subclass declares as an option, is not one.
    settings.VISUAL_RECS = {"MODELS": {"products": declaration(_helper=1, season="x", more_options=("season",))}}
    assert check_models() == []


def test_the_old_dict_form_is_refused_with_the_class_to_write(settings):
    old = {"model": "visual_recs_catalog.Product", "image_field": "image", "partition_field": "gender",
           "filter": {"is_active": True}, "learn_from": {"product_type": 1.0}, "photo": "shop.visual.primary_photo"}  # fmt: skip
    settings.VISUAL_RECS = {"MODELS": {"products": old}}
    (error,) = check_models()
    assert error.id == "visual_recs.E015"
    assert "'shop.visual.ProductsPhotos'" in error.hint
    namespace = {}
    exec(error.hint[error.hint.index("from visual_recs") :].replace("shop.visual.primary_photo", "str"), namespace)
    written = namespace["ProductsPhotos"]
    assert (written.model, written.photo_field, written.partition_field) == ("visual_recs_catalog.Product", "image", "gender")
    assert written.learn_from == {"product_type": 1.0}
    assert str(written().shown(Product.objects.all()).query) == str(Product.objects.filter(is_active=True).query)
    # Anything else that is not a ModelPhotos subclass, or does not import, is the same error.
    for entry in ("visual_recs_catalog.Product", "shop.visual.Nowhere", CatalogProducts()):
        settings.VISUAL_RECS = {"MODELS": {"products": entry}}
        assert ids(check_models()) == ["visual_recs.E015"]


def test_no_registered_model_is_a_warning_and_the_default(settings):
    """The core defaults to no model (it has none of its own): a warning, not an error that stops migrate."""
    settings.VISUAL_RECS = {}
    assert ids(check_models()) == ["visual_recs.W002"]


def test_the_bundled_products_old_label_says_where_it_went(settings):
    settings.VISUAL_RECS = {"MODELS": {"products": declaration(model="visual_recs.Product")}}
    (error,) = check_models()
    assert error.id == "visual_recs.E001" and "visual_recs.contrib.catalog" in error.hint
    assert "'visual_recs_catalog.Product'" in error.hint


def test_backend_mistakes_are_reported(settings, tmp_path, monkeypatch):
    settings.VISUAL_RECS = {"EXTRACTOR": {"BACKEND": "visual_recs.backends.extractors.ResNet50Extractor", "OPTIONS": {"poling": "avg"}}}
    assert ids(check_backends()) == ["visual_recs.E005"]  # a misspelt option fails loudly
    settings.VISUAL_RECS = {"INDEX": {"BACKEND": "visual_recs.backends.nowhere.Index"}}
    assert ids(check_backends()) == ["visual_recs.E005"]
    settings.VISUAL_RECS = {"EXTRACTOR": {"OPTIONS": {"weights": str(tmp_path / "missing.weights.h5")}}}
    assert ids(check_backends()) == ["visual_recs.W005"]
    monkeypatch.delenv("VISUAL_RECS_WEIGHTS", raising=False)
    # TensorFlow could still download them; the fast extractor is converted from a local file.
    tensorflow = {"BACKEND": "visual_recs.backends.extractors.ResNet50Extractor"}
    settings.VISUAL_RECS = {"WEIGHTS_CACHE_DIR": str(tmp_path / "empty-cache"), "EXTRACTOR": tensorflow}
    assert ids(check_backends()) == ["visual_recs.W001"]
    settings.VISUAL_RECS = {"WEIGHTS_CACHE_DIR": str(tmp_path / "empty-cache")}
    [warning] = check_backends()
    # A warning: migrate and check must pass before visual_recs_fetch_weights has run.
    assert warning.id == "visual_recs.W005" and warning.level == checks.WARNING
    assert "run `manage.py visual_recs_fetch_weights`" in warning.msg


@pytest.mark.parametrize(
    "broker, queue, warned",
    [
        ("redis://127.0.0.1:6379/0", None, True),
        ("redis://127.0.0.1:6379", None, True),
        ("rediss://:secret@redis.example.com:6380/", None, True),
        ("redis://127.0.0.1:6379/0;redis://127.0.0.1:6380/0", None, True),
        ("redis://127.0.0.1:6379/3", None, False),
        ("redis://127.0.0.1:6379/0", "shop_a", False),
        ("amqp://guest@localhost//", None, False),
    ],
)
def test_the_default_queue_on_the_default_redis_database_is_a_warning(
    settings, monkeypatch, suite_celery_app, broker, queue, warned
):
    """Two shops on one Redis with the defaults take each other's tasks; a DB number or a queue name apart."""
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, **({"QUEUE": queue} if queue else {})}
    settings.CELERY_BROKER_URL = broker
    monkeypatch.setattr(suite_celery_app.conf, "broker_url", broker)  # the app read the settings at start
    found = check_queue()
    assert ids(found) == (["visual_recs.W006"] if warned else [])
    if warned:
        assert "VISUAL_RECS['QUEUE']" in found[0].hint and "secret" not in found[0].msg


def test_a_missing_converted_network_is_a_warning_that_names_the_command(settings, tmp_path, resnet_weights):
    settings.VISUAL_RECS = {"EXTRACTOR": {"OPTIONS": {"model": str(tmp_path / "missing.xml")}}}
    [warning] = check_backends()
    assert warning.id == "visual_recs.W003" and "visual_recs_fetch_weights" in warning.msg


def test_an_index_that_cannot_hold_the_extractors_vectors_is_reported(settings):
    index = {"BACKEND": "visual_recs.backends.pgvector.PgvectorIndex", "OPTIONS": {"dimensions": 256}}
    settings.VISUAL_RECS = {"INDEX": index}
    [error] = check_backends()
    assert error.id == "visual_recs.E009"
    assert "2048-dimensional vectors but the index holds 256" in error.msg and "= 2048" in error.hint
    settings.VISUAL_RECS = {"INDEX": {**index, "OPTIONS": {"dimensions": 2048}}}
    assert check_backends() == []


def test_manage_py_commands_run_without_a_key_but_the_server_does_not(tmp_path):
    """The check a fresh checkout runs works with no secret set; a server still refuses to start."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'manage.sqlite3'}"
    check = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert "No changes detected" in check.stdout
    server = subprocess.run(
        [sys.executable, "manage.py", "runserver", "127.0.0.1:1", "--noreload"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120,
    )
    assert server.returncode != 0 and "Set DJANGO_SECRET_KEY" in server.stderr


def test_a_model_is_found_though_another_entry_names_a_missing_model(settings):
    """A save or a page view of one model does not fail for another registration's mistake (check reports it)."""
    from visual_recs import registry

    class Missing(ModelPhotos):
        model = "nowhere.Gone"

    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MODELS": {"broken": Missing, "products": CatalogProducts}}
    assert registry.for_model(Product).key == "products"
    with pytest.raises(LookupError):
        registry.indexed_models()
