"""The demo shop's pages: the catalog, a product with its similar items, search by photo, and the photos.

They read the bundled Product (``visual_recs.contrib.catalog``); the similar items come from the app's template
tag and search by photo from ``indexing.search_by_image``, the service the REST API uses too.
"""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass
from pathlib import Path

from django import forms
from django.conf import settings
from django.core.paginator import Paginator
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.utils._os import safe_join
from django.utils.cache import patch_cache_control
from django.views import static

from visual_recs import indexing, registry
from visual_recs.api.throttling import SEARCH_SCOPE, SearchRateThrottle
from visual_recs.contrib.catalog.models import Product
from visual_recs.exceptions import ImageError, SearchBusy, SearchUnavailable

PAGE_SIZE = 24
SEARCH_RESULTS = 12


@dataclass(frozen=True)
class Chip:
    """One filter link: a value of a field, how many products it would show, whether it is on."""

    value: str
    label: str
    count: int
    active: bool
    url: str


def _query_string(request: HttpRequest, **changes: object) -> str:
    """The page's query string with ``changes`` (None removes a key), as ``{% querystring %}`` makes it.

    That tag is new in Django 5.1; the demo runs on 4.2 too.
    """
    query = request.GET.copy()
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return f"?{query.urlencode()}"


def _chips(request: HttpRequest, products: QuerySet, field: str, selected: str) -> list[Chip]:
    """The values of ``field`` among ``products``, with counts, for filter links (back to page 1)."""
    labels = dict(Product._meta.get_field(field).flatchoices)
    rows = products.exclude(**{field: ""}).values_list(field).annotate(n=Count("pk")).order_by(field)
    return [
        Chip(value, str(labels.get(value, value)), n, value == selected, _query_string(request, **{field: value, "page": None}))
        for value, n in rows
    ]


def catalog(request: HttpRequest) -> HttpResponse:
    """Every shown product, filtered by gender and category (GET parameters), a page at a time."""
    gender = request.GET.get("gender", "")
    category = request.GET.get("category", "")
    if "\x00" in gender + category:
        # PostgreSQL refuses NUL in a string (a 500 if it reached the query); no value of ours has one.
        return HttpResponseBadRequest("A filter value cannot contain a NUL character.", content_type="text/plain")
    shown = Product.objects.filter(is_active=True)
    # Each filter's counts are those within the other filter, so a chip says what clicking it shows.
    by_category = shown.filter(category=category) if category else shown
    by_gender = shown.filter(gender=gender) if gender else shown
    products = by_gender.filter(category=category) if category else by_gender
    page = Paginator(products.order_by("pk"), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "shop/catalog.html",
        {
            "page": page,
            "gender": gender,
            "category": category,
            "gender_chips": _chips(request, by_category, "gender", gender),
            "category_chips": _chips(request, by_gender, "category", category),
            "all_genders_url": _query_string(request, gender=None, page=None),
            "all_categories_url": _query_string(request, category=None, page=None),
            "page_links": [
                (number, _query_string(request, page=number))
                for number in page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)
            ],
            "previous_url": _query_string(request, page=page.previous_page_number()) if page.has_previous() else None,
            "next_url": _query_string(request, page=page.next_page_number()) if page.has_next() else None,
        },
    )


def product_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One product: its photo, its fields and the similar-items strip."""
    product = get_object_or_404(Product, pk=pk, is_active=True)
    return render(request, "shop/product.html", {"product": product})


class PhotoSearchForm(forms.Form):
    photo = forms.FileField(
        label="Photo",
        help_text="A product photo (JPEG, PNG, WebP or GIF).",
        widget=forms.ClearableFileInput(attrs={"accept": "image/*"}),
    )
    gender = forms.ChoiceField(
        label="Among", choices=[("", "All products"), *Product.Gender.choices], required=False
    )


class _SearchPage:
    """What the API's search throttle reads from a view: its scope, shared with the API's search."""

    visual_recs_throttle_scope = SEARCH_SCOPE


def _throttled(request: HttpRequest) -> HttpResponse | None:
    """None when this client may search now; else the 429 page (the API's rates and counts)."""
    throttle = SearchRateThrottle()
    if throttle.allow_request(request, _SearchPage):
        return None
    wait = max(1, math.ceil(throttle.wait() or 1))
    who = "on the shop right now" if throttle.refused_for_everyone else "from your address"
    return _refused(request, 429, wait, f"Too many searches {who}: try again in {wait} seconds.")


def search(request: HttpRequest) -> HttpResponse:
    """Upload a photo, see the products that look most like it (as often as the API's search allows)."""
    results = None
    if request.method == "POST":
        if (refused := _throttled(request)) is not None:
            return refused
        try:
            # From the declared length, before the form reads (and spools) the upload.
            indexing.refuse_oversized_upload(request.META.get("CONTENT_LENGTH"))
        except ImageError as exc:
            return _refused(request, 413, None, f"This photo cannot be used: {exc}.")
    form = PhotoSearchForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            results = indexing.search_by_image(
                registry.for_model(Product),
                form.cleaned_data["photo"],
                partition=form.cleaned_data["gender"] or None,
                limit=SEARCH_RESULTS,
            )
        except ImageError as exc:
            form.add_error("photo", f"This photo cannot be used: {exc}.")
        except SearchUnavailable:
            return _refused(request, 503, 60, "Search by photo is unavailable right now: try again later.")
        except SearchBusy:
            return _refused(request, 503, 1, "The shop is busy with other searches: try again in a moment.")
    return render(request, "shop/search.html", {"form": form, "results": results})


def _refused(request: HttpRequest, status: int, retry_after: int | None, reason: str) -> HttpResponse:
    """The search page again, empty, with ``reason`` above the form (the upload is not read)."""
    form = PhotoSearchForm()
    response = render(request, "shop/search.html", {"form": form, "results": None, "refused": reason}, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def media_file(request: HttpRequest, path: str) -> HttpResponse:
    """A file of MEDIA_ROOT, with or without DEBUG: the gate for who sees which photo.

    Paths that lead out of MEDIA_ROOT are refused: ``..`` and absolute ones as suspicious (400),
    and a symbolic link to a file outside as missing (404; ``static.serve`` alone follows it).
    The photo of a hidden product (``is_active`` False) is served to staff only: it is not
    shown in the shop, and its file name is no secret. Other files are served to anyone. A
    proxy in front must pass /media/ here rather than serve MEDIA_ROOT itself (docs/deploy.md).
    """
    if "\x00" in path:
        raise Http404("No such file.")
    root = Path(settings.MEDIA_ROOT).resolve()
    requested = posixpath.normpath(path).lstrip("/")  # as static.serve reads it
    real = Path(safe_join(root, requested)).resolve()  # SuspiciousFileOperation (400) for .. and absolute paths
    if not real.is_relative_to(root):
        raise Http404("No such file.")
    stored = real.relative_to(root).as_posix()
    hidden = _photo_of_hidden_product({requested, stored})
    if hidden and not request.user.is_staff:
        raise Http404("No such file.")
    response = static.serve(request, stored, document_root=root)
    if hidden:
        patch_cache_control(response, private=True)  # a shared cache must not hand it to shoppers
    return response


def _photo_of_hidden_product(names: set[str]) -> bool:
    """Whether these file names (as the photo field stores them) are the photo of products that
    are all hidden: one query on the indexed photo column. A photo an active product also uses
    is shown on that product's page anyway."""
    states = set(Product._base_manager.filter(image__in=names).values_list("is_active", flat=True))
    return states == {False}
