"""The bundled Product's move to ``visual_recs.contrib.catalog``, migrated for real.

Each step runs ``migrate`` in a process of its own (``tests/catalog_move.py``) with the
INSTALLED_APPS a shop has at that point, on a throwaway SQLite file and on PostgreSQL
(``TEST_POSTGRES_URL``, or a database ``visual_recs_catalog_move`` this test makes beside the
suite's PostgreSQL; its public schema is dropped). What is proved:

- an 0.1 install with products, vectors, lists, a fit and index entries, upgraded with the
  catalog app added, keeps every product (same pks, same photos) and everything attached to it:
  the content type is relabelled in place (permissions follow), the index collections are
  renamed, and the read path finds the lists and the index finds the vectors;
- the same install upgraded without the catalog app stops with a message naming the app and
  loses nothing; adding the app then upgrades it;
- a shop that never used the bundled Product (only ``visual_recs``, fresh or upgraded) ends with
  no product table and no Product admin, and can add the catalog app later;
- a fresh install with the catalog app has the table and the admin;
- unapplying the move gives the table and the labels back to the core, rows kept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CATALOG = "visual_recs_catalog.product"
OLD = "visual_recs.product"
SEEDED_PRODUCTS = [[101, "products/101.jpg"], [102, "products/102.jpg"], [103, "products/103-abc.jpg"]]


MOVE_DATABASE = "visual_recs_catalog_move"


def _postgres_url() -> str:
    """``TEST_POSTGRES_URL``, or a database of this test's own beside the suite's PostgreSQL
    (``make test-postgres`` and ``make test-pgvector``): it is wiped, so never the suite's."""
    url = os.environ.get("TEST_POSTGRES_URL")
    if url:
        return url
    server = os.environ.get("DATABASE_URL", "")
    if not server.startswith(("postgres://", "postgresql://")):
        pytest.skip("needs PostgreSQL: `make test-postgres` runs it (or set TEST_POSTGRES_URL)")
    import psycopg

    base, _, query = server.partition("?")
    base = base.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres{'?' + query if query else ''}", autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [MOVE_DATABASE]).fetchone():
            connection.execute(f'CREATE DATABASE "{MOVE_DATABASE}"')
    return f"{base}/{MOVE_DATABASE}{'?' + query if query else ''}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'shop.sqlite3'}" if request.param == "sqlite" else _postgres_url()


@pytest.fixture
def step(database_url, tmp_path):
    """``step(name, *flags, catalog=bool)``: one step in a new process; its JSON report."""

    def run(name: str, *flags: str, catalog: bool) -> dict:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.catalog_move_settings",
            "DATABASE_URL": database_url,
            "CATALOG_MOVE_WITH_CATALOG": "1" if catalog else "0",
            "CATALOG_MOVE_MEDIA": str(tmp_path / "media"),
        }
        result = subprocess.run(
            [sys.executable, "-m", "tests.catalog_move", name, *flags],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if result.returncode != 0:
            pytest.fail(f"step {name} failed:\n{result.stdout}\n{result.stderr}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    run("reset", catalog=False)
    return run


def test_an_upgrade_with_the_catalog_app_keeps_the_products_and_all_that_points_at_them(step, database_url):
    step("install-0.1", catalog=False)

    found = step("migrate", catalog=True)

    assert "error" not in found
    assert found["products"] == SEEDED_PRODUCTS  # same pks, same photos
    assert found["content_types"] == [CATALOG]  # relabelled in place, no second row
    assert found["vectors"] == found["lists"] == found["fits"] == [CATALOG]
    assert found["change_permission"] == ["visual_recs_catalog.change_product"]
    assert found["collections"] == [f"{CATALOG}:colour-grid:4"]
    assert found["similar_to_101"] == ["102"] and found["status_101"] == "ready"
    assert found["index_vectors"] == ["101", "102", "103"]  # ExactIndex finds them under the new name
    assert "visual_recs_catalog.Product" in found["admin_models"]
    if database_url.startswith("postgres"):
        assert found["pgvector"] == [[f"{CATALOG}:colour-grid:4", "101"], ["shop.garment:x", "7"]]


def test_an_upgrade_without_the_catalog_app_stops_and_keeps_the_products_until_it_is_added(step):
    step("install-0.1", catalog=False)

    refused = step("migrate", catalog=False)

    assert "visual_recs.contrib.catalog" in refused["error"] and "holds 3 products" in refused["error"]
    assert refused["products"] == SEEDED_PRODUCTS and refused["vectors"] == [OLD]
    found = step("migrate", catalog=True)
    assert "error" not in found and found["products"] == SEEDED_PRODUCTS and found["vectors"] == [CATALOG]


def test_a_shop_without_products_loses_the_empty_table_and_can_add_the_app_later(step):
    step("install-0.1", "--empty", catalog=False)

    found = step("migrate", catalog=False)

    assert "error" not in found and not found["product_table"]
    assert not any(label.endswith(".Product") for label in found["admin_models"])
    later = step("migrate", catalog=True)
    assert later["product_table"] and later["products"] == [] and later["content_types"] == [CATALOG]


def test_fresh_installs_have_a_product_table_only_with_the_catalog_app(step, database_url):
    core_only = step("migrate", catalog=False)
    assert not core_only["product_table"] and core_only["content_types"] == []
    assert "visual_recs.FeatureVector" in core_only["admin_models"]
    assert not any(label.endswith(".Product") for label in core_only["admin_models"])

    step("reset", catalog=False)
    if database_url.startswith("sqlite"):
        Path(database_url.removeprefix("sqlite:///")).unlink()
    with_catalog = step("migrate", catalog=True)
    assert with_catalog["product_table"] and with_catalog["content_types"] == [CATALOG]
    assert "visual_recs_catalog.Product" in with_catalog["admin_models"]


def test_unapplying_the_move_gives_the_table_back_to_the_core_with_its_rows(step):
    step("install-0.1", catalog=False)
    step("migrate", catalog=True)

    found = step("unmigrate", catalog=True)

    assert found["products"] == SEEDED_PRODUCTS
    assert found["content_types"] == [OLD] and found["vectors"] == [OLD]
    assert found["collections"] == [f"{OLD}:colour-grid:4"]
