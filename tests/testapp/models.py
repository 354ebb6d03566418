"""An existing shop's own product model: UUID keys, other field names, its own notion of active."""

import uuid

from django.db import models


class Garment(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft"
        LIVE = "live"
        ARCHIVED = "archived"

    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    audience = models.CharField(max_length=20)
    photo = models.ImageField(upload_to="garments/", blank=True, null=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.LIVE)

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return f"/garments/{self.uuid}/"


class ListingQuerySet(models.QuerySet):
    def visible(self):
        return self.filter(visible=True)


class Listing(models.Model):
    """A shop product whose photos live in another model (as django-oscar's do), with variants.

    A variant (``parent`` set) without images of its own shows its parent's.
    """

    title = models.CharField(max_length=200)
    department = models.CharField(max_length=20)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    visible = models.BooleanField(default=True)

    objects = ListingQuerySet.as_manager()

    def __str__(self):
        return self.title


class ListingImage(models.Model):
    """One photo of a listing; the first by ``display_order`` is the one shown (and indexed)."""

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="images")
    image = models.ImageField(upload_to="listings/")
    display_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["display_order", "pk"]


class Article(models.Model):
    """A shop's catalog row found by its own SKU (not the primary key), with a price: what a shop's
    own CSV is imported into (``visual_recs_import_catalog --model testapp.Article``)."""

    class Audience(models.TextChoices):
        MEN = "men"
        WOMEN = "women"

    sku = models.CharField(max_length=20, unique=True)
    name = models.CharField(max_length=200)
    audience = models.CharField(max_length=10, choices=Audience.choices)
    price = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    picture = models.ImageField(upload_to="articles/", blank=True)
    published = models.BooleanField(default=True)

    def __str__(self):
        return self.name
