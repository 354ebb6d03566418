"""``PgvectorIndex``: vectors in PostgreSQL, searched through pgvector's HNSW index.

Needs PostgreSQL with the pgvector extension (0.7 or later; 0.8 or later for iterative index
scans) and the ``pgvector`` extra: ``pip install "django-visual-recs[pgvector]"``.

Storage: one table per vector length, ``visual_recs_halfvec_<dimensions>``, one row per object
(primary key ``(collection, object_id)``), the vector as ``halfvec`` (16-bit floats: half the
disk of ``vector``, and pgvector indexes ``vector`` only up to 2,000 dimensions, ``halfvec`` up
to 4,000). Two indexes: a btree on ``(collection, partition, shown)`` for exact scans of one
partition, and HNSW on the vector (``halfvec_l2_ops``). The migration ``0003_pgvector`` creates
all of it when this backend is configured; ``ensure_schema()`` does the same later on demand.

How a search always returns ``k`` when ``k`` entries qualify: the HNSW scan filters by
collection, partition, shown and ``exclude`` *after* walking the graph, so a selective filter
can leave it short. pgvector 0.8's iterative scan (``iterative_scan``) keeps walking until it
has ``k`` rows or has visited ``max_scan_tuples`` tuples; when the answer is still short (the
partition is a small part of the table, pgvector is older than 0.8, or ``iterative_scan`` is
"off"), that query is run again exactly: ordered by an expression the HNSW index cannot serve,
so the planner reads the partition through the btree and sorts it. Such a scan costs time
proportional to the partition, but only for queries whose partition has few qualifying rows,
which is also when it is cheap.

Vectors are stored at half precision, so ``vectors()`` returns them rounded to float16 and
distances carry that rounding (a relative error near 1e-3): this index is not ``exact``.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connection as default_connection
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper



class PgvectorNotInstalled(ImproperlyConfigured, ImportError):
    """The ``pgvector`` extra is missing (an ImportError too, so ``import_string`` callers catch it)."""


try:
    from pgvector import HalfVector
    from pgvector.psycopg.halfvec import register_halfvec_info
    from psycopg.types import TypeInfo
except ImportError as exc:
    raise PgvectorNotInstalled(
        f'PgvectorIndex needs the pgvector and psycopg packages ({exc}): pip install "django-visual-recs[pgvector]"'
    ) from exc

from ..exceptions import VectorError
from .base import BaseIndex, Entry, Hit

#: Oldest pgvector with HNSW on ``halfvec``; iterative index scans came with 0.8.
MIN_VERSION = (0, 7, 0)
ITERATIVE_SCAN_VERSION = (0, 8, 0)
ITERATIVE_SCANS = ("relaxed_order", "strict_order", "off")
#: pgvector's limits on its HNSW options, and on the dimensions of an indexed halfvec.
MAX_DIMENSIONS = 4000
HALF_MAX = 65504.0
#: Below this many rows an ``add`` inserts with one statement; from it, COPY into a temporary table.
COPY_FROM = 500
#: An ``add`` of this many rows (or of 10% of the table, if at least ANALYZE_MIN) refreshes the
#: planner's statistics: before ANALYZE the planner was seen choosing a sequential scan (188 ms
#: instead of 5 ms). Smaller adds are left to autovacuum.
ANALYZE_ROWS = 10_000
ANALYZE_MIN = 100
BATCH = 1000


@dataclass
class _ServerState:
    """What one database connection has learnt about its server (a new connection learns again)."""

    version: tuple[int, ...] | None  # installed pgvector, None when the extension is not installed


_server_states: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _literal(vector: np.ndarray) -> str:
    """``vector`` as halfvec text: five significant digits round-trip a float16 exactly."""
    return "[" + ",".join(f"{value:.5g}" for value in vector.astype(np.float16).tolist()) + "]"


class PgvectorIndex(BaseIndex):
    """Approximate nearest neighbours in PostgreSQL with pgvector's HNSW on ``halfvec``.

    Options (keyword-only): ``dimensions`` of the vectors (one table per length, at most
    4,000); the HNSW build parameters ``m`` and ``ef_construction`` (used when the index is
    created; change them by dropping the index and calling ``ensure_schema()``); the search
    parameters ``ef_search`` (candidates kept while walking the graph: recall against speed),
    ``iterative_scan`` ("relaxed_order", "strict_order" or "off") and ``max_scan_tuples``
    (how far an iterative scan may walk; None keeps the server's setting).
    """

    exact = False

    def __init__(
        self,
        *,
        dimensions: int = 2048,
        m: int = 16,
        ef_construction: int = 64,
        ef_search: int = 100,
        iterative_scan: str = "relaxed_order",
        max_scan_tuples: int | None = None,
    ) -> None:
        for name, value, low, high in (
            ("dimensions", dimensions, 1, MAX_DIMENSIONS),
            ("m", m, 2, 100),
            ("ef_construction", ef_construction, 4, 1000),
            ("ef_search", ef_search, 1, 1000),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"PgvectorIndex option {name}={value!r}: expected an integer from {low} to {high}.")
        if ef_construction < 2 * m:
            raise ValueError(
                f"PgvectorIndex option ef_construction={ef_construction} must be at least twice m={m} (pgvector's rule)."
            )
        if iterative_scan not in ITERATIVE_SCANS:
            raise ValueError(
                f"PgvectorIndex option iterative_scan={iterative_scan!r}: expected one of {', '.join(ITERATIVE_SCANS)}."
            )
        if max_scan_tuples is not None and (
            not isinstance(max_scan_tuples, int) or isinstance(max_scan_tuples, bool) or not 1 <= max_scan_tuples < 2**31
        ):
            raise ValueError(f"PgvectorIndex option max_scan_tuples={max_scan_tuples!r}: expected a positive integer or None.")
        self.dimensions = dimensions
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.iterative_scan = iterative_scan
        self.max_scan_tuples = max_scan_tuples
        self.table = f"visual_recs_halfvec_{dimensions}"
        self.partition_index = f"{self.table}_partition"
        self.hnsw_index = f"{self.table}_hnsw"

    # -- connection ---------------------------------------------------------------------------

    def _server(self, conn: BaseDatabaseWrapper = default_connection) -> _ServerState:
        """This connection's pgvector version, registering the halfvec adapters once per connection."""
        conn.ensure_connection()
        raw = conn.connection
        state = _server_states.get(raw)
        if state is None or state.version is None:
            with conn.cursor() as cursor:
                cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                row = cursor.fetchone()
            state = _ServerState(version=_version_tuple(row[0]) if row else None)
            if state.version is not None:
                register_halfvec_info(raw, TypeInfo.fetch(raw, "halfvec"))
            _server_states[raw] = state
        return state

    # -- schema -------------------------------------------------------------------------------

    def ensure_schema(self, conn: BaseDatabaseWrapper = default_connection) -> None:
        """Create the ``vector`` extension, the table and its two indexes if missing (idempotent).

        Creating the extension needs a superuser (or the database owner on PostgreSQL 13+ when
        an administrator has marked it trusted); once it exists, any user may run this.
        """
        # Every statement is idempotent, so this needs no transaction of its own (the migration's
        # is one; a command's autocommit is fine too).
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
            if cursor.fetchone() is None:
                cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
            cursor.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {self.table} (
                    collection text NOT NULL,
                    object_id varchar(255) NOT NULL,
                    partition varchar(100) NOT NULL,
                    shown boolean NOT NULL,
                    embedding halfvec({self.dimensions}) NOT NULL,
                    PRIMARY KEY (collection, object_id)
                )
                """
            )
            # A 2048-d halfvec (4 KB) is over PostgreSQL's 2 KB TOAST threshold, so by default it is
            # stored out of line, and the planner, which does not cost reading it back, then takes
            # an exact scan of a whole partition (btree + sort) for cheaper than the HNSW index: at
            # 100,000 rows, 37 ms against 5 ms a search. Kept in the row, HNSW is chosen.
            cursor.execute(f"ALTER TABLE {self.table} ALTER COLUMN embedding SET STORAGE PLAIN")
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {self.partition_index} ON {self.table} (collection, partition, shown)")
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {self.hnsw_index} ON {self.table} "
                f"USING hnsw (embedding halfvec_l2_ops) WITH (m = {self.m}, ef_construction = {self.ef_construction})"
            )
        _server_states.pop(conn.connection, None)  # the extension may be new: learn its version again

    def analyze(self) -> None:
        """Refresh the planner's statistics of the table (``add`` does it after a large load)."""
        with default_connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {self.table}")

    def check_database(self, conn: BaseDatabaseWrapper = default_connection) -> list[checks.CheckMessage]:
        """System check messages: ``visual_recs.E007`` for the server, ``visual_recs.E008`` for the schema.

        A schema that the pending migration ``0003_pgvector`` will create is not an error.
        """
        from django.db import DatabaseError
        from django.db.migrations.recorder import MigrationRecorder

        def error(msg: str, id: str, hint: str) -> checks.Error:
            return checks.Error(msg, hint=hint, obj="settings.VISUAL_RECS['INDEX']", id=id)

        install_hint = (
            "Install pgvector 0.7 or later on the server (https://github.com/pgvector/pgvector#installation), "
            "or run the pgvector/pgvector:pg16 image; then `manage.py migrate` runs CREATE EXTENSION vector, "
            "which needs a superuser (or run it once as one)."
        )
        if conn.vendor != "postgresql":
            return [error(f"PgvectorIndex needs PostgreSQL; the database {conn.alias!r} is {conn.display_name}.", "visual_recs.E007",
                          "Use the PostgreSQL backend for DATABASES['default'], or the ExactIndex backend.")]
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector'),"
                    " (SELECT default_version FROM pg_available_extensions WHERE name = 'vector'),"
                    " to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
                    [self.table, self.hnsw_index],
                )
                installed, available, has_table, has_hnsw = cursor.fetchone()
            migrated = ("visual_recs", "0003_pgvector") in MigrationRecorder(conn).applied_migrations()
        except DatabaseError as exc:
            return [error(f"Cannot inspect the database for PgvectorIndex: {exc}", "visual_recs.E007", install_hint)]
        if installed is None and available is None:
            return [error('The PostgreSQL server has no "vector" extension available: pgvector is not installed on it.',
                          "visual_recs.E007", install_hint)]
        if installed is None:
            if not migrated:
                return []  # migrate will create it
            return [error(f'The "vector" extension (pgvector {available}) is available but not installed in this database.',
                          "visual_recs.E007", "Run CREATE EXTENSION vector as a superuser, then `manage.py migrate`.")]
        if _version_tuple(installed) < MIN_VERSION:
            return [error(f"pgvector {installed} is too old: PgvectorIndex needs 0.7 or later (HNSW on halfvec).",
                          "visual_recs.E007", "Upgrade pgvector on the server, then run ALTER EXTENSION vector UPDATE.")]
        if migrated and not (has_table and has_hnsw):
            missing = self.table if not has_table else f"the HNSW index {self.hnsw_index}"
            return [error(f"PgvectorIndex's {missing} is missing.", "visual_recs.E008",
                          "Run `manage.py migrate`; if visual_recs' migrations ran while another INDEX backend was "
                          "configured, create it with PgvectorIndex.ensure_schema() (the index-switching command does).")]
        return []

    # -- writes -------------------------------------------------------------------------------

    def add(self, collection: str, entries: Sequence[Entry]) -> None:
        entries = list({entry.object_id: entry for entry in entries}.values())  # the last of an id wins
        if not entries:
            return
        lengths = {np.shape(entry.vector) for entry in entries}
        if len(lengths) > 1:
            raise VectorError(f"Vectors of one call must have one length; got shapes {sorted(lengths)}.")
        matrix = self.check_vectors(np.stack([entry.vector for entry in entries]), self.dimensions)
        if (np.abs(matrix) > HALF_MAX).any():
            raise VectorError(f"A vector has a value beyond ±{HALF_MAX:g}, which halfvec cannot store.")
        rows = [(collection, entry.object_id, entry.partition, bool(entry.shown)) for entry in entries]
        self._server()
        upsert = (
            "ON CONFLICT (collection, object_id) DO UPDATE SET partition = EXCLUDED.partition,"
            " shown = EXCLUDED.shown, embedding = EXCLUDED.embedding"
        )
        with transaction.atomic(), default_connection.cursor() as cursor:
            if len(entries) < COPY_FROM:
                values = ", ".join(["(%s, %s, %s, %s, %s::halfvec)"] * len(rows))
                params = [value for row, vector in zip(rows, matrix) for value in (*row, _literal(vector))]
                cursor.execute(f"INSERT INTO {self.table} VALUES {values} {upsert}", params)
            else:
                load = f"{self.table}_load"
                cursor.execute(
                    f"CREATE TEMPORARY TABLE IF NOT EXISTS {load} (LIKE {self.table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
                with cursor.copy(f"COPY {load} FROM STDIN WITH (FORMAT BINARY)") as copy:
                    copy.set_types(["text", "varchar", "varchar", "bool", "halfvec"])
                    for row, vector in zip(rows, matrix):
                        copy.write_row((*row, HalfVector(vector)))
                cursor.execute(f"INSERT INTO {self.table} SELECT * FROM {load} {upsert}")
                cursor.execute(f"TRUNCATE {load}")
            if len(entries) >= ANALYZE_MIN:
                cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [self.table])
                (known_rows,) = cursor.fetchone()
                if len(entries) >= ANALYZE_ROWS or len(entries) >= 0.1 * known_rows:
                    cursor.execute(f"ANALYZE {self.table}")

    def remove(self, collection: str, object_ids: Iterable[str]) -> None:
        ids = [str(object_id) for object_id in object_ids]
        with transaction.atomic(), default_connection.cursor() as cursor:
            for start in range(0, len(ids), 10 * BATCH):
                cursor.execute(
                    f"DELETE FROM {self.table} WHERE collection = %s AND object_id = ANY(%s)",
                    [collection, ids[start : start + 10 * BATCH]],
                )

    def clear(self, collection: str) -> None:
        with default_connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {self.table} WHERE collection = %s", [collection])

    # -- reads --------------------------------------------------------------------------------

    def _search_settings(self) -> str:
        """SET LOCAL statements of the search options (validated values, not user text).

        SET LOCAL needs a transaction; ``search_many`` opens one (or joins the caller's).
        """
        statements = [f"SET LOCAL hnsw.ef_search = {self.ef_search}"]
        if self._server().version >= ITERATIVE_SCAN_VERSION:
            statements.append(f"SET LOCAL hnsw.iterative_scan = {self.iterative_scan}")
            max_scan = "DEFAULT" if self.max_scan_tuples is None else str(self.max_scan_tuples)
            statements.append(f"SET LOCAL hnsw.max_scan_tuples = {max_scan}")
        return "; ".join(statements)

    def _nearest_sql(self, count: int, *, whole_collection: bool, shown_only: bool, exact: bool) -> str:
        """One round trip for ``count`` queries: a LATERAL top-k per row of a VALUES list.

        ``exact`` orders by ``distance + 0``, which the HNSW index cannot serve, so the planner
        reads the partition through the btree and sorts it: the fallback of a short answer.
        """
        order = "(t.embedding <-> q.embedding) + 0" if exact else "t.embedding <-> q.embedding"
        values = ", ".join(["(%s, %s::halfvec, %s::text[])"] * count)
        shown = "AND t.shown" if shown_only else ""
        partition = "" if whole_collection else "AND t.partition = %s"
        return f"""
            SELECT q.i, hit.object_id, hit.distance
            FROM (VALUES {values}) AS q(i, embedding, exclude)
            CROSS JOIN LATERAL (
                SELECT t.object_id, t.embedding <-> q.embedding AS distance
                FROM {self.table} AS t
                WHERE t.collection = %s {partition} {shown} AND t.object_id <> ALL(q.exclude)
                ORDER BY {order}
                LIMIT %s
            ) AS hit
        """

    def _nearest(self, cursor, queries, collection, partition, k, *, shown_only, exact) -> dict[int, list[Hit]]:
        params = [value for i, vector, exclude in queries for value in (i, _literal(vector), exclude)]
        sql = self._nearest_sql(len(queries), whole_collection=partition is None, shown_only=shown_only, exact=exact)
        if not exact:
            # The SET LOCALs travel with the query: one round trip (client-side binding allows it).
            sql = f"{self._search_settings()}; {sql}"
        scope = [collection] if partition is None else [collection, partition]
        cursor.execute(sql, [*params, *scope, k])
        while cursor.description is None and cursor.nextset():
            pass
        found: dict[int, list[Hit]] = {i: [] for i, _, _ in queries}
        for i, object_id, distance in cursor.fetchall():
            found[i].append(Hit(object_id, float(distance)))
        return found

    def search_many(
        self,
        collection: str,
        partition: str | None,
        vectors: np.ndarray,
        k: int,
        *,
        exclude: Sequence[Collection[str]] | None = None,
        shown_only: bool = True,
    ) -> list[list[Hit]]:
        matrix, exclude = self.check_queries(vectors, exclude, self.dimensions)
        if k <= 0 or not len(matrix):
            return [[] for _ in range(len(matrix))]
        queries = [(i, vector, sorted(map(str, skip))) for i, (vector, skip) in enumerate(zip(matrix, exclude))]
        self._server()
        # savepoint=False: in a caller's transaction the search adds no SAVEPOINT round trips;
        # its SET LOCALs then last to the end of that transaction, where only searches read them.
        with transaction.atomic(savepoint=False), default_connection.cursor() as cursor:
            found = self._nearest(cursor, queries, collection, partition, k, shown_only=shown_only, exact=False)
            short = [query for query in queries if len(found[query[0]]) < k]
            if short:
                found.update(self._nearest(cursor, short, collection, partition, k, shown_only=shown_only, exact=True))
        return [sorted(found[i], key=lambda hit: (hit.distance, hit.object_id)) for i in range(len(matrix))]

    def vectors(self, collection: str, object_ids: Iterable[str]) -> dict[str, np.ndarray]:
        ids = [str(object_id) for object_id in object_ids]
        self._server()
        found: dict[str, np.ndarray] = {}
        with default_connection.cursor() as cursor:
            for start in range(0, len(ids), BATCH):
                cursor.execute(
                    f"SELECT object_id, embedding FROM {self.table} WHERE collection = %s AND object_id = ANY(%s)",
                    [collection, ids[start : start + BATCH]],
                )
                for object_id, embedding in cursor.fetchall():
                    found[object_id] = embedding.to_numpy().astype(np.float32)
        return found

    def entries(self, collection: str, partition: str | None = None) -> Iterator[Entry]:
        self._server()
        where = "collection = %s" + (" AND partition = %s" if partition is not None else "")
        scope = [collection] if partition is None else [collection, partition]
        after = ""
        while True:
            with default_connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT object_id, partition, shown, embedding FROM {self.table}"
                    f" WHERE {where} AND object_id > %s ORDER BY object_id LIMIT {BATCH}",
                    [*scope, after],
                )
                rows = cursor.fetchall()
            for object_id, row_partition, shown, embedding in rows:
                yield Entry(object_id, row_partition, shown, embedding.to_numpy().astype(np.float32))
            if len(rows) < BATCH:
                return
            after = rows[-1][0]

    def partitions(self, collection: str) -> set[str]:
        with default_connection.cursor() as cursor:
            cursor.execute(f"SELECT DISTINCT partition FROM {self.table} WHERE collection = %s", [collection])
            return {partition for (partition,) in cursor.fetchall()}
