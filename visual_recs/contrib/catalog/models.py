"""The bundled catalog model: a product with the fields of the sample fashion dataset."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class AbstractProduct(models.Model):
    """A catalog product with the fields of the sample fashion dataset.

    Subclass it to add fields, and register the subclass with a ``CatalogProducts`` subclass whose
    ``model`` names it.
    """

    class Gender(models.TextChoices):
        MEN = "Men", _("Men")
        WOMEN = "Women", _("Women")
        BOYS = "Boys", _("Boys")
        GIRLS = "Girls", _("Girls")
        UNISEX = "Unisex", _("Unisex")

    title = models.CharField(_("title"), max_length=255)
    gender = models.CharField(_("gender"), max_length=20, choices=Gender.choices, db_index=True)
    category = models.CharField(_("category"), max_length=50, blank=True)
    subcategory = models.CharField(_("subcategory"), max_length=50, blank=True)
    product_type = models.CharField(_("product type"), max_length=50, blank=True)
    colour = models.CharField(_("colour"), max_length=50, blank=True)
    usage = models.CharField(_("usage"), max_length=50, blank=True)
    image = models.ImageField(_("photo"), upload_to="products/", blank=True)
    is_active = models.BooleanField(_("active"), default=True, db_index=True)
    sku = models.CharField(_("SKU"), max_length=64, blank=True)
    price = models.DecimalField(_("price"), max_digits=10, decimal_places=2, null=True, blank=True)
    stock = models.PositiveIntegerField(
        _("stock"), null=True, blank=True, help_text=_("Units for sale; empty: not tracked. At 0 it leaves every strip at once.")
    )
    group = models.CharField(
        _("variant group"),
        max_length=64,
        blank=True,
        help_text=_("Products sharing it are variants of one (a style number): a strip shows one of them at most."),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.title


class Product(AbstractProduct):
    """The bundled catalog, for shops without one of their own and for the demo."""

    class Meta(AbstractProduct.Meta):
        # The name it had in the core app (0.1): upgraded installs keep their table and rows.
        db_table = "visual_recs_product"
        # A photo's URL finds its product (the demo's media view hides the photos of hidden ones).
        indexes = [models.Index(fields=["image"], name="visual_recs_product_image")]
        verbose_name = _("product")
        verbose_name_plural = _("products")
