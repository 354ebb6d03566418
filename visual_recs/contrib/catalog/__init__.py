"""``visual_recs.contrib.catalog``: an opt-in catalog for shops without one, and for the demo.

It brings the bundled ``Product`` (app label ``visual_recs_catalog``: the fields of the sample
fashion dataset), its admin with the index status and similar items, and
``manage.py visual_recs_import_catalog``, which imports a CSV of products and their photos:
in the sample dataset's layout by default, or any shop's columns mapped onto its own model.

The core app carries none of it: a shop that lists only ``visual_recs`` gets no product table
and no product admin. To index the bundled Product, list both apps and register it::

    INSTALLED_APPS = [..., "visual_recs", "visual_recs.contrib.catalog"]
    VISUAL_RECS = {"MODELS": {"products": "visual_recs.contrib.catalog.CatalogProducts"}}

``CatalogProducts`` (by gender, active products shown) may be subclassed like any
``visual_recs.registration.ModelPhotos``.

Its table keeps the name ``visual_recs_product`` it had when Product lived in the core, so an
install upgraded from 0.1 keeps its rows (migration 0001 takes the table over).
"""

from .registration import CatalogProducts

__all__ = ["CatalogProducts"]
