"""Scale: N synthetic products on one index backend, and every cost a shop pays for them, in one run.

    .venv/bin/python bench/scale.py --products N --backend {exact,pgvector} [--json PATH]
        [--saves 200] [--requests 2000] [--clients 16] [--recall-sample 1000] [--searches 100]
        [--status-runs 20] [--option NAME=VALUE ...] [--seed 0] [--keep] [--staff-only]

The catalog: N products in the sample's four genders (Men, Women, Boys, Girls, in the shares of
fashion.csv, which has no Unisex row), each with the ResNet50 vector of a random sample photo of
its gender plus Gaussian noise, so that distances look like real ones. The 2,182 real vectors
are computed once with the app's extractor and cached under var/bench/. The noise has, per
dimension, sigma = d1 / sqrt(2 * dims), d1 being the real catalog's median distance from a
product to its nearest other photo of its gender: two noisy copies of one photo are then as far
apart as a real product and its nearest neighbour. The run prints the synthetic catalog's
nearest-neighbour distances beside the real ones. 2% of the products are inactive (not shown).

A fresh database per run: a SQLite file under var/bench/ for exact; for pgvector a new database
on the private PostgreSQL 16 + pgvector server of the test suite (tests/pgvector_server.py).
Both are removed at the end unless --keep. The settings are the demo shop's with DEBUG off and
the run's INDEX (bench/scale_settings.py); ``--option`` sets the backend's OPTIONS.

Measured in one run, in this order:
1. Bulk load: Products and their ready FeatureVector rows bulk-created (no signals). Then
   ``indexing.rebuild_index``: the index filled from those rows, then every neighbour list
   built (the list build is the time after the last batch of vectors reached the index).
2. Staff paths, on the catalog just built (nothing to do), each in a fresh process: the
   status endpoint's ``indexing.index_overview`` timed ``--status-runs`` times after one warm-up
   call (the endpoint is a shell over it); then one ``tasks.sweep`` (the to-do list, unfinished
   lists, a reconcile slice), its time and its peak resident memory (VmHWM, reset when the
   sweep starts) beside the process's resident memory before it: what the sweep's bookkeeping
   costs at N products.
   ``--staff-only`` measures this alone, in minutes rather than the list build's hour on a
   busy machine: the rows are loaded marked as having their lists (``list_radius`` 0, no
   list rows, the index not filled), which is all these paths read, and the run stops here.
3. Per-save maintenance: ``indexing.index_vectors`` for one product, vector given (no photo, no
   CNN), in a worker process of its own, warmed with one search per partition as a long-lived
   worker is. New products and changed vectors (a product's photo replaced by another of its
   gender) alternate; each call is timed. The worker's resident memory is read after the saves.
   Then, in the same process, search by photo without the CNN (``search_by_vector``): over every
   partition (``partition=None``, the search page's default) and within the query's gender.
4. List recall@10 on a sample of products: the first 10 of each stored list against the exact
   10 nearest shown products of its partition, by numpy brute force over the vectors the run made.
5. ``GET /api/visual-recs/products/<pk>/similar/?limit=5`` through gunicorn (2 sync workers on
   loopback), random products: first one client at a time (the service time), then 16
   closed-loop clients. 16 clients on 2 workers queue by construction, so their latency is
   queueing plus service; the table shows both and the throughput. Then the resident memory of
   the two web workers.
6. Disk: the database's size per product, and its main tables (for pgvector the vector table
   and its HNSW index apart).

The figures go to the terminal as a table and, with --json, to a file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import secrets
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from common import CATALOG_DIR, REPO, Gunicorn, catalog_rows, cpu_flags, get, rss_mb

VAR = REPO / "var" / "bench"
GENDERS = ("Men", "Women", "Boys", "Girls")
HIDDEN_SHARE = 0.02
BACKENDS = {
    "exact": {"BACKEND": "visual_recs.backends.indexes.ExactIndex", "OPTIONS": {}},
    "pgvector": {"BACKEND": "visual_recs.backends.pgvector.PgvectorIndex", "OPTIONS": {"dimensions": 2048}},
}
ENDPOINT = "/api/visual-recs/products/{}/similar/?limit=5"
RECALL_K = 10
LOAD_BATCH = 2000


# --- statistics ------------------------------------------------------------------------------


def ms(seconds: list[float], q: float) -> float:
    """The ``q``-th percentile of ``seconds``, in milliseconds."""
    return float(np.percentile(np.asarray(seconds) * 1000, q)) if seconds else float("nan")


# --- the catalog -----------------------------------------------------------------------------


def real_catalog() -> tuple[np.ndarray, list[dict[str, str]]]:
    """The sample's ResNet50 vectors (row i for fashion.csv's row i) and rows; computed once, then cached."""
    from visual_recs.backends import get_extractor
    from visual_recs.images import load_image

    rows = catalog_rows()
    extractor = get_extractor()
    cache = VAR / f"real-vectors-{re.sub(r'[^A-Za-z0-9.-]+', '_', extractor.model_id)}.npy"
    if cache.exists():
        vectors = np.load(cache)
        if len(vectors) == len(rows):
            return vectors, rows
    print(f"computing the {len(rows)} sample vectors with {extractor.model_id} (once; cached in {cache}) ...", flush=True)
    started = time.perf_counter()
    paths = [CATALOG_DIR / "images" / row["Image"] for row in rows]
    vectors = np.empty((len(rows), extractor.dims), dtype=np.float32)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(paths), extractor.batch_size):
            chunk = paths[start : start + extractor.batch_size]
            pixels = list(pool.map(lambda p: load_image(p, size=extractor.input_size, fit=extractor.fit), chunk))
            vectors[start : start + len(chunk)] = extractor.extract(np.stack(pixels))
    VAR.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    print(f"... {time.perf_counter() - started:.0f} s", flush=True)
    return vectors, rows


def nearest_distances(queries: np.ndarray, candidates: np.ndarray, k: int, skip_zero: bool = False) -> np.ndarray:
    """(len(queries), k) distances to the k nearest candidates (float64), optionally ignoring distance 0."""
    sq = np.einsum("ij,ij->i", candidates, candidates)
    out = np.empty((len(queries), k))
    for start in range(0, len(queries), 256):
        q = queries[start : start + 256]
        d2 = np.einsum("ij,ij->i", q, q)[:, None] + sq[None, :] - 2 * q @ candidates.T
        d = np.sqrt(np.maximum(d2, 0))
        if skip_zero:
            d[d < 1e-3] = np.inf
        out[start : start + len(q)] = np.sort(np.partition(d, k, axis=1)[:, :k], axis=1)
    return out


def real_nearest(real: np.ndarray, genders: np.ndarray) -> np.ndarray:
    """Each real product's distances to its 10 nearest other photos of its gender (duplicate photos left out)."""
    rows = []
    for gender in GENDERS:
        members = real[genders == gender]
        rows.append(nearest_distances(members, members, RECALL_K, skip_zero=True))
    return np.concatenate(rows)


class Catalog:
    """The synthetic products: for product i (pk i + 1), its gender, shown flag, base photo and vector."""

    def __init__(self, n: int, real: np.ndarray, rows: list[dict[str, str]], sigma: float, rng: np.random.Generator):
        self.real, self.rows, self.sigma, self.rng = real, rows, sigma, rng
        real_genders = np.array([row["Gender"] for row in rows])
        self.members = {gender: np.flatnonzero(real_genders == gender) for gender in GENDERS}
        shares = np.array([len(self.members[g]) for g in GENDERS], dtype=float) / len(rows)
        counts = np.floor(shares * n).astype(int)
        counts[np.argmax(counts)] += n - counts.sum()
        self.genders = rng.permutation(np.repeat(np.array(GENDERS), counts))
        self.shown = rng.random(n) >= HIDDEN_SHARE
        self.bases = np.array([rng.choice(self.members[g]) for g in self.genders])
        self.vectors = np.empty((n, real.shape[1]), dtype=np.float32)
        for start in range(0, n, 10_000):
            self.vectors[start : start + 10_000] = self.noisy(self.bases[start : start + 10_000])

    def noisy(self, bases: np.ndarray) -> np.ndarray:
        noise = self.rng.standard_normal((len(bases), self.real.shape[1]), dtype=np.float32)
        return self.real[bases] + self.sigma * noise

    def random_base(self, gender: str) -> int:
        return int(self.rng.choice(self.members[gender]))

    def extend(self, genders: list[str], bases: list[int], vectors: list[np.ndarray]) -> None:
        """Add shown products (the saves' new products), pks following the last."""
        self.genders = np.append(self.genders, genders)
        self.shown = np.append(self.shown, [True] * len(genders))
        self.bases = np.append(self.bases, bases)
        self.vectors = np.concatenate([self.vectors, np.stack(vectors)])

    def fields(self, pk: int) -> dict:
        """Product fields of product ``pk``: its base photo's catalog fields (title numbered)."""
        row = self.rows[self.bases[pk - 1]]
        return {
            "title": f"{row['ProductTitle']} #{pk}",
            "gender": str(self.genders[pk - 1]),
            "category": row["Category"],
            "subcategory": row["SubCategory"],
            "product_type": row["ProductType"],
            "colour": row["Colour"],
            "usage": row["Usage"],
            "image": f"images/{row['Image']}",
            "is_active": bool(self.shown[pk - 1]),
        }


def photo_hash(pk: int) -> str:
    """A distinct photo hash per product: no product is a byte-identical duplicate of another."""
    return hashlib.sha256(f"bench-scale-photo-{pk}".encode()).hexdigest()


# --- the database ----------------------------------------------------------------------------


def open_database(backend: str, n: int, keep: bool):
    """A fresh database for this run: (DATABASE_URL, a function that removes it, description)."""
    if backend == "exact":
        path = VAR / f"scale-exact-{n}-{os.getpid()}.sqlite3"
        VAR.mkdir(parents=True, exist_ok=True)

        def drop() -> None:
            if not keep:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)

        return f"sqlite:///{path}", drop, str(path)
    sys.path.insert(0, str(REPO))
    from tests import pgvector_server

    server = pgvector_server.server()
    name = f"bench_scale_{n}_{os.getpid()}"
    server.psql(f"CREATE DATABASE {name};")

    def drop() -> None:
        if not keep:
            server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")

    url = pgvector_server.database_url().rsplit("/", 1)[0] + "/" + name
    return url, drop, f"database {name} on {pgvector_server.PGDATA}"


def setup_django(database_url: str, index: dict) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["VISUAL_RECS_BENCH_INDEX"] = json.dumps(index)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.scale_settings"
    # Measured as deployed (DEBUG off), which the demo settings allow only with a key: one for this run.
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["MEDIA_ROOT"] = str(CATALOG_DIR)
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django

    django.setup()


def bulk_load(catalog: Catalog, *, lists_built: bool = False) -> None:
    """Products and their ready FeatureVector rows, as an import script would write them (no signals).

    ``lists_built``: the rows say their lists are done (``--staff-only``; see the module).
    """
    from django.db import transaction

    from visual_recs import registry
    from visual_recs.backends import get_extractor
    from visual_recs.contrib.catalog.models import Product
    from visual_recs.models import FeatureVector, IndexStatus

    content_type = registry.get("products").content_type
    model_id = get_extractor().model_id
    n = len(catalog.genders)
    for start in range(0, n, LOAD_BATCH):
        pks = range(start + 1, min(n, start + LOAD_BATCH) + 1)
        with transaction.atomic():
            Product.objects.bulk_create([Product(pk=pk, **catalog.fields(pk)) for pk in pks], batch_size=500)
            FeatureVector.objects.bulk_create(
                [
                    FeatureVector(
                        content_type=content_type,
                        object_id=str(pk),
                        partition=str(catalog.genders[pk - 1]),
                        listed=bool(catalog.shown[pk - 1]),
                        status=IndexStatus.READY,
                        model_id=model_id,
                        dims=catalog.vectors.shape[1],
                        vector=FeatureVector.to_bytes(catalog.vectors[pk - 1]),
                        image_sha256=photo_hash(pk),
                        list_radius=0.0 if lists_built else None,
                    )
                    for pk in pks
                ],
                batch_size=500,
            )


def build_index() -> tuple[float, float]:
    """``rebuild_index``: (seconds to fill the index, seconds to build the lists after it)."""
    from visual_recs import registry
    from visual_recs.indexing import rebuild_index

    started = time.perf_counter()
    filled = [started]
    rebuild_index(registry.get("products"), progress=lambda _: filled.append(time.perf_counter()))
    ended = time.perf_counter()
    return filled[-1] - started, ended - filled[-1]


# --- the staff paths: status and sweep ------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    """Start this process's peak (VmHWM) again from its resident memory now (Linux 4.0+)."""
    Path("/proc/self/clear_refs").write_text("5")


def status_run(runs: int) -> dict:
    """In a fresh process: ``index_overview`` (what ``GET status/`` returns) timed ``runs`` times."""
    import django

    django.setup()
    from visual_recs.indexing import index_overview

    index_overview()  # content types and the extractor's model_id are looked up once per process
    reset_peak_rss()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        index_overview()
        times.append(time.perf_counter() - started)
    return {"times": times, "peak_rss_mb": peak_rss_mb()}


def sweep_run() -> dict:
    """In a fresh process: one ``tasks.sweep``, its seconds, the process's memory before it and its peak during it."""
    import django

    django.setup()
    from visual_recs import tasks
    from visual_recs.backends import get_extractor, get_index

    get_extractor(), get_index()  # built before the baseline: every process that sweeps has them
    before = rss_mb()
    reset_peak_rss()  # the imports' own peak would hide the sweep's
    started = time.perf_counter()
    summary = tasks.sweep()
    return {"seconds": time.perf_counter() - started, "rss_before_mb": before, "peak_rss_mb": peak_rss_mb(), "summary": summary}


def measure_staff_paths(runs: int) -> dict:
    """``status_*`` and ``sweep_*`` figures, each path in a process of its own (spawned: no memory of this one)."""
    from django.db import connections

    connections.close_all()
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        status = pool.submit(status_run, runs).result()
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        sweep = pool.submit(sweep_run).result()
    return {
        "status_p50_ms": ms(status["times"], 50),
        "status_p95_ms": ms(status["times"], 95),
        "status_runs": runs,
        "status_peak_rss_mb": status["peak_rss_mb"],
        "sweep_s": sweep["seconds"],
        "sweep_peak_rss_mb": sweep["peak_rss_mb"],
        "sweep_rss_before_mb": sweep["rss_before_mb"],
        "sweep_summary": sweep["summary"],
    }


# --- the worker: saves and searches ----------------------------------------------------------


def worker_run(saves: list[dict], searches: list[tuple[np.ndarray, str]]) -> dict:
    """In a fresh process: time each save's ``index_vectors`` and each ``search_by_vector``.

    ``saves``: {"kind": "new" | "changed", "pk", "fields" (new ones), "vector"}. Runs in a process of
    its own so that its resident memory is that of a worker, not of this benchmark's arrays.
    """
    import django

    django.setup()
    from visual_recs import registry
    from visual_recs.indexing import index_vectors, search_by_vector
    from visual_recs.contrib.catalog.models import Product

    products = registry.get("products")
    started = time.perf_counter()
    for vector, gender in searches[: len(GENDERS)]:
        search_by_vector(products, vector, partition=gender)  # a long-lived worker has its caches loaded
    warmup = time.perf_counter() - started
    times: dict[str, list[float]] = {"new": [], "changed": []}
    for save in saves:
        if save["kind"] == "new":
            product = Product(pk=save["pk"], **save["fields"])
            Product.objects.bulk_create([product])  # no signal: the save's task is what is timed
        else:
            product = Product.objects.get(pk=save["pk"])
        started = time.perf_counter()
        summary = index_vectors([(product, save["vector"])], image_sha256=photo_hash(save["pk"]))
        times[save["kind"]].append(time.perf_counter() - started)
        assert summary.indexed == 1, summary
    worker_rss = rss_mb()
    all_partitions, one_partition, empty = [], [], 0
    for vector, gender in searches:
        started = time.perf_counter()
        found = search_by_vector(products, vector, limit=5)
        all_partitions.append(time.perf_counter() - started)
        started = time.perf_counter()
        search_by_vector(products, vector, partition=gender, limit=5)
        one_partition.append(time.perf_counter() - started)
        empty += not found
    return {
        "warmup_s": warmup,
        "save_new": times["new"],
        "save_changed": times["changed"],
        "worker_rss_mb": worker_rss,
        "search_all": all_partitions,
        "search_one": one_partition,
        "search_empty": empty,
    }


def plan_saves(catalog: Catalog, count: int) -> list[dict]:
    """Alternately a new product and an existing product whose photo changed; ``catalog`` is updated."""
    saves = []
    n = len(catalog.genders)
    shares = [len(catalog.members[g]) / len(catalog.rows) for g in GENDERS]
    new_genders, new_bases, new_vectors = [], [], []
    for i in range(count):
        if i % 2 == 0:
            gender = str(catalog.rng.choice(GENDERS, p=shares))
            base = catalog.random_base(gender)
            vector = catalog.noisy(np.array([base]))[0]
            new_genders.append(gender)
            new_bases.append(base)
            new_vectors.append(vector)
            saves.append({"kind": "new", "pk": n + len(new_genders), "vector": vector})
        else:
            pk = int(catalog.rng.integers(1, n + 1))
            base = catalog.random_base(str(catalog.genders[pk - 1]))
            vector = catalog.noisy(np.array([base]))[0]
            catalog.bases[pk - 1], catalog.vectors[pk - 1] = base, vector
            saves.append({"kind": "changed", "pk": pk, "vector": vector})
    if new_genders:
        catalog.extend(new_genders, new_bases, new_vectors)
    for save in saves:
        if save["kind"] == "new":
            save["fields"] = catalog.fields(save["pk"])
    return saves


# --- recall ----------------------------------------------------------------------------------


def list_recall(catalog: Catalog, sample: np.ndarray) -> tuple[list[float], np.ndarray, int]:
    """recall@10 of the stored lists of ``sample`` (pks), the exact 1st and 10th nearest distances, lists missing."""
    from visual_recs import registry
    from visual_recs.models import SimilarItem

    content_type = registry.get("products").content_type
    stored: dict[str, list[str]] = {}
    for start in range(0, len(sample), 500):
        rows = SimilarItem.objects.filter(
            content_type=content_type, source_id__in=[str(pk) for pk in sample[start : start + 500]]
        ).order_by("source_id", "distance", "target_id")
        for source_id, target_id in rows.values_list("source_id", "target_id"):
            stored.setdefault(source_id, []).append(target_id)
    stored = {source_id: targets[:RECALL_K] for source_id, targets in stored.items()}
    recalls, distances = [], []
    for gender in GENDERS:
        queries = sample[catalog.genders[sample - 1] == gender]
        candidates = np.flatnonzero((catalog.genders == gender) & catalog.shown) + 1  # pks
        matrix = catalog.vectors[candidates - 1]
        sq = np.einsum("ij,ij->i", matrix, matrix)
        for pk in queries:
            q = catalog.vectors[pk - 1]
            approx = sq - 2 * matrix @ q
            approx[candidates == pk] = np.inf
            head = np.argpartition(approx, 3 * RECALL_K)[: 3 * RECALL_K]
            # The float32 shortcut picks the candidates; exact float64 distances order them.
            exact = np.sqrt(((matrix[head].astype(np.float64) - q.astype(np.float64)) ** 2).sum(axis=1))
            order = np.lexsort((candidates[head], exact))[:RECALL_K]
            truth = {str(candidates[head][i]) for i in order}
            recalls.append(len(truth & set(stored.get(str(pk), []))) / RECALL_K)
            distances.append((exact[order[0]], exact[order[-1]]))
    return recalls, np.array(distances), sum(str(pk) not in stored for pk in sample)


# --- the web ---------------------------------------------------------------------------------


def closed_loop(port: int, paths: list[str], clients: int) -> tuple[list[float], float, int]:
    """``clients`` threads, each sending its next request when the last answered: (latencies, wall s, errors)."""
    lock = threading.Lock()
    todo = iter(paths)
    latencies: list[float] = []
    errors = [0]

    def client() -> None:
        while True:
            with lock:
                path = next(todo, None)
            if path is None:
                return
            seconds, status, _ = get(port, path)
            with lock:
                latencies.append(seconds)
                errors[0] += status != 200

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started, errors[0]


def measure_endpoint(catalog: Catalog, args, rng: np.random.Generator, log: Path) -> dict:
    # Shown products only: an inactive product has no page (the endpoint answers 404).
    pks = rng.choice(np.flatnonzero(catalog.shown) + 1, size=args.single + args.requests + 50)
    paths = [ENDPOINT.format(pk) for pk in pks]
    server = Gunicorn(2, log)
    try:
        server.wait_ready(paths[0])
        for path in paths[:50]:  # both workers import, connect and resolve URLs before the timings
            get(server.port, path)
        single, empty, errors = [], 0, 0
        for path in paths[50 : 50 + args.single]:
            seconds, status, body = get(server.port, path)
            single.append(seconds)
            errors += status != 200
            empty += status == 200 and not json.loads(body)["results"]
        logged = len(server.server_times())
        latencies, wall, concurrent_errors = closed_loop(server.port, paths[50 + args.single :], args.clients)
        time.sleep(0.5)  # the access log is written after each response
        in_worker = server.server_times()[logged:]
        web_rss = [rss_mb(pid) for pid in server.worker_pids()]
    finally:
        server.stop()
    return {
        "single_p50_ms": ms(single, 50),
        "single_p95_ms": ms(single, 95),
        "single_empty": empty,
        "similar_p50_ms": ms(latencies, 50),
        "similar_p95_ms": ms(latencies, 95),
        "similar_p99_ms": ms(latencies, 99),
        "similar_mean_ms": float(np.mean(latencies) * 1000),
        "similar_server_p50_ms": ms(in_worker, 50),
        "similar_server_p95_ms": ms(in_worker, 95),
        "similar_rps": len(latencies) / wall,
        "similar_requests": len(latencies),
        "similar_errors": errors + concurrent_errors,
        "clients": args.clients,
        "web_rss_mb": max(web_rss),
        "web_rss_mb_each": web_rss,
    }


# --- disk ------------------------------------------------------------------------------------


def disk_usage(backend: str, database_path: str) -> dict[str, int]:
    """Bytes of the database and of its main tables (with their indexes)."""
    from django.db import connection

    from visual_recs.contrib.catalog.models import Product
    from visual_recs.models import ExactIndexEntry, FeatureVector, SimilarItem

    tables = {
        "products": Product._meta.db_table,
        "feature_vectors": FeatureVector._meta.db_table,
        "similar_items": SimilarItem._meta.db_table,
    }
    sizes: dict[str, int] = {}
    with connection.cursor() as cursor:
        if backend == "exact":
            tables["index_entries"] = ExactIndexEntry._meta.db_table
            sizes["database"] = sum(
                Path(f"{database_path}{suffix}").stat().st_size
                for suffix in ("", "-wal")
                if Path(f"{database_path}{suffix}").exists()
            )
            cursor.execute("SELECT tbl_name, name FROM sqlite_master WHERE type IN ('table', 'index')")
            owner = {name: table for table, name in cursor.fetchall()}
            cursor.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
            per_table: dict[str, int] = {}
            for name, size in cursor.fetchall():
                per_table[owner.get(name, name)] = per_table.get(owner.get(name, name), 0) + size
            for key, table in tables.items():
                sizes[key] = per_table.get(table, 0)
        else:
            from visual_recs.backends import get_index

            index = get_index()
            cursor.execute("SELECT pg_database_size(current_database())")
            sizes["database"] = cursor.fetchone()[0]
            for key, table in tables.items():
                cursor.execute("SELECT pg_total_relation_size(%s)", [table])
                sizes[key] = cursor.fetchone()[0]
            # The vectors' table: its rows (with TOAST, where a 4 KB halfvec lives), its btrees, its HNSW index.
            cursor.execute(
                "SELECT pg_table_size(%s), pg_indexes_size(%s) - pg_relation_size(%s), pg_relation_size(%s)",
                [index.table, index.table, index.hnsw_index, index.hnsw_index],
            )
            sizes["vector_table_rows"], sizes["vector_table_btrees"], sizes["hnsw_index"] = cursor.fetchone()
    return sizes


# --- the run ---------------------------------------------------------------------------------


def parse_option(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, required=True, help="synthetic products to load")
    parser.add_argument("--backend", choices=sorted(BACKENDS), required=True)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--saves", type=int, default=200, help="timed saves, half new products (default 200)")
    parser.add_argument("--requests", type=int, default=2000, help="requests of the concurrent phase (default 2000)")
    parser.add_argument("--single", type=int, default=300, help="requests of the one-client phase (default 300)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--recall-sample", type=int, default=1000, help="products whose lists are checked (default 1000)")
    parser.add_argument("--searches", type=int, default=100, help="timed searches by vector (default 100)")
    parser.add_argument("--status-runs", type=int, default=20, help="timed calls of the status overview (default 20)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="an OPTION of the index backend")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database (its location is printed)")
    parser.add_argument("--staff-only", action="store_true", help="only the status and sweep figures (see the module)")
    args = parser.parse_args()

    index_config = {**BACKENDS[args.backend]}
    index_config["OPTIONS"] = {**index_config["OPTIONS"], **dict(parse_option(o) for o in args.option)}
    rng = np.random.default_rng(args.seed)
    database_url, drop_database, where = open_database(args.backend, args.products, args.keep)
    load_at_start = os.getloadavg()
    figures: dict = {"products": args.products, "backend": args.backend, "index": index_config}
    try:
        setup_django(database_url, index_config)
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0)
        real, rows = real_catalog()
        real_genders = np.array([row["Gender"] for row in rows])
        real_near = real_nearest(real, real_genders)
        sigma = float(np.median(real_near[:, 0]) / np.sqrt(2 * real.shape[1]))
        catalog = Catalog(args.products, real, rows, sigma, rng)
        print(f"{args.products} products ({args.backend}, {where}); noise sigma {sigma:.4f} per dimension", flush=True)

        started = time.perf_counter()
        bulk_load(catalog, lists_built=args.staff_only)
        figures["load_s"] = time.perf_counter() - started
        print(f"bulk load {figures['load_s']:.1f} s", flush=True)
        if not args.staff_only:  # see the module
            figures["index_fill_s"], figures["list_build_s"] = build_index()
            figures["build_s"] = figures["index_fill_s"] + figures["list_build_s"]
            print(f"index filled in {figures['index_fill_s']:.1f} s, lists built in {figures['list_build_s']:.1f} s", flush=True)

        figures.update(measure_staff_paths(args.status_runs))
        print(
            f"status p50 {figures['status_p50_ms']:.1f} ms; sweep {figures['sweep_s']:.1f} s, "
            f"peak {figures['sweep_peak_rss_mb']:.0f} MiB",
            flush=True,
        )

        if not args.staff_only:
            saves = plan_saves(catalog, args.saves)
            search_bases = [catalog.random_base(str(g)) for g in rng.choice(catalog.genders, size=max(args.searches, 4))]
            searches = [
                (catalog.noisy(np.array([base]))[0], rows[base]["Gender"]) for base in search_bases
            ]
            searches[: len(GENDERS)] = [(catalog.noisy(np.array([catalog.random_base(g)]))[0], g) for g in GENDERS]
            connections.close_all()
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                worker = pool.submit(worker_run, saves, searches).result()
            save_times = worker["save_new"] + worker["save_changed"]
            figures.update(
                save_p50_ms=ms(save_times, 50),
                save_p95_ms=ms(save_times, 95),
                save_new_p50_ms=ms(worker["save_new"], 50),
                save_changed_p50_ms=ms(worker["save_changed"], 50),
                saves=len(save_times),
                worker_warmup_s=worker["warmup_s"],
                worker_rss_mb=worker["worker_rss_mb"],
                search_p50_ms=ms(worker["search_all"], 50),
                search_p95_ms=ms(worker["search_all"], 95),
                search_partition_p50_ms=ms(worker["search_one"], 50),
                searches=len(worker["search_all"]),
                search_empty=worker["search_empty"],
            )
            print(f"saves p50 {figures['save_p50_ms']:.1f} ms; search p50 {figures['search_p50_ms']:.1f} ms", flush=True)

            sample = rng.choice(np.arange(1, len(catalog.genders) + 1), size=min(args.recall_sample, len(catalog.genders)), replace=False)
            recalls, near, missing = list_recall(catalog, sample)
            figures.update(
                recall_at_10=float(np.mean(recalls)),
                recall_at_10_min=float(np.min(recalls)),
                recall_sample=len(recalls),
                recall_lists_missing=missing,
                real_nn1_median=float(np.median(real_near[:, 0])),
                real_nn10_median=float(np.median(real_near[:, -1])),
                synthetic_nn1_median=float(np.median(near[:, 0])),
                synthetic_nn10_median=float(np.median(near[:, 1])),
                noise_sigma=sigma,
            )
            print(f"recall@10 {figures['recall_at_10']:.4f}; load test ...", flush=True)

            connections.close_all()
            log = VAR / f"scale-gunicorn-{args.backend}-{args.products}-{os.getpid()}.log"
            figures.update(measure_endpoint(catalog, args, rng, log))

            n_final = len(catalog.genders)
            figures["products_final"] = n_final
            sizes = disk_usage(args.backend, database_url.removeprefix("sqlite:///"))
            figures["disk_bytes"] = sizes
            figures["disk_kb_per_product"] = sizes["database"] / n_final / 1024
        figures["machine"] = machine(args.backend, load_at_start)
        connections.close_all()
    finally:
        drop_database()
        if args.keep:
            print(f"kept {where}")
    (staff_report if args.staff_only else report)(figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def machine(backend: str, load_at_start: tuple[float, float, float]) -> dict:
    """Where the figures were measured: CPUs and their vector instructions, load, versions."""
    from django.db import connections

    figures = {
        "cpus": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "loadavg_start": load_at_start,
        "loadavg_end": os.getloadavg(),
        "python": platform.python_version(),
    }
    if backend == "pgvector":
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT version(), (SELECT extversion FROM pg_extension WHERE extname = 'vector')")
            figures["postgresql"], figures["pgvector"] = cursor.fetchone()
    return figures


def machine_line(f: dict) -> str:
    m = f["machine"]
    return (
        f"{f['products']:,} products, {f['backend']} ({json.dumps(f['index']['OPTIONS'])}), {m['cpus']} CPUs "
        f"({', '.join(m['cpu_flags']) or 'no AVX2'}), load average {m['loadavg_start'][0]:.1f} at start, "
        f"{m['loadavg_end'][0]:.1f} at end"
    )


def staff_lines(f: dict) -> list[str]:
    return [
        f"  status (index_overview) p50 / p95 {f['status_p50_ms']:8.1f} / {f['status_p95_ms']:.1f} ms  "
        f"({f['status_runs']} calls; process peak {f['status_peak_rss_mb']:.0f} MiB)",
        f"  sweep, nothing to do             {f['sweep_s']:9.1f} s  (peak RSS {f['sweep_peak_rss_mb']:.0f} MiB, "
        f"{f['sweep_peak_rss_mb'] - f['sweep_rss_before_mb']:.0f} MiB above the process before it)",
    ]


def staff_report(f: dict) -> None:
    print("\n".join([machine_line(f), f"  bulk load (rows)                 {f['load_s']:9.1f} s", *staff_lines(f)]))


def report(f: dict) -> None:
    n = f["products_final"]
    disk = f["disk_bytes"]
    lines = [
        machine_line(f),
        f"  nearest-neighbour distance, median: real sample 1st {f['real_nn1_median']:.1f} / 10th {f['real_nn10_median']:.1f}; "
        f"synthetic 1st {f['synthetic_nn1_median']:.1f} / 10th {f['synthetic_nn10_median']:.1f} (noise sigma {f['noise_sigma']:.4f})",
        f"  bulk load (rows)                 {f['load_s']:9.1f} s",
        f"  index fill (rebuild_index)       {f['index_fill_s']:9.1f} s",
        f"  list build (rebuild_index)       {f['list_build_s']:9.1f} s",
        *staff_lines(f),
        f"  save, index_vectors  p50 / p95   {f['save_p50_ms']:9.1f} / {f['save_p95_ms']:.1f} ms  "
        f"(new p50 {f['save_new_p50_ms']:.1f}, changed p50 {f['save_changed_p50_ms']:.1f}; {f['saves']} saves; "
        f"worker warm-up {f['worker_warmup_s']:.1f} s)",
        f"  search_by_vector     p50 / p95   {f['search_p50_ms']:9.1f} / {f['search_p95_ms']:.1f} ms  "
        f"(every partition, the search page's default; one partition p50 {f['search_partition_p50_ms']:.1f} ms)",
        f"  list recall@10 (mean / min)      {f['recall_at_10']:9.4f} / {f['recall_at_10_min']:.1f}  ({f['recall_sample']} products, {f['recall_lists_missing']} without a list)",
        f"  similar, 1 client    p50 / p95   {f['single_p50_ms']:9.1f} / {f['single_p95_ms']:.1f} ms",
        f"  similar, {f['clients']} clients  p50/p95/p99 {f['similar_p50_ms']:7.1f} / {f['similar_p95_ms']:.1f} / "
        f"{f['similar_p99_ms']:.1f} ms  ({f['similar_rps']:.0f} req/s; Little: {f['clients']} / rate = "
        f"{f['clients'] / f['similar_rps'] * 1000:.1f} ms, mean {f['similar_mean_ms']:.1f} ms; "
        f"queueing {max(0.0, 1 - f['single_p50_ms'] / f['similar_p50_ms']):.0%} of p50; {f['similar_errors']} errors)",
        f"    of which in a worker p50 / p95 {f['similar_server_p50_ms']:7.1f} / {f['similar_server_p95_ms']:.1f} ms "
        "(gunicorn's access log: the rest is waiting for a free worker)",
        f"  RSS: web workers {', '.join(f'{r:.0f}' for r in f['web_rss_mb_each'])} MiB; worker {f['worker_rss_mb']:.0f} MiB",
        f"  disk {f['disk_kb_per_product']:.1f} KiB/product ({disk['database'] / 2**20:.0f} MiB): "
        + ", ".join(f"{key} {value / n / 1024:.1f}" for key, value in disk.items() if key != "database")
        + " KiB/product",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
