"""The API's views: thin shells over ``visual_recs.indexing``.

Similar items and search are public (shop data shown to shoppers); the status is for staff.
Bad input answers 400 with ``{"detail": "<why>"}``, written for a person.

No view authenticates with anything but the session (search not even with that): DRF's
default Basic authentication would run the password hasher (a million rounds) for any
``Authorization: Basic`` header a client cares to send, before any throttle.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.http import Http404
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, NotFound
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import events, experiments, indexing, registry
from ..exceptions import ImageError, NotRegistered, SearchBusy, SearchUnavailable, UnknownPartition
from ..registry import IndexedModel
from .serializers import (
    ErrorSerializer,
    LimitSerializer,
    SearchRequestSerializer,
    SearchResultsSerializer,
    SimilarItemsSerializer,
)
from .throttling import SEARCH_SCOPE, SearchRateThrottle

_KEY = OpenApiParameter("key", str, OpenApiParameter.PATH, description="The model's key in VISUAL_RECS['MODELS'].")
_BAD_INPUT = OpenApiResponse(ErrorSerializer, description="Bad input; `detail` says why.")
_NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such model key, or no such shown product.")


class InvalidInput(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Invalid input."
    default_code = "invalid"


class UploadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class Busy(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "busy"
    wait = 1  # DRF's exception handler sends it as Retry-After (seconds)


class Unavailable(Busy):
    """Search by photo cannot run in this process (its network is missing or refused): not over in a second."""

    default_code = "unavailable"
    wait = 60


def _registered(key: str) -> IndexedModel:
    try:
        return registry.get(key)
    except NotRegistered as exc:
        raise Http404(str(exc)) from exc


def _shown_object(indexed_model: IndexedModel, pk: str) -> models.Model:
    """The object ``pk`` if it may be shown now; 404 otherwise (also for a malformed key)."""
    try:
        pk_value = indexed_model.model._meta.pk.to_python(pk)
    except ValidationError as exc:
        raise Http404(f"No {indexed_model.key} with the id {pk!r}.") from exc
    obj = indexed_model.shown().filter(pk=pk_value).first()
    if obj is None:
        raise Http404(f"No {indexed_model.key} with the id {pk!r}.")
    return obj


def _validated(serializer: serializers.Serializer) -> dict:
    """The serializer's validated data; else a 400 whose ``detail`` is its first error, for a person."""
    if not serializer.is_valid():
        first_field_errors = next(iter(serializer.errors.values()))
        raise InvalidInput(str(first_field_errors[0]))
    return serializer.validated_data


def _context(request: Request, indexed_model: IndexedModel) -> dict:
    return {"request": request, "indexed_model": indexed_model}


# The schema annotations sit on the classes, over their own drf-spectacular AutoSchema: on the
# methods they would extend DRF's DEFAULT_SCHEMA_CLASS, which a shop need not have pointed at it.


@extend_schema(
    parameters=[_KEY, LimitSerializer],  # the pk's parameter comes from the URL (as "id" by default)
    responses={200: SimilarItemsSerializer, 400: _BAD_INPUT, 404: _NOT_FOUND},
)
class SimilarItemsView(APIView):
    """The nearest products to one product, in its partition, nearest first."""

    permission_classes = [AllowAny]
    # The session only: a shop's own product serializer may look at request.user.
    authentication_classes = [SessionAuthentication]
    schema = AutoSchema()

    def get(self, request: Request, key: str, pk: str) -> Response:
        indexed_model = _registered(key)
        product = _shown_object(indexed_model, pk)
        limit = _validated(LimitSerializer(data=request.query_params))["limit"]
        # The visitor's A/B arm, as the template tag reads it, and a token per item to report with.
        found, arm = experiments.recommend(request, product, limit)
        data = {"product": product, "recommendations": found, "event_tokens": events.tokens_for(request, product, found, arm)}
        return Response(SimilarItemsSerializer(data, context=_context(request, indexed_model)).data)


@extend_schema(
    parameters=[_KEY],
    request={"multipart/form-data": SearchRequestSerializer},
    responses={
        200: SearchResultsSerializer,
        400: _BAD_INPUT,
        404: OpenApiResponse(ErrorSerializer, description="No model is registered under this key."),
        413: OpenApiResponse(ErrorSerializer, description="The request declares a body larger than a photo may be."),
        429: OpenApiResponse(ErrorSerializer, description="Too many searches; retry after Retry-After."),
        503: OpenApiResponse(ErrorSerializer, description="This process runs its most searches at once (Retry-After: 1), or search by photo cannot run here now (Retry-After: 60)."),
    },
)
class SearchByImageView(APIView):
    """Search by photo: the products whose photos look most like an uploaded one."""

    permission_classes = [AllowAny]
    # Public and read-only: no session, so a signed-in shopper's browser needs no CSRF token.
    authentication_classes: list = []
    parser_classes = [MultiPartParser, FormParser]
    visual_recs_throttle_scope = SEARCH_SCOPE
    schema = AutoSchema()

    def get_throttles(self) -> list:
        return [*super().get_throttles(), SearchRateThrottle()]

    def post(self, request: Request, key: str) -> Response:
        indexed_model = _registered(key)
        try:
            # From the declared length, before Django reads (and spools) the body.
            indexing.refuse_oversized_upload(request.META.get("CONTENT_LENGTH"))
        except ImageError as exc:
            raise UploadTooLarge(f"This photo cannot be used: {exc}.") from exc
        form = _validated(SearchRequestSerializer(data=request.data))
        partition = form.get("partition") or None
        try:
            # The service reads the upload within MAX_IMAGE_BYTES and decides from its bytes
            # (not the file name or the declared type) whether it is an image.
            results = indexing.search_by_image(indexed_model, form["image"], partition=partition, limit=form["limit"])
        except UnknownPartition as exc:
            raise InvalidInput(f"Unknown partition: {exc}.") from exc
        except ImageError as exc:
            raise InvalidInput(f"This photo cannot be used: {exc}.") from exc
        except SearchUnavailable as exc:  # the reason (which command fixes it) is in the server's log
            raise Unavailable(f"Unavailable: {exc}.") from exc
        except SearchBusy as exc:
            raise Busy(f"Busy: {exc}.") from exc
        payload = {"partition": partition, "results": results}
        return Response(SearchResultsSerializer(payload, context=_context(request, indexed_model)).data)


class CanViewIndexStatus(BasePermission):
    """Staff who may view feature vectors (``visual_recs.view_featurevector``), as the admin's list of them.

    ``is_staff`` alone is not enough: a staff account made for another part of the shop (its
    blog, its orders) learns nothing of the catalog's indexing.
    """

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_staff and user.has_perm(STATUS_PERMISSION))


#: What the status needs besides ``is_staff``.
STATUS_PERMISSION = "visual_recs.view_featurevector"


@extend_schema(
    responses={
        200: OpenApiTypes.OBJECT,
        403: OpenApiResponse(
            ErrorSerializer,
            description="Not signed in (with a session) as a staff user with the visual_recs.view_featurevector permission.",
        ),
    }
)
class IndexStatusView(APIView):
    """For staff who may view feature vectors: how far indexing has got, per model, partition and status."""

    permission_classes = [CanViewIndexStatus]
    authentication_classes = [SessionAuthentication]  # staff signed in to the admin
    schema = AutoSchema()

    def get(self, request: Request) -> Response:
        return Response(indexing.index_overview())


def only_this_api(endpoints: list) -> list:
    """drf-spectacular preprocessing hook: keep this package's endpoints, so the shop's own views
    (with whatever schema class they use) stay out of this schema."""
    ours = (SimilarItemsView, SearchByImageView, IndexStatusView)
    return [endpoint for endpoint in endpoints if getattr(endpoint[3], "cls", None) in ours]


API_VERSION = "1"


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema of this API (YAML; ``?format=json`` for JSON).

    The API has one version: ``?version=`` other than :data:`API_VERSION` answers 404.
    """

    # Out of every schema, whatever DEFAULT_SCHEMA_CLASS says: drf-spectacular's own exclude
    # fails under DRF's default class, and `check --deploy` generates a schema of the project.
    schema = None
    custom_settings = {
        "TITLE": "visual_recs API",
        "DESCRIPTION": "Similar items from product photos, search by photo, and the index status.",
        "VERSION": API_VERSION,
        "PREPROCESSING_HOOKS": ["visual_recs.api.views.only_this_api"],
    }

    def get(self, request: Request, *args, **kwargs) -> Response:
        if request.query_params.get("version", API_VERSION) != API_VERSION:
            # Not echoed: the value is the client's, of any length and content.
            raise NotFound(f"This API has one version, {API_VERSION}.")
        return super().get(request, *args, **kwargs)

    def _get_version_parameter(self, request: Request) -> None:
        # drf-spectacular's hook for ?version=: never the client's text, which it writes into the
        # schema and the Content-Disposition header (a CR/LF there was a 500, a quote a second filename).
        return None

