"""The demo's media view (``demo_shop.shop.views.media_file``) as the gate for who sees which photo.

Real files and real symbolic links under a temporary MEDIA_ROOT; the demo's URLs, DEBUG off.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection

from visual_recs import queue
from visual_recs.contrib.catalog.models import Product

pytestmark = [pytest.mark.django_db]

PHOTO = b"\xff\xd8\xff photo bytes"


@pytest.fixture(autouse=True)
def demo_pages(settings):
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "demo_shop.shop"]
    settings.ROOT_URLCONF = "demo_shop.urls"


def media_file(media_root: Path, name: str, content: bytes = PHOTO) -> Path:
    path = media_root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def product(name: str, *, active: bool) -> Product:
    with queue.paused():  # no indexing: the photos are not images
        return Product.objects.create(title=name, gender="Men", image=name, is_active=active)


def get(client, url: str):
    response = client.get(url)
    body = b"".join(response.streaming_content) if response.status_code == 200 else b""
    return response.status_code, body


@pytest.fixture
def users(db) -> dict[str, User]:
    return {
        "shopper": User.objects.create_user("shopper", password="pw"),
        "staff": User.objects.create_user("staff", password="pw", is_staff=True),
    }


def test_a_hidden_products_photo_is_served_to_staff_only(client, media_root, users):
    media_file(media_root, "products/1.jpg")
    product("products/1.jpg", active=False)

    assert get(client, "/media/products/1.jpg")[0] == 404
    client.force_login(users["shopper"])
    assert get(client, "/media/products/1.jpg")[0] == 404
    client.force_login(users["staff"])
    response = client.get("/media/products/1.jpg")
    assert response.status_code == 200 and b"".join(response.streaming_content) == PHOTO
    assert "private" in response["Cache-Control"]  # never kept by a shared cache for shoppers


def test_active_products_photos_and_other_files_are_served_to_anyone(client, media_root):
    media_file(media_root, "products/2.jpg", b"active")
    media_file(media_root, "products/3.jpg", b"shared")
    media_file(media_root, "banners/sale.png", b"banner")
    product("products/2.jpg", active=True)
    product("products/3.jpg", active=False)
    product("products/3.jpg", active=True)  # shown on the active one's page anyway

    assert get(client, "/media/products/2.jpg") == (200, b"active")
    assert get(client, "/media/products/3.jpg") == (200, b"shared")
    assert get(client, "/media/banners/sale.png") == (200, b"banner")


def test_the_product_is_found_in_one_query_on_an_indexed_column(client, media_root, django_assert_num_queries):
    media_file(media_root, "products/4.jpg")
    product("products/4.jpg", active=False)
    with django_assert_num_queries(1):  # an anonymous client: no session or user to read
        assert client.get("/media/products/4.jpg").status_code == 404
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Product._meta.db_table)
    assert constraints["visual_recs_product_image"]["columns"] == ["image"]


def test_links_out_of_media_root_are_not_followed(client, media_root, tmp_path, users):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"server file")
    (media_root / "products").mkdir(parents=True)
    os.symlink(secret, media_root / "products" / "link.jpg")
    os.symlink(tmp_path, media_root / "outside")
    # A link inside MEDIA_ROOT to a hidden product's photo is that photo.
    media_file(media_root, "products/5.jpg")
    product("products/5.jpg", active=False)
    os.symlink(media_root / "products" / "5.jpg", media_root / "alias.jpg")
    media_file(media_root, "products/6.jpg", b"six")
    os.symlink(media_root / "products" / "6.jpg", media_root / "six.jpg")

    assert get(client, "/media/products/link.jpg")[0] == 404
    assert get(client, "/media/outside/secret.txt")[0] == 404
    assert get(client, "/media/alias.jpg")[0] == 404
    assert get(client, "/media/six.jpg") == (200, b"six")  # a link that stays inside is served
    client.force_login(users["staff"])
    assert get(client, "/media/products/link.jpg")[0] == 404
    assert get(client, "/media/alias.jpg") == (200, PHOTO)


@pytest.mark.parametrize(
    "url, status",
    [
        ("/media/../demo_shop/settings.py", 400),  # suspicious, as Django's static.serve says
        ("/media/%2e%2e/%2e%2e/etc/passwd", 400),
        ("/media//etc/passwd", 404),  # absolute: read inside MEDIA_ROOT, where there is no such file
        ("/media/products/1.jpg%00.png", 404),
        ("/media/%00", 404),
        ("/media/products/", 404),  # no directory listings
    ],
)
def test_paths_out_of_media_root_nul_and_directories_are_refused(client, media_root, url, status):
    media_file(media_root, "products/1.jpg")
    assert client.get(url).status_code == status
