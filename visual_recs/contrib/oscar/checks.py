"""System checks of the Oscar entry: a ``partition`` spec this app does not understand."""

from __future__ import annotations

from django.core import checks

from visual_recs.conf import app_settings

from .partitions import Partition


@checks.register()
def check_partitions(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    errors = []
    for key, options in app_settings.MODELS.items():
        partition = options.get("partition") if isinstance(options, dict) else None
        if isinstance(partition, Partition) and partition.problem():
            errors.append(
                checks.Error(
                    f"VISUAL_RECS['MODELS'][{key!r}]: the partition {partition.problem()}.",
                    hint="products(partition='attribute:gender'), products(partition='product_class') or no partition.",
                    obj="settings.VISUAL_RECS",
                    id="visual_recs_oscar.E001",
                )
            )
    return errors
