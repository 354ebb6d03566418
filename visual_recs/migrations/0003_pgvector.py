"""The pgvector extension, table and HNSW index, when ``PgvectorIndex`` is the configured INDEX.

A no-op on other databases and with other backends: a shop that switches to pgvector later
gets the schema from ``PgvectorIndex.ensure_schema()``, which the index-switching command calls.
"""

from django.db import migrations
from django.utils.module_loading import import_string

PGVECTOR_INDEX = "visual_recs.backends.pgvector.PgvectorIndex"


def create_pgvector_schema(apps, schema_editor):
    from visual_recs.conf import app_settings

    config = app_settings.INDEX
    if schema_editor.connection.vendor != "postgresql" or config["BACKEND"] != PGVECTOR_INDEX:
        return
    index = import_string(config["BACKEND"])(**config.get("OPTIONS", {}))
    index.ensure_schema(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ("visual_recs", "0002_index_backends"),
    ]

    operations = [
        migrations.RunPython(create_pgvector_schema, migrations.RunPython.noop, elidable=False),
    ]
