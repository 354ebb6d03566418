"""The shop's declarations of its models for visual_recs (``VISUAL_RECS["MODELS"]`` names them).

``Garment`` and ``Article`` keep their photo in a field of their own; ``Listing`` keeps its
photos in ``ListingImage``, has variants and its own ``visible()``, so it overrides the hooks.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q

from visual_recs.registration import ModelPhotos

from .models import Listing, ListingImage


class GarmentPhotos(ModelPhotos):
    """UUID keys, a ``photo`` field, an ``audience`` partition, live garments shown."""

    model = "testapp.Garment"
    photo_field = "photo"
    partition_field = "audience"

    def shown(self, queryset):
        return queryset.filter(state="live")


class ArticlePhotos(ModelPhotos):
    """What a shop's own CSV is imported into: a ``picture``, by audience, published ones shown."""

    model = "testapp.Article"
    photo_field = "picture"
    partition_field = "audience"

    def shown(self, queryset):
        return queryset.filter(published=True)


def primary_photo(listing: Listing):
    """The first image by display order; a variant without images shows its parent's."""
    image = listing.images.order_by("display_order", "pk").first()
    if image is None and listing.parent_id is not None:
        return primary_photo(listing.parent)
    return image.image if image is not None else None


class ListingPhotos(ModelPhotos):
    """Photos in ``ListingImage`` (the first by display order), variants following their parent's."""

    model = Listing
    partition_field = "department"
    photo_models = [{"model": "testapp.ListingImage", "owner": "listing"}]

    def photo(self, listing):
        return primary_photo(listing)

    def with_photo(self, queryset):
        """Listings with an image, or a parent with one."""
        own = ListingImage.objects.filter(listing=OuterRef("pk"))
        parents = ListingImage.objects.filter(listing=OuterRef("parent"))
        return queryset.filter(Q(Exists(own)) | Q(Exists(parents)))

    def shown(self, queryset):
        return queryset.visible()

    def dependants(self, listing):
        return listing.children.all()
