"""The bundled Product leaves the core for the opt-in app ``visual_recs.contrib.catalog``.

The core's state forgets Product. The table ``visual_recs_product`` is left alone when the
contrib app is installed (its migration 0001 takes it over, rows and all); otherwise it is
dropped when empty (a fresh install, or a shop that indexes its own model), and a table that
holds products stops the upgrade with a message rather than losing them.
"""

from django.apps import apps as global_apps
from django.core.exceptions import ImproperlyConfigured
from django.db import migrations

CATALOG_APP = "visual_recs.contrib.catalog"


def drop_unclaimed_product_table(apps, schema_editor):
    if global_apps.is_installed(CATALOG_APP):
        return
    Product = apps.get_model("visual_recs", "Product")
    if Product._meta.db_table not in schema_editor.connection.introspection.table_names():
        return
    count = Product.objects.using(schema_editor.connection.alias).count()
    if count:
        raise ImproperlyConfigured(
            f"The table {Product._meta.db_table} holds {count} products of the bundled Product, which moved to "
            f"the app {CATALOG_APP}. Add {CATALOG_APP!r} to INSTALLED_APPS and run migrate again: it keeps them, "
            "with their vectors and lists. (To drop them instead, delete them first.)"
        )
    schema_editor.delete_model(Product)


def restore_product_table(apps, schema_editor):
    """Unapplied: the core owns the table again; it is created if this migration dropped it."""
    Product = apps.get_model("visual_recs", "Product")
    if Product._meta.db_table not in schema_editor.connection.introspection.table_names():
        schema_editor.create_model(Product)


class Migration(migrations.Migration):

    dependencies = [
        ("visual_recs", "0005_fits"),
    ]

    operations = [
        migrations.RunPython(drop_unclaimed_product_table, restore_product_table),
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="Product")]),
    ]
