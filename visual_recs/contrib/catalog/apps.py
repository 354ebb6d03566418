from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CatalogConfig(AppConfig):
    name = "visual_recs.contrib.catalog"
    # Model labels read "visual_recs_catalog.Product": the core's "visual_recs" label stays its own.
    label = "visual_recs_catalog"
    verbose_name = _("Catalog")
    default_auto_field = "django.db.models.BigAutoField"
