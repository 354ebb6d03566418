"""The test shop's catalogue, made with Oscar's own models: a product class with a ``gender``
attribute, a category, and products whose photos come from the sample catalog.

The in-process tests create products through the dashboard's forms instead (tests/test_oscar.py);
the browser test runs ``load_sample`` in the shop's own process (``manage.py shell``).
"""

from __future__ import annotations

import csv
from decimal import Decimal as D
from pathlib import Path

from django.core.files.base import ContentFile
from oscar.core.loading import get_model

ProductClass = get_model("catalogue", "ProductClass")
ProductAttribute = get_model("catalogue", "ProductAttribute")
Category = get_model("catalogue", "Category")
Product = get_model("catalogue", "Product")
ProductCategory = get_model("catalogue", "ProductCategory")
ProductImage = get_model("catalogue", "ProductImage")
Partner = get_model("partner", "Partner")
StockRecord = get_model("partner", "StockRecord")

CLASS_SLUG = "clothing"


def product_class():
    """The "Clothing" class with its ``gender`` text attribute (made once)."""
    clothing, _ = ProductClass.objects.get_or_create(
        slug=CLASS_SLUG, defaults={"name": "Clothing", "requires_shipping": False, "track_stock": False}
    )
    ProductAttribute.objects.get_or_create(
        product_class=clothing, code="gender", defaults={"name": "Gender", "type": ProductAttribute.TEXT}
    )
    return clothing


def category():
    """The "Fashion" root category (made once)."""
    found = Category.get_root_nodes().filter(name="Fashion").first()
    return found or Category.add_root(name="Fashion")


def add_image(product, photo: Path, display_order: int = 0):
    image = ProductImage(product=product, display_order=display_order)
    image.original.save(photo.name, ContentFile(photo.read_bytes()), save=False)
    image.save()
    return image


def add_stock(product, num_in_stock: int | None = None):
    """A stock record of the shop's one partner, so Oscar's default strategy sells the product."""
    partner, _ = Partner.objects.get_or_create(name="Test shop")
    return StockRecord.objects.create(
        product=product, partner=partner, partner_sku=f"sku-{product.pk}", price=D("10.00"), num_in_stock=num_in_stock
    )


def add_product(title: str, gender: str | None, photo: Path | None):
    """A public standalone product of the class, in the category, with ``photo`` as its image."""
    product = Product(title=title, product_class=product_class(), structure=Product.STANDALONE)
    if gender is not None:
        product.attr.gender = gender
    product.save()
    ProductCategory.objects.create(product=product, category=category())
    add_stock(product)
    if photo is not None:
        add_image(product, photo)
    return product


def load_sample(catalog_dir: str, product_ids: list[str]) -> dict[str, int]:
    """Products for the sample catalog's ``product_ids`` (title, gender, photo); their pks by catalog id."""
    catalog_dir = Path(catalog_dir)
    with open(catalog_dir / "fashion.csv", newline="") as fh:
        rows = {row["ProductId"]: row for row in csv.DictReader(fh)}
    return {
        pid: add_product(rows[pid]["ProductTitle"], rows[pid]["Gender"], catalog_dir / "images" / f"{pid}.jpg").pk
        for pid in product_ids
    }
