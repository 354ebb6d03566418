"""Shared set-up of the benchmarks: Django on a throwaway SQLite database, the sample catalog."""

from __future__ import annotations

import csv
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CATALOG_DIR = Path(os.environ.get("CATALOG_DIR", REPO.parent / "shared/data/fashion-images"))


def setup_django(**settings_overrides) -> Path:
    """Configure Django with the demo shop's settings on a new SQLite file; returns its directory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    workdir = Path(tempfile.mkdtemp(prefix="visual-recs-bench-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["MEDIA_ROOT"] = str(CATALOG_DIR)  # photos are read in place, never copied
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "demo_shop.settings"
    # DEBUG on, as when the published figures were measured (it was the settings' default then);
    # it also lets the settings load without a DJANGO_SECRET_KEY, with a throwaway one.
    os.environ.setdefault("DJANGO_DEBUG", "1")
    sys.path.insert(0, str(REPO))
    import django
    from django.conf import settings

    django.setup()
    for name, value in settings_overrides.items():
        setattr(settings, name, value)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return workdir


def catalog_rows(limit: int | None = None) -> list[dict[str, str]]:
    with open(CATALOG_DIR / "fashion.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows[:limit] if limit else rows


def load_catalog(limit: int | None = None, *, rows: list[dict[str, str]] | None = None) -> int:
    """Bulk-create Products pointing at the catalog's photos (no signals, no indexing).

    The first ``limit`` rows of the catalog, or the given ``rows``.
    """
    from visual_recs.models import Product

    products = [product_of(row) for row in (catalog_rows(limit) if rows is None else rows)]
    Product.objects.bulk_create(products, batch_size=500)
    return len(products)


def product_of(row: dict[str, str]):
    """An unsaved bundled Product for a catalog row, its photo read in place under ``CATALOG_DIR``."""
    from visual_recs.catalog import FIELD_OF_COLUMN
    from visual_recs.models import Product

    return Product(
        pk=int(row["ProductId"]),
        image=f"images/{row['Image']}",
        **{name: row[column] for column, name in FIELD_OF_COLUMN.items()},
    )


def median(values) -> float:
    return statistics.median(values)
