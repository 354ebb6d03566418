"""The demo shop's pages through Django's test client, on a small imported catalog.

The colour-grid extractor stands in for ResNet50 (the browser test uses the real one); the
pages are the demo's own: demo_shop.urls and the shop app's templates.
"""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from demo_shop.shop import views
from tests.catalog_files import write_catalog_csv
from tests.conftest import CATALOG_DIR, ids_of, photo_bytes
from visual_recs import indexing
from visual_recs.contrib.catalog import importer
from visual_recs.contrib.catalog.mapping import bundled_mapping
from visual_recs.contrib.catalog.models import Product

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_extractor", "api_cache")]  # api_cache: throttle counts

SHOE = "13683"
CARD_ID = re.compile(r'<li class="card" data-product-id="(\d+)" data-gender="(\w+)"')
SIMILAR_ID = re.compile(r'data-object-id="(\d+)"')


@pytest.fixture(autouse=True)
def demo_pages(settings):
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "demo_shop.shop"]
    settings.ROOT_URLCONF = "demo_shop.urls"


@pytest.fixture
def shop(tmp_path, catalog_rows) -> dict[str, str]:
    """8 men's shoes (the article's one among them), 6 women's, 6 girls' items, imported and indexed."""
    ids = sorted({SHOE, *ids_of(catalog_rows, gender="Men", count=7)}, key=int)
    ids += ids_of(catalog_rows, gender="Women", count=6) + ids_of(catalog_rows, gender="Girls", count=6)
    csv_path = write_catalog_csv(tmp_path / "fashion.csv", [catalog_rows[pid] for pid in ids])
    mapping = bundled_mapping()
    importer.import_rows(importer.read_catalog(csv_path, mapping), CATALOG_DIR / "images", mapping)
    indexing.index_many(Product.objects.all())
    return {pid: catalog_rows[pid]["Gender"] for pid in ids}


def cards(response) -> list[tuple[str, str]]:
    return CARD_ID.findall(response.content.decode())


def test_catalog_lists_products_with_lazy_thumbnails(client, shop):
    response = client.get("/")
    html = response.content.decode()

    assert response.status_code == 200
    assert len(cards(response)) == 20 and "20 products" in html
    assert html.count('loading="lazy"') == 20
    assert 'href="/static/shop/shop.css"' in html and 'href="/api/visual-recs/schema/"' in html


def test_gender_and_category_filters_combine_and_count(client, shop):
    response = client.get("/", {"gender": "Men"})
    assert {gender for _, gender in cards(response)} == {"Men"} and len(cards(response)) == 8
    html = response.content.decode()
    # Chips count within the other filter: with Men chosen, only Footwear has products.
    assert re.search(r'href="\?gender=Men&amp;category=Footwear">Footwear <span class="count">8</span>', html)
    assert "Apparel" not in html.split('aria-label="Category"')[1].split("</div>")[0]

    response = client.get("/", {"gender": "Men", "category": "Apparel"})
    assert cards(response) == [] and "No product matches these filters" in response.content.decode()


def test_pages_keep_the_filters(client, shop, monkeypatch):
    monkeypatch.setattr(views, "PAGE_SIZE", 3)
    first = client.get("/", {"gender": "Men"})
    assert 'href="?gender=Men&amp;page=2" rel="next"' in first.content.decode()
    last = client.get("/", {"gender": "Men", "page": 3})
    assert len(cards(last)) == 2 and 'href="?gender=Men&amp;page=2" rel="prev"' in last.content.decode()
    assert len(cards(client.get("/", {"gender": "Men", "page": "999"}))) == 2  # past the end: the last page


def test_product_page_shows_the_product_and_five_similar_items_of_its_gender(client, shop):
    response = client.get(f"/products/{SHOE}/")
    html = response.content.decode()

    assert response.status_code == 200
    assert "<h1>ADIDAS Men Adi Quest Blue Sports Shoes</h1>" in html
    assert f'src="/media/products/{SHOE}.jpg"' in html and "<dd>Sports Shoes</dd>" in html
    similar = SIMILAR_ID.findall(html.split('class="similar"')[1])
    assert len(similar) == 5 and SHOE not in similar
    assert {shop[pid] for pid in similar} == {"Men"}


def test_hidden_or_unknown_products_are_not_found(client, shop):
    Product.objects.filter(pk=int(SHOE)).update(is_active=False)
    assert client.get(f"/products/{SHOE}/").status_code == 404
    assert client.get("/products/1/").status_code == 404


def test_search_form_takes_images_with_csrf(client):
    html = client.get("/search/").content.decode()
    assert 'enctype="multipart/form-data"' in html and 'accept="image/*"' in html
    assert 'name="csrfmiddlewaretoken"' in html


def test_search_finds_the_product_of_the_same_photo(client, shop):
    upload = SimpleUploadedFile(f"{SHOE}.jpg", photo_bytes(SHOE), content_type="image/jpeg")
    response = client.post("/search/", {"photo": upload})
    found = cards(response)
    assert found[0] == (SHOE, "Men") and len(found) == views.SEARCH_RESULTS

    upload = SimpleUploadedFile(f"{SHOE}.jpg", photo_bytes(SHOE), content_type="image/jpeg")
    response = client.post("/search/", {"photo": upload, "gender": "Girls"})
    assert {gender for _, gender in cards(response)} == {"Girls"}


def encoded(product_id: str, fmt: str) -> bytes:
    """The product's photo in another format Pillow writes (and reads)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo_bytes(product_id))).convert("RGB").save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a photo", "This photo cannot be used: not an image file"),
        (photo_bytes(SHOE)[:2000], "This photo cannot be used: the image data is truncated or corrupt"),
        # Formats Pillow decodes that uploads do not accept (UPLOAD_FORMATS), and EPS, which nothing opens.
        (encoded(SHOE, "TGA"), "This photo cannot be used: it is a TGA image; send one of GIF, JPEG, PNG, WEBP."),
        (encoded(SHOE, "PCX"), "This photo cannot be used: it is a PCX image; send one of GIF, JPEG, PNG, WEBP."),
        (encoded(SHOE, "EPS"), "This photo cannot be used: not an image file"),
    ],
)
def test_a_bad_upload_gets_a_readable_error(client, shop, content, message):
    response = client.post("/search/", {"photo": SimpleUploadedFile("upload.jpg", content)})
    html = response.content.decode()
    assert response.status_code == 200
    assert message in html and 'class="search-results"' not in html


def test_without_debug_the_demo_serves_its_photos_and_css(client, shop, settings, tmp_path):
    """As under gunicorn in the compose stack: DEBUG off, the CSS from WhiteNoise, the photos from the demo's view."""
    assert settings.DEBUG is False
    settings.STATIC_ROOT = tmp_path / "static"
    settings.MIDDLEWARE = ["whitenoise.middleware.WhiteNoiseMiddleware", *settings.MIDDLEWARE]
    call_command("collectstatic", "--noinput", verbosity=0)  # the Dockerfile's step

    css = client.get("/static/shop/shop.css")
    assert css.status_code == 200 and css["Content-Type"].startswith("text/css")
    photo = client.get(f"/media/products/{SHOE}.jpg")
    assert photo.status_code == 200 and b"".join(photo.streaming_content) == photo_bytes(SHOE)
    # A path out of MEDIA_ROOT is refused as suspicious; a missing file is a 404.
    assert client.get("/media/../demo_shop/settings.py").status_code == 400
    assert client.get("/media/%2e%2e/%2e%2e/etc/passwd").status_code == 400
    assert client.get("/media/products/nothing.jpg").status_code == 404


def test_the_search_page_is_throttled_like_the_api_whatever_the_forwarded_header(client, shop, settings):
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"visual_recs_search": "2/minute"}}
    codes = []
    for n in range(3):
        upload = SimpleUploadedFile(f"{SHOE}.jpg", photo_bytes(SHOE), content_type="image/jpeg")
        response = client.post("/search/", {"photo": upload}, headers={"X-Forwarded-For": f"10.0.0.{n}"})
        codes.append(response.status_code)
    assert codes == [200, 200, 429]
    assert int(response["Retry-After"]) > 0
    assert "Too many searches from your address" in response.content.decode()


def test_the_search_page_shares_the_apis_global_rate(client, shop, settings):
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"visual_recs_search_global": "1/minute"}}
    codes = []
    for address in ("203.0.113.1", "203.0.113.2"):
        upload = SimpleUploadedFile(f"{SHOE}.jpg", photo_bytes(SHOE), content_type="image/jpeg")
        response = client.post("/search/", {"photo": upload}, REMOTE_ADDR=address)
        codes.append(response.status_code)
    assert codes == [200, 429]
    assert int(response["Retry-After"]) > 0
    assert "Too many searches on the shop right now" in response.content.decode()


def test_the_search_page_refuses_at_once_when_the_process_is_busy_or_the_body_too_big(client, shop, settings):
    from visual_recs.indexing import search as search_module

    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MAX_CONCURRENT_SEARCHES": 1, "MAX_IMAGE_BYTES": 10_000}
    with search_module._search_slot():
        busy = client.post("/search/", {"photo": SimpleUploadedFile("a.jpg", photo_bytes(SHOE)[:9_000])})
    assert busy.status_code == 503 and busy["Retry-After"] == "1"
    assert "busy with other searches" in busy.content.decode()
    big = client.post("/search/", {"photo": SimpleUploadedFile("b.jpg", b"0" * 200_000)})
    assert big.status_code == 413 and "larger than the" in big.content.decode()


@pytest.mark.parametrize("query", ["gender=%00", "category=Foot%00wear"])
def test_a_filter_value_with_a_nul_is_a_400_not_a_500(client, query):
    # On PostgreSQL a NUL reaching the query raised ValueError (a 500); SQLite let it through.
    response = client.get(f"/?{query}")
    assert response.status_code == 400 and b"NUL" in response.content
