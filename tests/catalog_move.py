"""Steps of an install's life around the bundled Product's move, run in a process of their own.

``python -m tests.catalog_move <step>`` with ``DJANGO_SETTINGS_MODULE=tests.catalog_move_settings``
(whose INSTALLED_APPS differ from step to step, as a shop's settings do across an upgrade). Each
step prints one JSON object: what the test asserts on.

- ``reset``: an empty database (PostgreSQL: a new public schema; SQLite: the test deletes the file).
- ``install-0.1``: the schema of 0.1 (``visual_recs`` up to 0005, where the core owned Product)
  and, unless ``--empty``, a catalog indexed then: products with photos, their vectors, lists,
  a fit, ExactIndex entries and (PostgreSQL) a pgvector table row, all under ``visual_recs.product``.
- ``migrate``: ``manage.py migrate``, then what the database and the project hold.
- ``unmigrate``: back to 0.1 (the catalog app's migrations, then ``visual_recs`` 0006), then the same.
"""

from __future__ import annotations

import json
import sys

import django

SEEDED = [(101, "Men", "products/101.jpg"), (102, "Men", "products/102.jpg"), (103, "Women", "products/103-abc.jpg")]
MODEL_ID = "colour-grid:4"  # tests.fakes.ColourGridExtractor's, as the settings configure
OLD_COLLECTION = f"visual_recs.product:{MODEL_ID}"
PGVECTOR_TABLE = "visual_recs_halfvec_48"


def reset() -> dict:
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    return {}


def install_0_1(empty: bool) -> dict:
    import numpy as np
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    from visual_recs.models import ExactIndexChange, ExactIndexEntry, FeatureVector, Fit, SimilarItem

    call_command("migrate", "visual_recs", "0005_fits", verbosity=0)
    call_command("migrate", "auth", verbosity=0)
    if empty:
        return {}
    # The model as 0.1's migrations left it: the code no longer has visual_recs.Product.
    state = MigrationLoader(connection).project_state(("visual_recs", "0005_fits"))
    Product = state.apps.get_model("visual_recs", "Product")
    for pk, gender, image in SEEDED:
        Product.objects.create(pk=pk, title=f"Product {pk}", gender=gender, image=image)
    content_type, _ = ContentType.objects.get_or_create(app_label="visual_recs", model="product")
    vectors = {pk: np.full(48, pk / 1000, dtype=np.float32) for pk, *_ in SEEDED}
    # FeatureVector as 0005 left it too: later migrations add columns the table does not have yet.
    OldFeatureVector = state.apps.get_model("visual_recs", "FeatureVector")
    for pk, gender, _ in SEEDED:
        OldFeatureVector.objects.create(
            content_type_id=content_type.pk, object_id=str(pk), partition=gender, listed=True, status="ready",
            model_id=MODEL_ID, dims=48, vector=FeatureVector.to_bytes(vectors[pk]), image_sha256=f"{pk:064d}",
        )  # fmt: skip
        ExactIndexEntry.objects.create(
            collection=OLD_COLLECTION, object_id=str(pk), partition=gender, shown=True, vector=FeatureVector.to_bytes(vectors[pk])
        )
        ExactIndexChange.objects.create(collection=OLD_COLLECTION, partition=gender, object_id=str(pk))
    SimilarItem.objects.create(content_type=content_type, source_id="101", target_id="102", distance=0.5)
    SimilarItem.objects.create(content_type=content_type, source_id="102", target_id="101", distance=0.5)
    Fit.objects.create(
        content_type=content_type, model_id=MODEL_ID, fields=["product_type"], version="v1", data=b"", products=3, seconds=0.1
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # PgvectorIndex's table, without the extension its vector column needs
            cursor.execute(f"CREATE TABLE {PGVECTOR_TABLE} (collection text, object_id text, PRIMARY KEY (collection, object_id))")
            cursor.execute(f"INSERT INTO {PGVECTOR_TABLE} VALUES (%s, '101'), ('shop.garment:x', '7')", [OLD_COLLECTION])
    return {"content_type": content_type.pk}


def migrate() -> dict:
    from django.core.management import call_command

    try:
        call_command("migrate", interactive=False, verbosity=0)
    except Exception as exc:  # the test reads the message a shop would see
        return {"error": f"{type(exc).__name__}: {exc}", **report()}
    return report()


def unmigrate() -> dict:
    from django.core.management import call_command

    call_command("migrate", "visual_recs_catalog", "zero", interactive=False, verbosity=0)
    call_command("migrate", "visual_recs", "0005_fits", interactive=False, verbosity=0)
    # The table is 0.1's again: today's Product model (newer columns) cannot read it through the app.
    return report(through_the_app=False)


def report(through_the_app: bool = True) -> dict:
    """What the database and the running project hold now."""
    from django.apps import apps
    from django.contrib import admin
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    from visual_recs.models import ExactIndexChange, ExactIndexEntry, FeatureVector, Fit, SimilarItem

    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        products = []
        if "visual_recs_product" in tables:
            cursor.execute("SELECT id, image FROM visual_recs_product ORDER BY id")
            products = [list(row) for row in cursor.fetchall()]
        pgvector = []
        if PGVECTOR_TABLE in tables:
            cursor.execute(f"SELECT collection, object_id FROM {PGVECTOR_TABLE} ORDER BY object_id")
            pgvector = [list(row) for row in cursor.fetchall()]
    found = {
        "product_table": "visual_recs_product" in tables,
        "products": products,
        "admin_models": sorted(model._meta.label for model in admin.site._registry),
        "content_types": sorted(f"{ct.app_label}.{ct.model}" for ct in ContentType.objects.filter(model="product")),
        # Only the columns every schema has (0.1's table lacks the later ones).
        "vectors": sorted(
            {f"{app}.{model}" for app, model in FeatureVector.objects.values_list("content_type__app_label", "content_type__model")}
        ),
        "lists": sorted({f"{s.content_type.app_label}.{s.content_type.model}" for s in SimilarItem.objects.all()}),
        "fits": sorted({f"{fit.content_type.app_label}.{fit.content_type.model}" for fit in Fit.objects.all()}),
        "collections": sorted(
            {*ExactIndexEntry.objects.values_list("collection", flat=True), *ExactIndexChange.objects.values_list("collection", flat=True)}
        ),
        "pgvector": pgvector,
    }
    if through_the_app and apps.is_installed("visual_recs.contrib.catalog") and products:
        found.update(_through_the_app())
    return found


def _through_the_app() -> dict:
    """The catalog as the app reads it after the move: registry, read path, index."""
    from django.contrib.auth.models import Permission

    from visual_recs import indexing, registry
    from visual_recs.backends import get_index
    from visual_recs.contrib.catalog.models import Product

    products = registry.for_model(Product)
    first = Product.objects.get(pk=SEEDED[0][0])
    return {
        "similar_to_101": [str(item.object.pk) for item in indexing.similar_to(first, 5)],
        "status_101": indexing.recommendations(first, 5).status,
        "index_vectors": sorted(get_index().vectors(products.collection(MODEL_ID), [str(pk) for pk, *_ in SEEDED])),
        "change_permission": sorted(
            f"{p.content_type.app_label}.{p.codename}" for p in Permission.objects.filter(codename="change_product")
        ),
    }


if __name__ == "__main__":
    django.setup()
    step, *flags = sys.argv[1:]
    steps = {"reset": reset, "install-0.1": lambda: install_0_1("--empty" in flags), "migrate": migrate, "unmigrate": unmigrate}
    print(json.dumps(steps[step]()))
