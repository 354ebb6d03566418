"""django-oscar's catalogue registered with visual_recs in one settings entry.

    INSTALLED_APPS = [..., "visual_recs", "visual_recs.contrib.oscar"]
    VISUAL_RECS = {"MODELS": {"products": visual_recs.contrib.oscar.products(partition="attribute:gender")}}

``products()`` only builds a dict of dotted paths and plain values: settings import it before
Django (or Oscar) is set up, so nothing here imports a model, and a wrong ``partition`` is a
system check error (``visual_recs_oscar.E001``), not an exception at import.
"""

from __future__ import annotations

from typing import Any

from .partitions import Partition

HOOKS = "visual_recs.contrib.oscar.hooks"


def products(*, partition: str | None = None, recommendations: int = 0) -> dict[str, Any]:
    """The ``VISUAL_RECS["MODELS"]`` entry of Oscar's ``catalogue.Product``.

    ``partition``: None (the whole catalogue is one partition), ``"product_class"`` (by the
    product class's slug; a child by its parent's class) or ``"attribute:<code>"`` (by that
    product attribute's value; a child without its own value has its parent's). A product
    without the attribute is in the ``""`` partition.
    ``recommendations``: how many of each product's similar items to copy into Oscar's own
    ``ProductRecommendation`` (0: none), so themes showing ``sorted_recommended_products`` show them.
    """
    entry: dict[str, Any] = {
        "model": "catalogue.Product",
        "photo": f"{HOOKS}.primary_photo",
        "with_photo": f"{HOOKS}.with_photo",
        "shown": f"{HOOKS}.browsable",
        "dependants": f"{HOOKS}.children",
        "photo_models": [{"model": "catalogue.ProductImage", "owner": "product"}],
        # primary_image() of each card from these (a child's from its parent's), not a query each.
        "prefetch": ["images", "parent__images"],
        "oscar_recommendations": recommendations,
    }
    if partition is not None:
        entry["partition"] = Partition(partition)
    return entry
