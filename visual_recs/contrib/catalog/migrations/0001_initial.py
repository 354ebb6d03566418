"""The bundled Product, taken over from the core app where 0.1 kept it.

Three steps, each safe on every kind of install:

1. The state gains Product, with no database operation: the table ``visual_recs_product`` is
   the core's until now (created by ``visual_recs`` 0001, kept by its 0006 when this app is
   installed), rows, indexes and sequence included.
2. The table is created when it is missing: a shop whose upgrade dropped the empty table
   (this app was not installed then) and that adds this app later.
3. Whatever pointed at ``visual_recs.product`` points at ``visual_recs_catalog.product``: the
   content type row is relabelled in place (same id, so vectors, lists, fits, permissions and
   admin log entries stay attached), and the index collections named after the model's label
   (``visual_recs.product:<extractor>...``) are renamed in ``ExactIndex``'s tables and in
   pgvector's, so nothing needs to be indexed again.

Unapplied, the table is kept (with its rows) and the labels go back.
"""

from django.db import migrations, models
from django.db.models import Value
from django.db.models.functions import Concat, Substr

OLD_LABEL = "visual_recs"
NEW_LABEL = "visual_recs_catalog"
MODEL = "product"
PGVECTOR_TABLES = r"^visual_recs_halfvec_[0-9]+$"


def create_table_if_missing(apps, schema_editor):
    Product = apps.get_model(NEW_LABEL, "Product")
    if Product._meta.db_table not in schema_editor.connection.introspection.table_names():
        schema_editor.create_model(Product)


def move_to_new_label(apps, schema_editor):
    _relabel(apps, schema_editor, OLD_LABEL, NEW_LABEL)


def move_to_old_label(apps, schema_editor):
    _relabel(apps, schema_editor, NEW_LABEL, OLD_LABEL)


def _relabel(apps, schema_editor, old, new):
    using = schema_editor.connection.alias
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.using(using).filter(app_label=old, model=MODEL).update(app_label=new)
    # IndexedModel.collection(): "<app_label>.<model>:<extractor>", and a fit's or a weighing's suffix.
    old_prefix, new_prefix = f"{old}.{MODEL}:", f"{new}.{MODEL}:"
    renamed = Concat(Value(new_prefix), Substr("collection", len(old_prefix) + 1))
    for name in ("ExactIndexEntry", "ExactIndexChange"):
        rows = apps.get_model("visual_recs", name).objects.using(using)
        rows.filter(collection__startswith=old_prefix).update(collection=renamed)
    if schema_editor.connection.vendor == "postgresql":
        _relabel_pgvector_tables(schema_editor, old_prefix, new_prefix)


def _relabel_pgvector_tables(schema_editor, old_prefix, new_prefix):
    """PgvectorIndex keeps one table per vector length, outside the models (see backends/pgvector.py)."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename ~ %s",
            [PGVECTOR_TABLES],
        )
        for (table,) in cursor.fetchall():
            cursor.execute(
                f"UPDATE {schema_editor.quote_name(table)} SET collection = %s || substr(collection, %s) "
                "WHERE left(collection, %s) = %s",
                [new_prefix, len(old_prefix) + 1, len(old_prefix), old_prefix],
            )


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("visual_recs", "0006_product_moved_to_contrib_catalog"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Product",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("title", models.CharField(max_length=255, verbose_name="title")),
                        ("gender", models.CharField(choices=[("Men", "Men"), ("Women", "Women"), ("Boys", "Boys"), ("Girls", "Girls"), ("Unisex", "Unisex")], db_index=True, max_length=20, verbose_name="gender")),
                        ("category", models.CharField(blank=True, max_length=50, verbose_name="category")),
                        ("subcategory", models.CharField(blank=True, max_length=50, verbose_name="subcategory")),
                        ("product_type", models.CharField(blank=True, max_length=50, verbose_name="product type")),
                        ("colour", models.CharField(blank=True, max_length=50, verbose_name="colour")),
                        ("usage", models.CharField(blank=True, max_length=50, verbose_name="usage")),
                        ("image", models.ImageField(blank=True, upload_to="products/", verbose_name="photo")),
                        ("is_active", models.BooleanField(db_index=True, default=True, verbose_name="active")),
                        ("sku", models.CharField(blank=True, max_length=64, verbose_name="SKU")),
                        ("price", models.DecimalField(blank=True, decimal_places=2, max_digits=10, null=True, verbose_name="price")),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        "verbose_name": "product",
                        "verbose_name_plural": "products",
                        "db_table": "visual_recs_product",
                        "ordering": ["pk"],
                        "abstract": False,
                    },
                ),
            ],
        ),
        migrations.RunPython(create_table_if_missing, migrations.RunPython.noop),
        migrations.RunPython(move_to_new_label, move_to_old_label),
    ]
