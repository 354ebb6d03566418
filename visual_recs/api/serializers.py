"""How the API shows products and their similar items.

A product is shown by :class:`ProductSerializer` (id, title, url, image_url), read generically
from any registered model; the model's ``ModelPhotos.serializer`` (a dotted path or a class)
puts a serializer of your own in its place, e.g. a ``ModelSerializer`` of your product. A similar
item is that product's fields plus ``distance``.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.module_loading import import_string
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from .. import indexing
from ..conf import app_settings
from ..models import Origin
from ..registry import IndexedModel



def product_serializer_class(indexed_model: IndexedModel) -> type[serializers.BaseSerializer]:
    """The serializer of one product of ``indexed_model``: the model's own setting, else ProductSerializer."""
    serializer = indexed_model.serializer
    if serializer is None:
        return ProductSerializer
    return import_string(serializer) if isinstance(serializer, str) else serializer


def _absolute(url: str | None, context: dict[str, Any]) -> str | None:
    request = context.get("request")
    return request.build_absolute_uri(url) if url and request is not None else url


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}], "description": "The primary key."})
class PrimaryKeyField(serializers.ReadOnlyField):
    """The object's primary key as JSON has it: a number, or a string (UUIDs, codes)."""


class ProductSerializer(serializers.Serializer):
    """A product of any registered model. Needs ``indexed_model`` in the context (``request`` for absolute URLs)."""

    id = PrimaryKeyField(source="pk")
    title = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField(help_text="The product page (get_absolute_url), or null.")
    image_url = serializers.SerializerMethodField(help_text="The product photo, or null.")

    def get_title(self, obj: models.Model) -> str:
        return self.context["indexed_model"].title_of(obj)

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, obj: models.Model) -> str | None:
        return _absolute(self.context["indexed_model"].url_of(obj), self.context)

    @extend_schema_field(OpenApiTypes.URI)
    def get_image_url(self, obj: models.Model) -> str | None:
        return _absolute(self.context["indexed_model"].image_url_of(obj), self.context)


class SimilarItemSerializer(ProductSerializer):
    """For the schema only: what one result looks like with the default product serializer."""

    distance = serializers.FloatField(
        allow_null=True,
        help_text="Euclidean distance of the photos' features; smaller is closer. Null for a pinned or fallback item.",
    )
    origin = serializers.ChoiceField(
        choices=Origin.values,
        help_text="Why the item is there: `visual` (a neighbour by photo), `pinned` (a merchandising rule), "
        "`fallback` (filling a strip that rules, stock or variants left short) or `shop` (the shop's own "
        "recommendation, in an A/B test's arm).",
    )
    event_token = serializers.CharField(
        required=False,
        help_text="Similar items with EVENTS on: the signed token to report this item's impression or click "
        "with (POST visual-recs/events/, docs/measurement.md).",
    )


def _items(
    similar: list[indexing.Similar], context: dict[str, Any], event_tokens: list[str] | None = None
) -> list[dict[str, Any]]:
    serializer_class = product_serializer_class(context["indexed_model"])
    items = [
        {**serializer_class(item.object, context=context).data, "distance": item.distance, "origin": item.origin}
        for item in similar
    ]
    for item, token in zip(items, event_tokens or ()):
        item["event_token"] = token
    return items


class SimilarItemsSerializer(serializers.Serializer):
    """``GET <key>/<pk>/similar/``: takes ``{"product": obj, "recommendations": Recommendations,
    "event_tokens": list[str] | None}`` (the tokens of ``events.tokens_for``, one per item)."""

    product = serializers.SerializerMethodField()
    partition = serializers.CharField(source="recommendations.partition")
    status = serializers.ChoiceField(
        source="recommendations.status",
        choices=indexing.STATUSES,
        help_text="ready: listed; pending: being indexed; failed: its photo cannot be used; no_image: no photo.",
    )
    results = serializers.SerializerMethodField()

    @extend_schema_field(ProductSerializer)
    def get_product(self, data: dict[str, Any]) -> dict[str, Any]:
        return product_serializer_class(self.context["indexed_model"])(data["product"], context=self.context).data

    @extend_schema_field(SimilarItemSerializer(many=True))
    def get_results(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        return _items(data["recommendations"].items, self.context, data.get("event_tokens"))


class SearchResultsSerializer(serializers.Serializer):
    """``POST <key>/search/``: takes ``{"partition": str | None, "results": list[Similar]}``."""

    partition = serializers.CharField(allow_null=True, help_text="The partition searched; null: all of them.")
    results = serializers.SerializerMethodField()

    @extend_schema_field(SimilarItemSerializer(many=True))
    def get_results(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        return _items(data["results"], self.context)


DEFAULT_LIMIT = 5
UPLOAD_FIELD = "image"


class LimitField(serializers.IntegerField):
    """``limit``: 1 to ``NEIGHBOURS`` (as many as a stored list holds), 5 when left out or empty.

    The bound is read when a serializer makes its fields, so it follows the setting, and the
    schema shows the bounds the view enforces.
    """

    def __init__(self, **kwargs):
        super().__init__(
            required=False,
            default=DEFAULT_LIMIT,
            min_value=1,
            max_value=app_settings.NEIGHBOURS,
            help_text=f"How many results, 1 to NEIGHBOURS (default {DEFAULT_LIMIT}).",
            **kwargs,
        )

    def run_validation(self, data=empty):
        if data == "":  # an empty form field, or ?limit=
            data = empty
        try:
            return super().run_validation(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError(
                f"The limit must be a whole number from 1 to {self.max_value}, not {data!r}."
            ) from exc


# The views validate their input with this serializer and the next, so the schema shows what they enforce.
class LimitSerializer(serializers.Serializer):
    """The query of ``GET <key>/<pk>/similar/``: ``limit``."""

    def get_fields(self) -> dict[str, serializers.Field]:
        # Made here, not in the class body: the bound is a setting, never read at import.
        return {**super().get_fields(), "limit": LimitField()}


class SearchRequestSerializer(LimitSerializer):
    """A search by photo, as a multipart form."""

    image = serializers.FileField(
        # The service decides from the bytes whether it is an image, and says why not (also when empty).
        allow_empty_file=True,
        error_messages={
            code: f"Send the photo as the multipart form field {UPLOAD_FIELD!r}." for code in ("required", "null", "invalid")
        },
        help_text="The photo: JPEG, PNG, WebP, GIF, ... (sniffed from its bytes).",
    )
    partition = serializers.CharField(
        required=False, allow_blank=True, help_text="Search one partition only (e.g. a gender); empty: all of them."
    )


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What is wrong with the request, for a person.")
