"""The hooks of Oscar's ``catalogue.Product`` that ``OscarProducts`` calls.

Oscar decides what a product's photo is (``primary_image()``: the first image by
``display_order``; a child without images of its own has its parent's) and what may be shown
(``browsable()``: public parents and standalone products); these only adapt its answers.
"""

from __future__ import annotations

from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.db.models.fields.files import FieldFile


def primary_photo(product) -> FieldFile | None:
    """The file of ``product.primary_image()``, or None for Oscar's placeholder.

    Without images Oscar returns a dict (``{"original": <the missing-image name>, "is_missing":
    True}``) whose ``original`` is a name, not a stored file: that is no photo.
    """
    image = product.primary_image()
    original = image.get("original") if isinstance(image, dict) else getattr(image, "original", None)
    return original if isinstance(original, FieldFile) and original else None


def with_photo(queryset):
    """Products with an image, or a parent with one (what ``primary_photo`` finds), in one query."""
    images = queryset.model._meta.get_field("images").related_model._default_manager
    own = images.filter(product=OuterRef("pk"))
    parents = images.filter(product=OuterRef("parent"))
    return queryset.filter(Exists(own) | Exists(parents))


def browsable(queryset):
    """Oscar's ``browsable()``: public products that are not children.

    A child is a variant (a size, a colour) of its parent: recommending it would fill a strip
    with one garment's variants, while the parent's page offers them all. Children are still
    indexed (their pages have similar items too); they are only never recommended.
    """
    return queryset.browsable()


def children(product):
    """A parent's children: a child without images shows its parent's, so follows its changes."""
    return product.children.all()


def available(queryset):
    """Those of ``queryset`` Oscar's default strategy sells now, in one query (``Exists``).

    As ``StockRequired`` decides ``is_available_to_buy``: a product needs a stock record, and
    free stock on it (``num_in_stock`` above ``num_allocated``) unless its class does not track
    stock (a child's class is its parent's); a parent is available when one of its children is.
    Oscar looks at the product's first stock record, this at any of them. A shop with its own
    strategy overrides ``OscarProducts.available``.
    """
    stock_records = queryset.model._meta.get_field("stockrecords").related_model._default_manager
    untracked = Q(product__product_class__track_stock=False) | Q(product__parent__product_class__track_stock=False)
    sellable = stock_records.filter(untracked | Q(num_in_stock__gt=Coalesce(F("num_allocated"), 0)))
    return queryset.filter(Exists(sellable.filter(product=OuterRef("pk"))) | Exists(sellable.filter(product__parent=OuterRef("pk"))))
