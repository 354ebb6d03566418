"""Search by photo with the real ResNet50 on real catalog photos, through the REST API."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import CATALOG_DIR, ids_of, photo_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

SEARCH = "/api/visual-recs/products/search/"
QUERY_SHOE = "13683"  # the article's example, "ADIDAS Men Adi Quest Blue Sports Shoes": not in the index
QUERY_DRESS = "31129"  # a girl's dress, photographed at full resolution: not in the index


@pytest.fixture
def catalog(resnet_weights, catalog_rows, make_catalog, api_cache):
    """Six shoes each for men and women, six garments each for boys and girls, indexed with ResNet50."""
    ids = [
        *ids_of(catalog_rows, gender="Men", product_type="Sports Shoes", count=3),
        *ids_of(catalog_rows, gender="Men", product_type="Casual Shoes", count=3),
        *ids_of(catalog_rows, gender="Women", product_type="Heels", count=3),
        *ids_of(catalog_rows, gender="Women", product_type="Casual Shoes", count=3),
        *ids_of(catalog_rows, gender="Boys", product_type="Tshirts", count=3),
        *ids_of(catalog_rows, gender="Boys", product_type="Shirts", count=3),
        *ids_of(catalog_rows, gender="Girls", product_type="Tops", count=3),
        *ids_of(catalog_rows, gender="Girls", product_type="Dresses", count=3),
    ]
    assert QUERY_SHOE not in ids and QUERY_DRESS not in ids
    return {str(p.pk): p for p in make_catalog(ids)}


def search(client, name: str, data: bytes, **fields):
    response = client.post(SEARCH, {"image": SimpleUploadedFile(name, data), **fields})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_a_shoe_photo_finds_shoes_first_and_a_dress_finds_garments(client, catalog, catalog_rows):
    category = {pid: catalog_rows[pid]["Category"] for pid in catalog}
    shoes = search(client, "shoe.jpg", photo_bytes(QUERY_SHOE), limit=6)
    assert [category[str(r["id"])] for r in shoes] == ["Footwear"] * 6

    full_resolution = (CATALOG_DIR / "fullres" / f"{QUERY_DRESS}.jpg").read_bytes()
    garments = search(client, "dress.jpg", full_resolution, limit=6)
    assert [category[str(r["id"])] for r in garments] == ["Apparel"] * 6


def test_the_photo_of_a_catalog_product_finds_that_product_first(client, catalog, catalog_rows):
    for pid in (ids_of(catalog_rows, gender="Women", product_type="Heels", count=1)[0], next(reversed(catalog))):
        results = search(client, "photo.jpg", photo_bytes(pid), limit=3)
        assert str(results[0]["id"]) == pid
        assert results[0]["distance"] == pytest.approx(0, abs=1e-2)
        assert results[1]["distance"] > 1


def test_a_partition_limits_the_search(client, catalog):
    results = search(client, "shoe.jpg", photo_bytes(QUERY_SHOE), partition="Women", limit=20)
    assert {catalog[str(r["id"])].gender for r in results} == {"Women"} and len(results) == 6
