"""The declaration of the bundled ``Product``: its photo, its partition by gender, the active ones shown,
those in stock available, and its variant groups."""

from __future__ import annotations

from visual_recs.registration import ModelPhotos


class CatalogProducts(ModelPhotos):
    """The bundled ``visual_recs_catalog.Product``: neighbours within one gender, only active products
    shown, sold-out ones (``stock`` 0) left out at read time, one item per variant ``group``.

    Register it as is (``"visual_recs.contrib.catalog.CatalogProducts"``) or subclass it, e.g.
    to add ``learn_from = {"product_type": 1.0, "colour": 0.1}`` (what the demo does).
    """

    model = "visual_recs_catalog.Product"
    photo_field = "image"
    partition_field = "gender"
    group_field = "group"

    def shown(self, queryset):
        """Active products only: an inactive product keeps its own list but is never recommended."""
        return queryset.filter(is_active=True)

    def available(self, queryset):
        """In stock, or stock not tracked: a sold-out product leaves strips at once, and comes back with stock."""
        return queryset.exclude(stock=0)
