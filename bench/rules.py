"""Merchandising at read time: what rules, stock and variant groups cost a strip, and what events cost a page.

    .venv/bin/python bench/rules.py --products N --backend {exact,pgvector} [--json PATH]
        [--sample 300] [--rounds 3] [--sold-out 0.10] [--events 2000] [--seed 0] [--keep]

The catalog is ``bench/scale.py``'s (N synthetic products in the sample's genders, each the
ResNet50 vector of a random sample photo of its gender plus noise), with, on top:

- stock: a ``--sold-out`` share of the products (10 %) at ``stock = 0``;
- variant groups: products made from one sample photo (they look alike, as a garment's colours
  do) are grouped by three (``group``): a product's nearest neighbours include its own
  variants, which its strip must leave out, and other products' variants, one of each;
- rules, for each sampled product: a pin (a random product of its gender at position 2), an
  exclude of a category (the farthest product type in its list other than its own: a sock in a
  shoe's strip), and a boost of items of its own colour (strength 0.3); and for each gender a partition-wide exclude of one random
  product. The rules table holds 3 per sampled product plus one per gender.

The index is filled from the vectors, and the stored lists of the sampled products are written
as the app builds them (the ``NEIGHBOURS`` nearest shown products of the gender, by distance,
then id), computed here by brute force: building all N lists would cost ``bench/scale.py``'s hour
at 100,000 and the read path reads only the sampled products' lists.

Measured, in one process, side by side (each sampled product read in both configurations in
turn, ``--rounds`` times, after one warm-up round):

- ``read_p50_ms_plain``: ``indexing.recommendations(product, 5)`` with the bundled Product
  declared without stock or groups, and ``rules=False``: the read path as it was before;
- ``read_p50_ms_rules``: the same call with ``CatalogProducts`` (stock, groups) and the rules;
- ``short_strips``: strips of the rules configuration with fewer than 5 items (every gender
  has thousands of products that may be shown, so each should be full): must be 0;
- ``deeper_searches``: how many rules strips needed a search beyond the stored list.

And the events of the strip (when ``EVENTS`` is on): ``event_page_p50_ms``, what rendering the
strip's event tokens adds to a page (the tag rendered with events on, minus off, per strip);
``event_write_p50_ms``, one batch of 5 impressions posted to the events endpoint and written;
``events_per_s``, events written per second by batches of 5, one client.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, cpu_name  # noqa: E402
from scale import (  # noqa: E402
    BACKENDS,
    Catalog,
    bulk_load,
    cpu_flags,
    ms,
    open_database,
    real_catalog,
    real_nearest,
)

LIMIT = 5
#: Variants per group: a garment in three colours.
GROUP_SIZE = 3


def setup_django(database_url: str, index: dict) -> None:
    import secrets

    os.environ["DATABASE_URL"] = database_url
    os.environ["VISUAL_RECS_BENCH_INDEX"] = json.dumps(index)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.rules_settings"
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.pop("CELERY_BROKER_URL", None)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django

    django.setup()


def merchandise(catalog: Catalog, sold_out: float, rng: np.random.Generator) -> None:
    """Stock and variant groups on the loaded products: groups of ``GROUP_SIZE`` made from one sample photo."""
    from django.db import transaction

    from visual_recs.contrib.catalog.models import Product

    n = len(catalog.genders)
    out = rng.random(n) < sold_out
    with transaction.atomic():
        Product.objects.filter(pk__in=[int(i) + 1 for i in np.flatnonzero(out)]).update(stock=0)
        groups: dict[str, list[int]] = {}
        for base in np.unique(catalog.bases):
            pks = (np.flatnonzero(catalog.bases == base) + 1).tolist()
            for start in range(0, len(pks), GROUP_SIZE):
                groups[f"photo-{base}-{start // GROUP_SIZE}"] = pks[start : start + GROUP_SIZE]
        for group, pks in groups.items():
            Product.objects.filter(pk__in=pks).update(group=group)


def fill_index(catalog: Catalog) -> None:
    """Every vector into the index (no lists: see the module)."""
    from visual_recs import registry
    from visual_recs.backends import get_index
    from visual_recs.backends.base import Entry
    from visual_recs.indexing.space import current_space

    index = get_index()
    collection = current_space(registry.get("products")).collection
    n = len(catalog.genders)
    for start in range(0, n, 2000):
        entries = [
            Entry(str(i + 1), str(catalog.genders[i]), bool(catalog.shown[i]), catalog.vectors[i])
            for i in range(start, min(n, start + 2000))
        ]
        index.add(collection, entries)


def write_lists(catalog: Catalog, sample: np.ndarray) -> dict[int, list[int]]:
    """The stored lists of the sampled products, as the app builds them; returns them by pk."""
    from django.conf import settings

    from visual_recs import registry
    from visual_recs.models import FeatureVector, SimilarItem

    k = settings.VISUAL_RECS.get("NEIGHBOURS", 20)
    content_type = registry.get("products").content_type
    lists: dict[int, list[int]] = {}
    rows = []
    for pk in sample.tolist():
        gender = catalog.genders[pk - 1]
        members = np.flatnonzero((catalog.genders == gender) & catalog.shown)
        members = members[members != pk - 1]
        distances = np.linalg.norm(catalog.vectors[members] - catalog.vectors[pk - 1], axis=1)
        order = np.lexsort((np.char.mod("%d", members + 1), distances))[:k]
        lists[pk] = (members[order] + 1).tolist()
        rows += [
            SimilarItem(content_type=content_type, source_id=str(pk), target_id=str(members[i] + 1), distance=float(distances[i]))
            for i in order
        ]
    SimilarItem.objects.bulk_create(rows, batch_size=1000)
    for pk, targets in lists.items():
        radius = float(np.linalg.norm(catalog.vectors[targets[-1] - 1] - catalog.vectors[pk - 1]))
        FeatureVector.objects.filter(content_type=content_type, object_id=str(pk)).update(list_radius=radius)
    return lists


def write_rules(catalog: Catalog, lists: dict[int, list[int]], rng: np.random.Generator) -> int:
    """Three rules per sampled product, and one partition-wide exclude per gender (see the module)."""
    from visual_recs import registry
    from visual_recs.contrib.catalog.models import Product
    from visual_recs.models import Rule

    content_type = registry.get("products").content_type
    wanted = {t for targets in lists.values() for t in targets} | set(lists)
    types = dict(Product.objects.filter(pk__in=wanted).values_list("pk", "product_type"))
    rules = []
    for pk, targets in lists.items():
        gender = catalog.genders[pk - 1]
        same_gender = np.flatnonzero(catalog.genders == gender) + 1
        pinned = int(rng.choice(same_gender[same_gender != pk]))
        rules += [
            Rule(content_type=content_type, kind=Rule.Kind.PIN, source_id=str(pk), target_id=str(pinned), position=2),
            Rule(content_type=content_type, kind=Rule.Kind.EXCLUDE, source_id=str(pk), field="product_type", value=excluded_type(pk, targets, types)),
            Rule(content_type=content_type, kind=Rule.Kind.BOOST, source_id=str(pk), field="colour", strength=0.3),
        ]
    for gender in np.unique(catalog.genders):
        members = np.flatnonzero(catalog.genders == gender) + 1
        rules.append(Rule(content_type=content_type, kind=Rule.Kind.EXCLUDE, partition=str(gender), target_id=str(int(rng.choice(members)))))
    Rule.objects.bulk_create(rules)
    return len(rules)


def excluded_type(pk: int, targets: list[int], types: dict[int, str]) -> str:
    """A category a merchandiser would keep out of this strip: the farthest listed type other than the
    product's own (a sock in a shoe's strip), else a type the list lacks (the rule then removes nothing)."""
    own = types.get(pk) or ""
    others = [types[t] for t in reversed(targets) if types[t] != own]
    return others[0] if others else "Not in this list"


def plain_declaration():
    """The bundled Product as declared before the merchandising layer: no stock, no groups."""
    from visual_recs.contrib.catalog import CatalogProducts

    class PlainProducts(CatalogProducts):
        group_field = None

        def available(self, queryset):
            return queryset

    return PlainProducts


def measure_reads(sample: np.ndarray, rounds: int) -> dict:
    """Each sampled product read plain and with the rules, in turn (see the module)."""
    from django.conf import settings

    from visual_recs import indexing
    from visual_recs.contrib.catalog import CatalogProducts
    from visual_recs.contrib.catalog.models import Product
    from visual_recs.indexing import reading

    products = list(Product.objects.filter(pk__in=sample.tolist()))
    models = settings.VISUAL_RECS["MODELS"]  # switched in place: no setting_changed, so the index keeps its caches
    configurations = {
        "plain": ({"products": plain_declaration()}, {"rules": False}),
        "rules": ({"products": CatalogProducts}, {"rules": True}),
    }
    deeper = {"count": 0}
    original = reading._hits_from_index

    def counted(*args, **kwargs):
        deeper["count"] += 1
        return original(*args, **kwargs)

    times: dict[str, list[float]] = {name: [] for name in configurations}
    short = 0
    for round_ in range(rounds + 1):  # round 0 warms up
        for product in products:
            for name, (declared, options) in configurations.items():
                settings.VISUAL_RECS["MODELS"] = declared
                if name == "rules" and round_ == 1:
                    reading._hits_from_index = counted
                started = time.perf_counter()
                found = indexing.recommendations(product, LIMIT, **options)
                elapsed = time.perf_counter() - started
                reading._hits_from_index = original
                if round_:
                    times[name].append(elapsed)
                    if name == "rules" and round_ == 1 and len(found.items) < LIMIT:
                        short += 1
    settings.VISUAL_RECS["MODELS"] = models
    return {
        "read_p50_ms_plain": ms(times["plain"], 50),
        "read_p95_ms_plain": ms(times["plain"], 95),
        "read_p50_ms_rules": ms(times["rules"], 50),
        "read_p95_ms_rules": ms(times["rules"], 95),
        "rules_ratio_p50": ms(times["rules"], 50) / ms(times["plain"], 50),
        "short_strips": short,
        "deeper_searches": deeper["count"],
        "reads": len(times["rules"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, required=True)
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="exact")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--sample", type=int, default=300, help="products whose strips are read (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds over the sample (default 3)")
    parser.add_argument("--sold-out", type=float, default=0.10, help="share of products out of stock (default 0.10)")
    parser.add_argument("--events", type=int, default=2000, help="events written for events_per_s (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    index_config = BACKENDS[args.backend]
    database_url, drop_database, where = open_database(args.backend, args.products, args.keep)
    load_at_start = os.getloadavg()
    figures: dict = {"products": args.products, "backend": args.backend, "sample": args.sample}
    try:
        setup_django(database_url, index_config)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        real, rows = real_catalog()
        real_near = real_nearest(real, np.array([row["Gender"] for row in rows]))
        sigma = float(np.median(real_near[:, 0]) / np.sqrt(2 * real.shape[1]))
        catalog = Catalog(args.products, real, rows, sigma, rng)
        print(f"{args.products} products ({args.backend}, {where})", flush=True)
        started = time.perf_counter()
        bulk_load(catalog)
        merchandise(catalog, args.sold_out, rng)
        fill_index(catalog)
        shown = np.flatnonzero(catalog.shown) + 1
        sample = rng.choice(shown, size=min(args.sample, len(shown)), replace=False)
        lists = write_lists(catalog, sample)
        figures["rules"] = write_rules(catalog, lists, rng)
        figures["setup_s"] = time.perf_counter() - started
        print(f"set up in {figures['setup_s']:.0f} s; reading {len(sample)} strips x {args.rounds} rounds ...", flush=True)
        figures.update(measure_reads(sample, args.rounds))
        figures.update(measure_events(sample, args.events))
        figures["machine"] = {
            "cpus": os.cpu_count(),
            "cpu_flags": cpu_flags(),
            "loadavg_start": load_at_start,
            "loadavg_end": os.getloadavg(),
        }
    finally:
        from django.db import connections

        connections.close_all()
        drop_database()
    report(figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def measure_events(sample: np.ndarray, count: int) -> dict:
    """What events cost: the strip's tokens on the page, and batches of 5 impressions written.

    The page cost is the template tag rendered for a shopper's request with ``EVENTS`` on minus
    the same render with it off, product by product in turn (medians of each, then the
    difference). The write is ``POST visual-recs/events/`` through Django's test client (the
    view, the signature checks, one bulk insert), the tokens those renders signed.
    """
    from django.conf import settings
    from django.template import Context, Template
    from django.test import Client, RequestFactory

    from visual_recs.contrib.catalog.models import Product
    from visual_recs.models import Event

    template = Template("{% load visual_recs %}{% similar_items product limit=5 as items %}")
    factory = RequestFactory()
    products = list(Product.objects.filter(pk__in=sample.tolist()))
    on, off, batches = [], [], []
    for round_ in range(3):
        for product in products:
            for events_on in (True, False):
                settings.VISUAL_RECS["EVENTS"] = events_on
                request = factory.get("/", HTTP_USER_AGENT=CHROME)
                context = Context({"product": product, "request": request})
                started = time.perf_counter()
                template.render(context)
                elapsed = time.perf_counter() - started
                if round_:
                    (on if events_on else off).append(elapsed)
                if events_on:
                    tokens = [card.event_token for card in context["items"] if card.event_token]
                    if len(tokens) == 5:
                        batches.append([{"token": token, "kind": "impression"} for token in tokens])
    settings.VISUAL_RECS["EVENTS"] = True
    client = Client(HTTP_USER_AGENT=CHROME)
    writes = []
    batches = batches[: max(1, count // 5)]
    before = Event.objects.count()
    started_all = time.perf_counter()
    for batch in batches:
        started = time.perf_counter()
        response = client.post("/visual-recs/events/", data=json.dumps({"events": batch}), content_type="application/json")
        writes.append(time.perf_counter() - started)
        assert response.status_code == 204, response.content
    total = time.perf_counter() - started_all
    written = Event.objects.count() - before
    return {
        "event_page_p50_ms": ms(on, 50) - ms(off, 50),
        "strip_render_p50_ms_events_off": ms(off, 50),
        "strip_render_p50_ms_events_on": ms(on, 50),
        "event_write_p50_ms": ms(writes, 50),
        "event_write_p95_ms": ms(writes, 95),
        "events_written": written,
        "events_per_s": written / total,
    }


def report(f: dict) -> None:
    m = f["machine"]
    print(f"\n{f['products']} products, {f['backend']}; {m['cpus']} CPUs ({cpu_name(m['cpu_flags'])}), load {m['loadavg_start'][0]:.1f} -> {m['loadavg_end'][0]:.1f}")
    print(f"read p50 plain {f['read_p50_ms_plain']:.2f} ms, with rules+stock+groups {f['read_p50_ms_rules']:.2f} ms "
          f"({f['rules_ratio_p50']:.2f}x; target <= 1.5x); p95 {f['read_p95_ms_plain']:.2f} / {f['read_p95_ms_rules']:.2f} ms")
    print(f"short strips {f['short_strips']} of {f['sample']} (target 0); strips that searched beyond their list: {f['deeper_searches']}")
    print(f"events: the strip's tokens cost the page {f['event_page_p50_ms']:.3f} ms p50 (render "
          f"{f['strip_render_p50_ms_events_off']:.2f} -> {f['strip_render_p50_ms_events_on']:.2f} ms; target <= 1 ms); "
          f"a batch of 5 written in {f['event_write_p50_ms']:.2f} ms p50 ({f['event_write_p95_ms']:.2f} p95); "
          f"{f['events_per_s']:.0f} events/s ({f['events_written']} written)")


if __name__ == "__main__":
    main()
