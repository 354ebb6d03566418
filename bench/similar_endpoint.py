"""Server time of `GET /api/visual-recs/products/<pk>/similar/`, the read path of a product page.

    .venv/bin/python bench/similar_endpoint.py [--products 200] [--requests 200] [--limit 5] [--resnet]

Builds a throwaway SQLite catalog of about N sample products (the first of each gender) with the test suite's
settings (DJANGO_SETTINGS_MODULE, default tests.settings), indexes them (with the test
suite's fast colour extractor unless --resnet: the read path does not depend on which
made the vectors), then calls the endpoint through Django's test client, cycling through
the products, and prints the median and 95th percentile per request and the queries one
request makes. The time is all of Django's and DRF's work for a request (routing,
middleware, the queries, serialising, rendering JSON), without a network or web server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import CATALOG_DIR, REPO, load_catalog

FAKE_EXTRACTOR = {"BACKEND": "tests.fakes.ColourGridExtractor", "OPTIONS": {}}


def setup(resnet: bool) -> None:
    """Django on a new SQLite file, the catalog's photos read in place, tasks eager."""
    workdir = Path(tempfile.mkdtemp(prefix="visual-recs-bench-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["VISUAL_RECS_TEST_MEDIA"] = str(CATALOG_DIR)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(REPO))
    import django
    from django.conf import settings

    django.setup()
    if not resnet:
        settings.VISUAL_RECS = {**settings.VISUAL_RECS, "EXTRACTOR": FAKE_EXTRACTOR}
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=200, help="first N catalog rows (default 200)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests (default 200)")
    parser.add_argument("--limit", type=int, default=5, help="?limit= of each request (default 5)")
    parser.add_argument("--resnet", action="store_true", help="index with ResNet50 instead of the fast extractor")
    args = parser.parse_args()
    setup(args.resnet)

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from visual_recs import indexing, queue
    from visual_recs.backends import get_extractor
    from visual_recs.contrib.catalog.models import Product
    from visual_recs.models import SimilarItem

    load_catalog()
    # The first products of each gender, so that every partition has some.
    genders = sorted(set(Product.objects.values_list("gender", flat=True)))
    per_gender = max(1, args.products // len(genders))
    keep = [
        pk
        for gender in genders
        for pk in Product.objects.filter(gender=gender).order_by("pk").values_list("pk", flat=True)[:per_gender]
    ]
    with queue.paused():
        Product.objects.exclude(pk__in=keep).delete()
    started = time.perf_counter()
    summary = indexing.index_many(Product.objects.all())
    print(f"indexed {Product.objects.count()} products with {get_extractor().model_id} in {time.perf_counter() - started:.1f} s: {summary}")
    partitions = Counter(Product.objects.values_list("gender", flat=True))
    print(f"partitions: {dict(partitions)}; {SimilarItem.objects.count()} list entries")

    client = Client()
    pks = list(Product.objects.values_list("pk", flat=True))
    url = "/api/visual-recs/products/{}/similar/?limit=" + str(args.limit)
    for pk in pks[:20]:  # warm up: URL resolver, content types, imports
        assert client.get(url.format(pk)).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        body = client.get(url.format(pks[0])).json()
    queries_per_request = len(queries)  # now: the next request clears the connection's query log
    times = []
    for i in range(args.requests):
        pk = pks[i % len(pks)]
        started = time.perf_counter()
        response = client.get(url.format(pk))
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    times.sort()
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    print(
        f"GET products/<pk>/similar/?limit={args.limit}: median {statistics.median(times) * 1000:.2f} ms, "
        f"p95 {p95 * 1000:.2f} ms over {args.requests} requests; {queries_per_request} queries a request; "
        f"{len(body['results'])} results in the first"
    )


if __name__ == "__main__":
    main()
