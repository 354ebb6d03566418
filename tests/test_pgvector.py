"""PgvectorIndex against a real PostgreSQL with pgvector (`make test-pgvector` starts one).

The backend contract itself (answers against brute force) is in test_index_contract.py; these
are what only pgvector has: the schema the migration creates, the HNSW plan, the fallback that
fills a short answer, the system check against a server without pgvector, and a server that
goes away mid-search. Option validation and the non-PostgreSQL checks run in every pass.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from visual_recs.backends.base import Entry
from visual_recs.backends.pgvector import PgvectorIndex
from visual_recs.conf import app_settings
from visual_recs.exceptions import VectorError

PGVECTOR_INDEX = "visual_recs.backends.pgvector.PgvectorIndex"
#: The machine's own PostgreSQL 15, which has no pgvector.
POSTGRES_15 = {"ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1", "PORT": 5432, "NAME": "test", "USER": "postgres", "PASSWORD": ""}
SMALL = 16  # dimensions of the tables the tests create inside their transaction


def _need_pgvector() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(f"needs PostgreSQL with pgvector, the test database is {connection.vendor}: run `make test-pgvector`")
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        if cursor.fetchone() is None:
            pytest.skip("the test database has no vector extension (migrations create it when INDEX is PgvectorIndex): "
                        "run `make test-pgvector`")
    if app_settings.INDEX["BACKEND"] != PGVECTOR_INDEX:
        pytest.skip("INDEX is not PgvectorIndex: run `make test-pgvector`")


@pytest.fixture
def pgvector(db):
    _need_pgvector()


@pytest.fixture
def small_index(pgvector):
    """A factory of 16-d indexes whose table is created inside the test's transaction (rolled back)."""

    def make(**options) -> PgvectorIndex:
        index = PgvectorIndex(dimensions=SMALL, **options)
        index.ensure_schema()
        return index

    return make


def clustered(n: int, dims: int = SMALL, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dims))
    return (centres[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, dims))).astype(np.float32)


def brute_force(vectors, ids, mask, query, k):
    """Exact answer on the stored (float16) vectors, as (object_id, distance) nearest first."""
    stored = vectors.astype(np.float16).astype(np.float64)
    q = query.astype(np.float16).astype(np.float64)
    candidates = np.flatnonzero(mask)
    distances = np.linalg.norm(stored[candidates] - q, axis=1)
    order = sorted(range(len(candidates)), key=lambda j: (distances[j], ids[candidates[j]]))[:k]
    return [ids[candidates[j]] for j in order]


# -- options and import guard (any database) -------------------------------------------------


def test_defaults():
    index = PgvectorIndex()
    assert (index.dimensions, index.m, index.ef_construction, index.ef_search) == (2048, 16, 64, 100)
    assert (index.iterative_scan, index.max_scan_tuples, index.exact) == ("relaxed_order", None, False)
    assert index.table == "visual_recs_halfvec_2048"


def test_an_unknown_option_fails_loudly():
    with pytest.raises(TypeError, match="ef_serch"):
        PgvectorIndex(ef_serch=40)
    with pytest.raises(TypeError):
        PgvectorIndex(2048)  # keyword-only


@pytest.mark.parametrize(
    "options, message",
    [
        ({"dimensions": 4001}, "dimensions"),
        ({"dimensions": 0}, "dimensions"),
        ({"dimensions": "2048"}, "dimensions"),
        ({"m": 1}, "m=1"),
        ({"m": 16, "ef_construction": 20}, "twice m"),
        ({"ef_search": 0}, "ef_search"),
        ({"ef_search": True}, "ef_search"),
        ({"iterative_scan": "relaxed"}, "relaxed_order, strict_order, off"),
        ({"max_scan_tuples": 0}, "max_scan_tuples"),
        ({"max_scan_tuples": 2.5}, "max_scan_tuples"),
    ],
)
def test_bad_option_values_are_clear_value_errors(options, message):
    with pytest.raises(ValueError, match=message):
        PgvectorIndex(**options)


def test_without_the_extra_the_import_names_it():
    code = (
        "import sys; sys.modules['pgvector'] = None\n"
        "from django.core.exceptions import ImproperlyConfigured\n"
        "try:\n"
        "    import visual_recs.backends.pgvector\n"
        "except ImproperlyConfigured as exc:\n"
        "    assert isinstance(exc, ImportError); print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "django-visual-recs[pgvector]"' in result.stdout


@pytest.mark.django_db
def test_the_check_on_another_database_says_it_needs_postgresql():
    if connection.vendor == "postgresql":
        pytest.skip("the test database is PostgreSQL")
    messages = PgvectorIndex().check_database(connection)
    assert [m.id for m in messages] == ["visual_recs.E007"]
    assert "needs PostgreSQL" in messages[0].msg


@pytest.mark.django_db
def test_the_check_against_a_server_without_pgvector():
    """The machine's PostgreSQL 15 has no pgvector: E007, and ensure_schema fails with the server's words."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    settings = {**connection.settings_dict, **POSTGRES_15, "OPTIONS": {"connect_timeout": 3}}
    pg15 = DatabaseWrapper(settings, alias="pg15")
    try:
        pg15.ensure_connection()
    except DatabaseError as exc:
        pytest.skip(f"the PostgreSQL 15 server at 127.0.0.1:5432 is not answering: {exc}")
    try:
        index = PgvectorIndex()
        messages = index.check_database(pg15)
        assert [m.id for m in messages] == ["visual_recs.E007"]
        assert 'no "vector" extension available' in messages[0].msg
        assert "pgvector/pgvector:pg16" in messages[0].hint and "superuser" in messages[0].hint
        with pytest.raises(DatabaseError, match="vector"):
            index.ensure_schema(pg15)
    finally:
        pg15.close()


# -- the real server ----------------------------------------------------------------------------


def test_the_migration_created_the_extension_table_and_hnsw_index(pgvector):
    index = PgvectorIndex(**app_settings.INDEX.get("OPTIONS", {}))
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        (version,) = cursor.fetchone()
        cursor.execute(
            "SELECT i.indexname, am.amname, i.indexdef FROM pg_indexes i"
            " JOIN pg_class c ON c.relname = i.indexname JOIN pg_am am ON am.oid = c.relam"
            " WHERE i.tablename = %s ORDER BY i.indexname",
            [index.table],
        )
        found = {name: (method, definition) for name, method, definition in cursor.fetchall()}
        cursor.execute(
            "SELECT format_type(atttypid, atttypmod), attstorage FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attname = 'embedding'",
            [index.table],
        )
        column_type, storage = cursor.fetchone()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (0, 8)
    assert column_type == f"halfvec({index.dimensions})"
    assert storage == "p"  # in the row, not TOAST: or the planner prefers exact scans to HNSW
    assert found[index.hnsw_index][0] == "hnsw"
    assert "halfvec_l2_ops" in found[index.hnsw_index][1] and f"m='{index.m}'" in found[index.hnsw_index][1]
    assert found[index.partition_index][0] == "btree"
    assert found[f"{index.table}_pkey"][0] == "btree"
    assert index.check_database(connection) == []
    assert not [m for m in checks.run_checks(tags=[checks.Tags.database], databases=["default"]) if m.id.startswith("visual_recs")]


def test_ensure_schema_is_idempotent(pgvector):
    index = PgvectorIndex(**app_settings.INDEX.get("OPTIONS", {}))
    index.ensure_schema()
    index.ensure_schema()


def test_a_missing_hnsw_index_is_e008(pgvector):
    index = PgvectorIndex(**app_settings.INDEX.get("OPTIONS", {}))
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {index.hnsw_index}")  # rolled back with the test
    messages = index.check_database(connection)
    assert [m.id for m in messages] == ["visual_recs.E008"]
    assert "migrate" in messages[0].hint


def test_a_filtered_search_uses_the_hnsw_index_after_analyze(small_index):
    index = small_index()
    vectors = clustered(6000)
    index.add("products", [Entry(f"p{i}", "MW"[i % 2], True, v) for i, v in enumerate(vectors)])
    index.analyze()
    sql = index._nearest_sql(1, whole_collection=False, shown_only=True, exact=False)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, [0, str(vectors[0].tolist()), [], "products", "M", 10])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"Index Scan using {index.hnsw_index}" in plan, plan


def test_search_many_equals_search(small_index):
    index = small_index()
    vectors = clustered(2000, seed=1)
    ids = [f"p{i:04d}" for i in range(2000)]
    index.add("products", [Entry(ids[i], "MW"[i % 2], i % 7 != 0, v) for i, v in enumerate(vectors)])
    queries = vectors[:40:2]
    exclude = [[ids[i]] for i in range(0, 40, 2)]
    many = index.search_many("products", "M", queries, 10, exclude=exclude)
    single = [index.search("products", "M", q, 10, exclude=skip) for q, skip in zip(queries, exclude)]
    assert many == single
    assert all(len(hits) == 10 for hits in many)
    assert all(ids[i] not in {h.object_id for h in hits} for i, hits in zip(range(0, 40, 2), many))


@pytest.mark.parametrize("scenario", ["tiny partition", "almost all hidden"])
def test_a_short_hnsw_answer_is_filled_by_the_exact_fallback(small_index, scenario):
    """The HNSW scan stops after max_scan_tuples; the exact fallback still returns k."""
    index = small_index(max_scan_tuples=1000)
    n = 4000
    vectors = clustered(n, seed=2)
    ids = [f"p{i:04d}" for i in range(n)]
    if scenario == "tiny partition":
        partitions = np.where(np.arange(n) % 300 == 0, "tiny", "big")  # 14 of 4,000
        shown = np.ones(n, dtype=bool)
    else:
        partitions = np.full(n, "big")
        shown = np.arange(n) % 300 == 0
    target = "tiny" if scenario == "tiny partition" else "big"
    index.add("products", [Entry(ids[i], partitions[i], bool(shown[i]), vectors[i]) for i in range(n)])
    with connection.cursor() as cursor:
        # Make the planner walk the HNSW graph (else it sorts the few rows the btree finds).
        cursor.execute("SET LOCAL enable_sort = off")
    query = vectors[1]
    with CaptureQueriesContext(connection) as queries:
        hits = index.search("products", target, query, 10)
    nearest = [q["sql"] for q in queries.captured_queries if "CROSS JOIN LATERAL" in q["sql"]]
    assert len(nearest) == 2 and "+ 0" in nearest[1], "the HNSW answer was short and the fallback ran"
    mask = (partitions == target) & shown
    assert [h.object_id for h in hits] == brute_force(vectors, ids, mask, query, 10)
    distances = [h.distance for h in hits]
    assert distances == sorted(distances)


def test_fewer_than_k_qualify(small_index):
    index = small_index()
    vectors = clustered(30, seed=3)
    index.add("products", [Entry(f"p{i}", "M", i < 4, v) for i, v in enumerate(vectors)])
    assert [h.object_id for h in index.search("products", "M", vectors[0], 10)][0] == "p0"
    assert len(index.search("products", "M", vectors[0], 10)) == 4
    assert len(index.search("products", "M", vectors[0], 10, shown_only=False)) == 10
    assert index.search("products", "nobody", vectors[0], 10) == []


def test_add_upserts_moves_and_round_trips(small_index):
    index = small_index()
    vectors = clustered(1200, seed=4)
    index.add("products", [Entry(f"p{i}", "M", True, v) for i, v in enumerate(vectors)])  # the COPY path
    index.add("products", [Entry("p1", "W", False, vectors[2])])  # the INSERT path, replacing p1
    entries = {e.object_id: e for e in index.entries("products")}
    assert len(entries) == 1200 and entries["p1"].partition == "W" and not entries["p1"].shown
    np.testing.assert_allclose(entries["p1"].vector, vectors[2], rtol=1e-3, atol=1e-4)
    assert index.partitions("products") == {"M", "W"}
    assert set(index.vectors("products", ["p3", "missing"])) == {"p3"}
    index.remove("products", ["p3", "missing"])
    assert "p3" not in {e.object_id for e in index.entries("products", "M")}
    index.clear("products")
    assert index.partitions("products") == set()


@pytest.mark.parametrize(
    "vector",
    [np.full(SMALL, np.nan), np.ones(SMALL + 1), np.full(SMALL, 1e6)],
    ids=["nan", "wrong dimensions", "beyond halfvec"],
)
def test_bad_vectors_store_nothing(small_index, vector):
    index = small_index()
    good = Entry("good", "M", True, np.ones(SMALL, dtype=np.float32))
    with pytest.raises(VectorError):
        index.add("products", [good, Entry("bad", "M", True, vector)])
    assert list(index.entries("products")) == []


def test_a_large_add_analyzes_the_table(small_index):
    index = small_index()
    index.add("products", [Entry(f"p{i}", "M", True, v) for i, v in enumerate(clustered(500, seed=5))])
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [index.table])
        assert cursor.fetchone()[0] == 500


@pytest.mark.django_db(transaction=True)
def test_the_server_going_away_mid_search_raises_a_database_error():
    """Another session terminates ours while the search waits on a lock: an error, not a hang."""
    _need_pgvector()
    index = PgvectorIndex(**app_settings.INDEX.get("OPTIONS", {}))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (victim,) = cursor.fetchone()
    other = connection.get_new_connection(connection.get_connection_params())
    other.autocommit = False
    other.execute(f"LOCK TABLE {index.table} IN ACCESS EXCLUSIVE MODE")
    terminated = threading.Event()

    def terminate_when_waiting():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            waiting = other.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'", [victim]
            ).fetchone()
            if waiting:
                other.execute("SELECT pg_terminate_backend(%s)", [victim])
                terminated.set()
                break
            time.sleep(0.05)
        other.rollback()  # releases the lock either way, so the search can never hang

    killer = threading.Thread(target=terminate_when_waiting)
    killer.start()
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseError):
            index.search("products", "Men", np.ones(index.dimensions, dtype=np.float32), 10)
    finally:
        killer.join()
        other.close()
        connection.close()  # the next query reconnects
    assert terminated.is_set() and time.monotonic() - started < 20
    with connection.cursor() as cursor:  # and the app recovers on a new connection
        cursor.execute("SELECT 1")


def test_improperly_configured_is_importable_for_callers():
    # A missing extra is an ImproperlyConfigured and an ImportError: check_backends (which catches
    # ImportError) reports it as E005 rather than crashing.
    from visual_recs.backends.pgvector import PgvectorNotInstalled

    assert issubclass(PgvectorNotInstalled, ImproperlyConfigured) and issubclass(PgvectorNotInstalled, ImportError)
