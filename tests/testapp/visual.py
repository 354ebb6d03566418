"""The shop's hooks that register ``Listing`` with visual_recs: photos in ``ListingImage``, variants, ``visible()``."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q

from .models import Listing, ListingImage


def primary_photo(listing: Listing):
    """The first image by display order; a variant without images shows its parent's."""
    image = listing.images.order_by("display_order", "pk").first()
    if image is None and listing.parent_id is not None:
        return primary_photo(listing.parent)
    return image.image if image is not None else None


def with_photo(queryset):
    """Listings with an image, or a parent with one."""
    own = ListingImage.objects.filter(listing=OuterRef("pk"))
    parents = ListingImage.objects.filter(listing=OuterRef("parent"))
    return queryset.filter(Q(Exists(own)) | Q(Exists(parents)))


def shown(queryset):
    return queryset.visible()


def variants(listing: Listing):
    return listing.children.all()
