"""django-oscar's catalogue registered with visual_recs: ``OscarProducts``, ready or subclassed.

    INSTALLED_APPS = [..., "visual_recs", "visual_recs.contrib.oscar"]
    VISUAL_RECS = {"MODELS": {"products": "visual_recs.contrib.oscar.OscarProducts"}}

or, for a partition, labels to learn from, or a copy into Oscar's recommendations, a subclass
of it in a module of the shop (``VISUAL_RECS["MODELS"]`` names it by its dotted path)::

    class Products(OscarProducts):
        partition_field = "attribute:gender"
        recommendations = 4
"""

from __future__ import annotations

from .registration import OscarProducts

__all__ = ["OscarProducts"]
