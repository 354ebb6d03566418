"""The REST API's contract: shapes, statuses, limits, 404s, a readable 400 for each bad upload, 429s, the schema.

The fast colour extractor stands in for ResNet50 here; test_search_by_photo.py runs the real one.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.contrib.auth import authenticate, hashers
from django.contrib.auth.models import Permission, User
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.validation import validate_schema
from PIL import Image
from rest_framework import serializers

from tests.conftest import declare, ids_of, photo_bytes
from visual_recs import indexing, queue, registry
from visual_recs.contrib.catalog.models import Product

pytestmark = [pytest.mark.django_db]

API = "/api/visual-recs"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def catalog(fake_extractor, catalog_rows, make_catalog, api_cache):
    men = make_catalog(ids_of(catalog_rows, gender="Men", count=8))
    women = make_catalog(ids_of(catalog_rows, gender="Women", count=8))
    return men, women


def similar(client, product, key: str = "products", **params):
    return client.get(f"{API}/{key}/{product.pk}/similar/", params)


def upload_of(product_id: str, name: str | None = None, content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name or f"{product_id}.jpg", photo_bytes(product_id), content_type=content_type)


def search(client, key: str = "products", headers: dict | None = None, **data):
    return client.post(f"{API}/{key}/search/", data, headers=headers)  # multipart, as a browser's form sends it


# --- similar items ------------------------------------------------------------------------


def test_similar_items_answer_the_product_its_partition_status_and_results(client, catalog):
    men, _ = catalog
    response = similar(client, men[0], limit=3)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"product", "partition", "status", "results"}
    assert body["product"] == {
        "id": men[0].pk,
        "title": men[0].title,
        "url": None,  # the bundled Product has no get_absolute_url in the test settings
        "image_url": f"http://testserver{men[0].image.url}",
    }
    assert (body["partition"], body["status"]) == ("Men", "ready")
    expected = indexing.recommendations(men[0], 3).items
    assert [result["id"] for result in body["results"]] == [item.object.pk for item in expected]
    for result, item in zip(body["results"], expected):
        assert set(result) == {"id", "title", "url", "image_url", "distance", "origin"}
        assert result["distance"] == pytest.approx(item.distance)
        assert result["image_url"] == f"http://testserver{item.object.image.url}"
    assert len(similar(client, men[0]).json()["results"]) == 5  # the default limit


def test_the_status_says_pending_failed_or_no_image(client, catalog, catalog_rows, make_product):
    with queue.paused():
        pending = make_product(ids_of(catalog_rows, gender="Men", count=9)[8])
    no_image = Product.objects.create(title="No photo", gender="Men")
    failed = Product(title="Broken", gender="Men")
    failed.image.save("broken.jpg", ContentFile(b"not a photo"), save=False)
    failed.save()
    indexing.index(failed)
    for product, status in ((pending, "pending"), (failed, "failed"), (no_image, "no_image")):
        body = similar(client, product).json()
        assert (body["status"], body["results"], body["partition"]) == (status, [], "Men")


@pytest.mark.parametrize("limit", ["0", "-1", "21", "abc", "2.5"])
def test_a_limit_out_of_bounds_is_a_400(client, catalog, limit):
    response = similar(client, catalog[0][0], limit=limit)
    assert response.status_code == 400
    assert response.json() == {"detail": f"The limit must be a whole number from 1 to 20, not {limit!r}."}


def test_the_limit_goes_up_to_the_neighbours_kept(client, catalog):
    response = similar(client, catalog[0][0], limit=20)
    assert response.status_code == 200 and len(response.json()["results"]) == 7


def test_unknown_or_hidden_products_are_404(client, catalog):
    men, _ = catalog
    Product.objects.filter(pk=men[1].pk).update(is_active=False)
    deleted_pk = men[2].pk
    men[2].delete()
    for url in (
        f"{API}/widgets/{men[0].pk}/similar/",  # no such model key
        f"{API}/products/999999/similar/",
        f"{API}/products/not-a-number/similar/",
        f"{API}/products/{men[1].pk}/similar/",  # filtered out
        f"{API}/products/{deleted_pk}/similar/",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["detail"]


def test_a_product_deleted_or_deactivated_after_the_lists_were_built_never_appears(client, catalog):
    men, _ = catalog
    before = [result["id"] for result in similar(client, men[0], limit=20).json()["results"]]
    Product.objects.filter(pk=before[0]).update(is_active=False)
    with queue.paused():  # the lists still name both
        Product.objects.get(pk=before[1]).delete()
    after = [result["id"] for result in similar(client, men[0], limit=20).json()["results"]]
    assert after == before[2:]


@pytest.mark.parametrize("limit", [1, 20])
def test_the_similar_endpoint_takes_five_queries_whatever_the_limit(client, catalog, django_assert_num_queries, limit):
    registry.for_model(Product).content_type  # cached per process after the first use
    # The product, its vector row, its list with the targets' photo hashes, the rules, the shown targets.
    with django_assert_num_queries(5):
        response = similar(client, catalog[0][0], limit=limit)
    assert len(response.json()["results"]) == min(limit, 7)


class GarmentCardSerializer(serializers.Serializer):
    """A shop's own way of showing its garments."""

    id = serializers.CharField(source="pk")
    name = serializers.CharField()
    audience = serializers.CharField()


def test_a_shops_model_with_uuid_keys_and_its_own_serializer(client, fake_extractor, catalog_rows, make_garments, settings):
    first, second = make_garments(ids_of(catalog_rows, gender="Boys", count=2), "kids")
    body = similar(client, first, key="garments").json()
    assert body["product"]["id"] == str(first.uuid)
    assert [result["url"] for result in body["results"]] == [f"http://testserver/garments/{second.uuid}/"]
    assert body["results"][0]["title"] == second.name  # no title field: str(obj)

    declare(settings, "garments", serializer="tests.test_api.GarmentCardSerializer")
    body = similar(client, first, key="garments").json()
    assert body["product"] == {"id": str(first.uuid), "name": first.name, "audience": "kids"}
    assert set(body["results"][0]) == {"id", "name", "audience", "distance", "origin"}


# --- search by photo ----------------------------------------------------------------------


def test_search_answers_the_nearest_products(client, catalog):
    men, women = catalog
    response = search(client, image=upload_of(str(men[2].pk)), limit=3)
    assert response.status_code == 200
    body = response.json()
    assert body["partition"] is None and len(body["results"]) == 3
    assert body["results"][0]["id"] == men[2].pk and body["results"][0]["distance"] == pytest.approx(0, abs=1e-5)
    assert set(body["results"][0]) == {"id", "title", "url", "image_url", "distance", "origin"}

    in_women = search(client, image=upload_of(str(men[2].pk)), partition="Women", limit=20).json()
    assert in_women["partition"] == "Women"
    assert {result["id"] for result in in_women["results"]} == {w.pk for w in women}


def test_the_bytes_decide_not_the_file_name_or_declared_type(client, catalog):
    men, _ = catalog
    response = search(client, image=upload_of(str(men[0].pk), name="notes.txt", content_type="text/plain"))
    assert response.status_code == 200 and response.json()["results"][0]["id"] == men[0].pk


def _truncated_jpeg() -> bytes:
    data = photo_bytes("13683")
    return data[: len(data) // 2]


def _as_bmp() -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo_bytes("13683"))).save(buffer, "BMP")
    return buffer.getvalue()


BAD_UPLOADS = {
    "missing file": ({"limit": "3"}, {}, "Send the photo as the multipart form field 'image'."),
    "empty file": ({"image": ("empty.jpg", b"")}, {}, "This photo cannot be used: the file is empty."),
    "not an image": (
        {"image": ("shoe.jpg", b"%PDF-1.4 definitely not a photo")},
        {},
        "This photo cannot be used: not an image file (or a format Pillow cannot read).",
    ),
    "too large": ({"image": ("13683.jpg", None)}, {"MAX_IMAGE_BYTES": 1000}, "the file is larger than the 1,000 bytes limit"),
    "too many pixels": (
        {"image": ("13683.jpg", None)},
        {"MAX_IMAGE_PIXELS": 10_000},
        "the image is 360 x 480 pixels, more than the limit of 10,000 pixels",
    ),
    "more pixels than an upload may have": (
        {"image": ("13683.jpg", None)},
        {"MAX_UPLOAD_PIXELS": 100_000},
        "the image is 360 x 480 pixels, more than the limit of 100,000 pixels",
    ),
    "a format uploads do not accept": (
        {"image": ("13683.bmp", _as_bmp())},
        {},
        "This photo cannot be used: it is a BMP image; send one of GIF, JPEG, PNG, WEBP.",
    ),
    "truncated": ({"image": ("13683.jpg", _truncated_jpeg())}, {}, "the image data is truncated or corrupt"),
    "bad limit": ({"image": ("13683.jpg", None), "limit": "lots"}, {}, "The limit must be a whole number from 1 to 20"),
    "unknown partition": (
        {"image": ("13683.jpg", None), "partition": "Aliens"},
        {},
        "Unknown partition: 'Aliens' is not one of the gender values of products (known: Boys, Girls, Men, Unisex, Women).",
    ),
}


@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_each_bad_upload_is_a_400_that_says_why(client, catalog, settings, case):
    fields, overrides, message = BAD_UPLOADS[case]
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, **overrides}
    data = {}
    for name, value in fields.items():
        if isinstance(value, tuple):
            file_name, content = value
            value = SimpleUploadedFile(file_name, photo_bytes("13683") if content is None else content)
        data[name] = value
    response = search(client, **data)
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_a_search_for_an_unknown_model_key_is_404(client, catalog):
    assert search(client, key="widgets", image=upload_of("13683")).status_code == 404


def test_searches_are_throttled_with_the_default_rate(client, catalog):
    # Refused searches count too: the throttle runs before the upload is read.
    codes = [search(client).status_code for _ in range(31)]
    assert codes == [400] * 30 + [429]
    response = search(client, image=upload_of("13683"))
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert "throttled" in response.json()["detail"].lower()


def test_the_rate_comes_from_the_rest_framework_setting(client, catalog, settings):
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"visual_recs_search": "2/minute"}}
    assert [search(client, image=upload_of("13683")).status_code for _ in range(3)] == [200, 200, 429]


def test_a_forged_forwarded_for_header_does_not_escape_the_limit(client, catalog, settings):
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"visual_recs_search": "3/minute"}}
    codes = [search(client, headers={"X-Forwarded-For": f"10.0.0.{n}"}).status_code for n in range(6)]
    assert codes == [400] * 3 + [429] * 3  # the same client whatever it claims (refusals count too)


def test_behind_trusted_proxies_the_client_is_the_address_they_saw(client, catalog, settings):
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"visual_recs_search": "1/minute"}, "NUM_PROXIES": 1}
    # The client may prepend anything; the proxy appends the address it saw, and that one counts.
    first = search(client, headers={"X-Forwarded-For": "1.1.1.1, 203.0.113.7"}).status_code
    same_client = search(client, headers={"X-Forwarded-For": "9.9.9.9, 203.0.113.7"}).status_code
    other_client = search(client, headers={"X-Forwarded-For": "1.1.1.1, 203.0.113.8"}).status_code
    assert (first, same_client, other_client) == (400, 429, 400)


def test_with_a_redis_cache_the_counts_are_shared_by_every_process(client, catalog, settings):
    """The compose stack's cache: counts in Redis, where every gunicorn process finds them."""
    import redis
    from django.core.cache import caches

    url = "redis://127.0.0.1:6379/13"
    redis.Redis.from_url(url).flushdb()
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"visual_recs_search": "2/minute"}}
    try:
        assert [search(client).status_code for _ in range(3)] == [400, 400, 429]
        assert any(b"throttle_visual_recs_search" in key for key in redis.Redis.from_url(url).keys())
    finally:
        caches["default"].clear()
        redis.Redis.from_url(url).flushdb()


def search_from(client, address: str, headers: dict | None = None) -> int:
    """The status of a search with no photo from ``address``: 400 past the throttle, 429 when not."""
    return client.post(f"{API}/products/search/", {}, headers=headers, REMOTE_ADDR=address).status_code


def test_an_ipv6_network_is_one_client_and_a_mapped_ipv4_address_is_its_ipv4_client(client, catalog, settings):
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"visual_recs_search": "1/minute"}}
    # One host holds the whole /64 and may take any address in it.
    same_network = [search_from(client, address) for address in ("2001:db8:1:2::1", "2001:db8:1:2:aaaa:bbbb:cccc:dddd")]
    assert same_network == [400, 429]
    assert search_from(client, "2001:db8:1:3::1") == 400  # the next /64: another client
    assert [search_from(client, "203.0.113.5"), search_from(client, "::ffff:203.0.113.5")] == [400, 429]


def test_a_forwarded_value_that_is_no_address_is_one_client_whatever_it_says(client, catalog, settings):
    # Two proxies declared where one stands: the client's own X-Forwarded-For text is read.
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"visual_recs_search": "1/minute"}, "NUM_PROXIES": 2}
    texts = ["anything at all", "203.0.113.9:4711", "x" * 5000]
    codes = [search_from(client, "198.51.100.1", {"X-Forwarded-For": f"{text}, 198.51.100.1"}) for text in texts]
    assert codes == [400, 429, 429]  # never a 500, and no text makes a new client


def test_the_global_rate_refuses_a_new_client_once_all_clients_together_reach_it(client, catalog, settings):
    rates = {"visual_recs_search": "2/minute", "visual_recs_search_global": "3/minute"}
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": rates}
    # A client past its own rate takes nothing of everyone's: two of the three.
    assert [search_from(client, "203.0.113.1") for _ in range(4)] == [400, 400, 429, 429]
    assert search_from(client, "203.0.113.2") == 400
    response = client.post(f"{API}/products/search/", {}, REMOTE_ADDR="203.0.113.3")  # a new client
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert "throttled" in response.json()["detail"].lower()
    # The search everyone's rate refused did not count against its client.
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {**rates, "visual_recs_search_global": None}}
    assert [search_from(client, "203.0.113.3") for _ in range(3)] == [400, 400, 429]


def test_the_global_rate_is_120_a_minute_by_default(client, catalog):
    assert [search_from(client, f"10.0.{n // 250}.{n % 250 + 1}") for n in range(121)] == [400] * 120 + [429]


def test_a_body_declared_larger_than_a_photo_is_refused_before_it_is_read(client, catalog, settings, monkeypatch):
    from rest_framework.request import Request

    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MAX_IMAGE_BYTES": 100_000}
    read = []
    real_parse = Request._parse
    monkeypatch.setattr(Request, "_parse", lambda self: read.append(1) or real_parse(self))
    big = SimpleUploadedFile("big.jpg", b"\xff\xd8" + b"0" * 300_000)
    response = search(client, image=big)
    assert response.status_code == 413
    assert response.json()["detail"] == "This photo cannot be used: the upload is larger than the 0.0954 MB limit."
    assert read == []  # the body was never parsed
    assert search(client, image=upload_of("13683")).status_code == 200  # a photo within the limit still is


def test_searches_past_the_process_cap_are_refused_at_once_with_retry_after(client, catalog, settings):
    from visual_recs.indexing import search as search_module

    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MAX_CONCURRENT_SEARCHES": 1}
    with search_module._search_slot():  # another request is searching in this process
        response = search(client, image=upload_of("13683"))
    assert response.status_code == 503 and response["Retry-After"] == "1"
    assert "already running 1 searches by photo" in response.json()["detail"]
    assert search(client, image=upload_of("13683")).status_code == 200  # the slot is free again


def test_a_search_the_network_cannot_serve_is_answered_503_with_a_minutes_retry_after(client, catalog, monkeypatch):
    """Missing or refused weights are not over in a second: clients are told to come back in a minute,
    as the demo's page tells shoppers, and the reason stays in the server's log."""
    from visual_recs.backends import get_extractor
    from visual_recs.exceptions import WeightsError

    def refuse(images):
        raise WeightsError("the converted network /srv/weights/resnet50.xml is missing: run visual_recs_fetch_weights")

    monkeypatch.setattr(get_extractor(), "extract", refuse)
    response = search(client, image=upload_of("13683"))
    assert response.status_code == 503 and response["Retry-After"] == "60"
    assert response.json()["detail"] == "Unavailable: search by photo is unavailable right now; try again later."


def test_a_shops_scoped_throttle_does_not_break_search(client, catalog, settings):
    settings.REST_FRAMEWORK = {
        "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.ScopedRateThrottle"],
        "DEFAULT_THROTTLE_RATES": {"other": "1/minute"},
    }
    assert search(client, image=upload_of("13683")).status_code == 200


# --- authentication -----------------------------------------------------------------------


def basic_header(username: str, password: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {credentials}"}


@pytest.fixture
def hasher_calls(monkeypatch) -> list[str]:
    """Every password hasher looked up from now on: hashing and checking a password both need one."""
    calls: list[str] = []
    real_get_hasher = hashers.get_hasher

    def counting_get_hasher(algorithm: str = "default"):
        calls.append(algorithm)
        return real_get_hasher(algorithm)

    monkeypatch.setattr(hashers, "get_hasher", counting_get_hasher)
    return calls


def test_a_basic_header_costs_no_password_hash(client, catalog, hasher_calls):
    staff = User.objects.create_user("staff", password="right", is_staff=True)
    hasher_calls.clear()
    assert authenticate(username="staff", password="guess") is None and hasher_calls  # what Basic auth would run
    hasher_calls.clear()

    for username, password in (("staff", "guess"), ("nobody", "guess"), ("staff", "right")):
        header = basic_header(username, password)
        assert client.get(f"{API}/products/{catalog[0][0].pk}/similar/", **header).status_code == 200
        assert client.post(f"{API}/products/search/", {"image": upload_of("13683")}, **header).status_code == 200
        # Not even right credentials count: the status is for staff signed in with a session.
        assert client.get(f"{API}/status/", **header).status_code == 403
    assert hasher_calls == []

    staff.user_permissions.add(status_permission())
    client.force_login(staff)
    assert client.get(f"{API}/status/").status_code == 200


# --- status and schema --------------------------------------------------------------------


def status_permission() -> Permission:
    return Permission.objects.get(codename="view_featurevector", content_type__app_label="visual_recs")


def test_the_status_is_for_staff_who_may_view_the_vectors(client, catalog):
    assert client.get(f"{API}/status/").status_code == 403  # session authentication only: no 401
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(f"{API}/status/").status_code == 403  # staff, but without the permission
    staff.user_permissions.add(status_permission())
    staff = User.objects.get(pk=staff.pk)  # permissions are cached on the user object
    client.force_login(staff)
    body = client.get(f"{API}/status/").json()
    assert body["model_id"] == "colour-grid:4"
    assert body["models"]["products"]["partitions"]["Men"] == {"pending": 0, "ready": 8, "failed": 0}
    assert body["models"]["garments"]["objects"] == 0

    shopper = User.objects.create_user("shopper", password="pw")
    shopper.user_permissions.add(Permission.objects.get(codename="view_product", content_type__app_label="visual_recs_catalog"))
    client.force_login(shopper)
    assert client.get(f"{API}/status/").status_code == 403


def test_the_openapi_schema_describes_this_api_only_and_is_valid(client):
    response = client.get(f"{API}/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert set(schema["paths"]) == {
        f"{API}/status/",
        f"{API}/{{key}}/search/",
        f"{API}/{{key}}/{{id}}/similar/",  # drf-spectacular names primary keys "id"
    }
    similar_schema = schema["components"]["schemas"]["SimilarItems"]
    assert set(similar_schema["properties"]) == {"product", "partition", "status", "results"}
    status_enum = schema["components"]["schemas"]["StatusEnum"]["enum"]
    assert status_enum == ["ready", "pending", "failed", "no_image"]
    assert "multipart/form-data" in schema["paths"][f"{API}/{{key}}/search/"]["post"]["requestBody"]["content"]


def api_schema(client) -> dict:
    return client.get(f"{API}/schema/", {"format": "json"}).json()


def limit_bounds(schema: dict) -> dict[str, tuple[int, int]]:
    """The (minimum, maximum) the schema gives ``limit``, per endpoint."""
    similar_parameters = schema["paths"][f"{API}/{{key}}/{{id}}/similar/"]["get"]["parameters"]
    similar_limit = next(parameter["schema"] for parameter in similar_parameters if parameter["name"] == "limit")
    body = schema["paths"][f"{API}/{{key}}/search/"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    search_limit = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["properties"]["limit"]
    return {name: (limit["minimum"], limit["maximum"]) for name, limit in (("similar", similar_limit), ("search", search_limit))}


def test_the_schema_gives_limit_the_bounds_the_views_enforce(client, catalog, settings):
    men = catalog[0]
    assert limit_bounds(api_schema(client)) == {"similar": (1, 20), "search": (1, 20)}
    for limit in (0, 1, 20, 21):
        expected = 200 if 1 <= limit <= 20 else 400
        assert similar(client, men[0], limit=limit).status_code == expected, limit
        assert search(client, image=upload_of("13683"), limit=limit).status_code == expected, limit

    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "NEIGHBOURS": 12}  # read live, by both
    assert limit_bounds(api_schema(client)) == {"similar": (1, 12), "search": (1, 12)}
    assert similar(client, men[0], limit=13).status_code == 400
    assert search(client, image=upload_of("13683"), limit=13).status_code == 400


def test_every_status_the_api_answers_is_in_the_schema(client, catalog):
    men = catalog[0]
    answered = {
        ("{key}/{id}/similar/", "get", similar(client, men[0]).status_code),
        ("{key}/{id}/similar/", "get", similar(client, men[0], limit="lots").status_code),
        ("{key}/{id}/similar/", "get", similar(client, men[0], key="widgets").status_code),
        ("{key}/search/", "post", search(client, image=upload_of("13683")).status_code),
        ("{key}/search/", "post", search(client).status_code),
        ("{key}/search/", "post", search(client, key="widgets", image=upload_of("13683")).status_code),
        ("status/", "get", client.get(f"{API}/status/").status_code),
    }
    staff = User.objects.create_user("staff", is_staff=True)
    staff.user_permissions.add(status_permission())
    client.force_login(staff)
    answered.add(("status/", "get", client.get(f"{API}/status/").status_code))
    assert {code for *_, code in answered} == {200, 400, 403, 404}

    paths = api_schema(client)["paths"]
    undocumented = {
        (path, method, code) for path, method, code in answered if str(code) not in paths[f"{API}/{path}"][method]["responses"]
    }
    assert not undocumented


def test_the_docs_page_points_at_the_schema(client):
    response = client.get(f"{API}/schema/redoc/")
    assert response.status_code == 200
    assert f"{API}/schema/" in response.content.decode()


def test_the_core_never_imports_rest_framework():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["rest_framework"] = None  # any import of it now fails
        sys.modules["drf_spectacular"] = None
        import django
        from django.conf import settings
        settings.configure(
            INSTALLED_APPS=["django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
                            "django.contrib.sessions", "django.contrib.messages", "visual_recs"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
        )
        django.setup()
        import visual_recs.admin, visual_recs.checks, visual_recs.indexing, visual_recs.signals, visual_recs.tasks
        import visual_recs.urls, visual_recs.middleware, visual_recs.reports  # the events endpoint and report
        from django.template import engines
        engines["django"].from_string("{% load visual_recs %}{% similar_items product %}")
        print("core ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "core ok"
