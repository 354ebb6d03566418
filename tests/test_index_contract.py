"""The index contract (``visual_recs.backends.base.BaseIndex``), run against every index backend.

Each backend is built from its class and options, never from the process's configured
backend. ``exact`` backends must equal a float64 brute force; approximate ones must find
95% of the true neighbours and report true distances to halfvec precision. The pgvector
pass needs PostgreSQL with the ``vector`` extension: ``make test-pgvector`` runs it.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from django.conf import settings
from django.db import connection

from visual_recs.backends.base import BaseIndex, Entry, Hit, euclidean
from visual_recs.exceptions import VectorError

pytestmark = pytest.mark.django_db

DIMS = 2048
COLLECTION = "contract"
PARTITIONS = ("Men", "Women", "Girls")
PGVECTOR = "visual_recs.backends.pgvector.PgvectorIndex"


def _pgvector_missing() -> str | None:
    """Why the pgvector backend cannot be tested against this database, or None when it can."""
    if connection.vendor != "postgresql":
        return "pgvector needs PostgreSQL; `make test-pgvector` runs this pass"
    if importlib.util.find_spec("pgvector") is None:
        return "the pgvector package is not installed (pip extra [pgvector]); `make test-pgvector` runs this pass"
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        if cursor.fetchone() is None:
            return "this PostgreSQL lacks the vector extension; `make test-pgvector` runs this pass"
    return None


def build_index(name: str) -> BaseIndex:
    if name == "exact":
        from visual_recs.backends.indexes import ExactIndex

        return ExactIndex()
    reason = _pgvector_missing()
    if reason:
        pytest.skip(reason)
    from visual_recs.backends.pgvector import PgvectorIndex

    configured = getattr(settings, "VISUAL_RECS", {}).get("INDEX", {})
    options = configured.get("OPTIONS", {}) if configured.get("BACKEND") == PGVECTOR else {}
    return PgvectorIndex(**options)


@pytest.fixture(params=["exact", "pgvector"])
def index(request, db) -> BaseIndex:
    return build_index(request.param)


def make_entries(seed: int = 7, count: int = 360) -> list[Entry]:
    """Clustered vectors (like features of look-alike photos) in three partitions, a third hidden."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (12, DIMS)) * 3
    entries = []
    for number in range(count):
        vector = centres[rng.integers(len(centres))] + rng.normal(0, 1, DIMS)
        entries.append(
            Entry(
                object_id=f"o{number:04d}",
                partition=PARTITIONS[number % len(PARTITIONS)],
                shown=number % 3 != 1,
                vector=vector.astype(np.float32),
            )
        )
    return entries


@pytest.fixture
def stored(index) -> dict[str, Entry]:
    """The standard data set, stored in the index, by object id."""
    entries = make_entries()
    index.add(COLLECTION, entries)
    return {entry.object_id: entry for entry in entries}


def brute_force(
    entries: dict[str, Entry], partition: str, query: np.ndarray, k: int, exclude=(), shown_only: bool = True
) -> list[Hit]:
    candidates = [
        entry
        for entry in entries.values()
        if entry.partition == partition and (entry.shown or not shown_only) and entry.object_id not in exclude
    ]
    if not candidates:
        return []
    matrix = np.stack([entry.vector for entry in candidates]).astype(np.float64)
    distances = euclidean(matrix, query)
    hits = sorted(zip((entry.object_id for entry in candidates), distances), key=lambda hit: (hit[1], hit[0]))
    return [Hit(object_id, float(distance)) for object_id, distance in hits[:k]]


def assert_hits(index: BaseIndex, got: list[list[Hit]], expected: list[list[Hit]], entries, queries) -> None:
    """``got`` answers the queries as well as the backend promises: exactly, or to 95% recall."""
    assert [len(hits) for hits in got] == [len(hits) for hits in expected]
    if index.exact:
        for got_hits, expected_hits in zip(got, expected):
            assert [hit.object_id for hit in got_hits] == [hit.object_id for hit in expected_hits]
            np.testing.assert_allclose(
                [hit.distance for hit in got_hits], [hit.distance for hit in expected_hits], rtol=1e-4
            )
        return
    found = sum(len({h.object_id for h in g} & {h.object_id for h in e}) for g, e in zip(got, expected))
    assert found >= 0.95 * sum(len(hits) for hits in expected)
    for got_hits, query in zip(got, queries):
        true = [np.linalg.norm(entries[hit.object_id].vector.astype(np.float64) - query) for hit in got_hits]
        np.testing.assert_allclose([hit.distance for hit in got_hits], true, rtol=2e-3)
        assert [hit.distance for hit in got_hits] == sorted(hit.distance for hit in got_hits)


def queries_for(entries: dict[str, Entry], partition: str, count: int = 8, seed: int = 3) -> np.ndarray:
    """Half stored vectors of the partition, half new points near them."""
    rng = np.random.default_rng(seed)
    own = [entry.vector for entry in entries.values() if entry.partition == partition]
    picked = [own[i] for i in rng.choice(len(own), count, replace=False)]
    return np.stack(
        [vector if i % 2 == 0 else vector + rng.normal(0, 0.5, DIMS) for i, vector in enumerate(picked)]
    ).astype(np.float32)


def ids(hits: list[Hit]) -> list[str]:
    return [hit.object_id for hit in hits]


def test_search_equals_brute_force(index, stored):
    for partition in PARTITIONS:
        queries = queries_for(stored, partition)
        got = [index.search(COLLECTION, partition, query, 10) for query in queries]
        expected = [brute_force(stored, partition, query, 10) for query in queries]
        assert_hits(index, got, expected, stored, queries)


def test_no_partition_searches_the_whole_collection(index, stored):
    queries = np.concatenate([queries_for(stored, partition, count=3) for partition in PARTITIONS])
    got = index.search_many(COLLECTION, None, queries, 12, exclude=[[]] * len(queries))
    expected = [
        sorted((hit for p in PARTITIONS for hit in brute_force(stored, p, query, 12)), key=lambda h: (h.distance, h.object_id))[:12]
        for query in queries
    ]
    assert_hits(index, got, expected, stored, queries)
    assert len({stored[object_id].partition for hits in got for object_id in ids(hits)}) > 1


def test_search_only_looks_at_the_given_partition(index, stored):
    query = queries_for(stored, "Men")[0]
    for partition in PARTITIONS:
        hits = index.search(COLLECTION, partition, query, 20, shown_only=False)
        assert len(hits) == 20
        assert {stored[object_id].partition for object_id in ids(hits)} == {partition}
    assert index.search(COLLECTION, "Boys", query, 5) == []
    assert index.search("another collection", "Men", query, 5) == []


def test_search_returns_only_shown_entries_unless_asked(index, stored):
    queries = queries_for(stored, "Women")
    shown = [index.search(COLLECTION, "Women", query, 15) for query in queries]
    assert all(stored[object_id].shown for hits in shown for object_id in ids(hits))
    every = [index.search(COLLECTION, "Women", query, 15, shown_only=False) for query in queries]
    assert any(not stored[object_id].shown for hits in every for object_id in ids(hits))
    expected = [brute_force(stored, "Women", query, 15, shown_only=False) for query in queries]
    assert_hits(index, every, expected, stored, queries)


def test_search_never_returns_an_excluded_id(index, stored):
    men = [entry for entry in stored.values() if entry.partition == "Men" and entry.shown]
    for entry in men[:5]:
        nearest = ids(brute_force(stored, "Men", entry.vector, 6))
        exclude = {entry.object_id, *nearest[:4]}
        hits = index.search(COLLECTION, "Men", entry.vector, 10, exclude=exclude)
        assert not exclude & set(ids(hits))
        assert_hits(index, [hits], [brute_force(stored, "Men", entry.vector, 10, exclude)], stored, [entry.vector])


def test_search_fills_k_when_most_of_the_partition_is_hidden_or_excluded(index, stored):
    girls = sorted(object_id for object_id, entry in stored.items() if entry.partition == "Girls")
    keep_shown = set(girls[:30])
    index.add(COLLECTION, [Entry(o, "Girls", o in keep_shown, stored[o].vector) for o in girls])
    for object_id in girls:
        stored[object_id] = Entry(object_id, "Girls", object_id in keep_shown, stored[object_id].vector)
    exclude = set(girls[:20])
    query = stored[girls[-1]].vector  # a hidden one: its neighbours are the few shown ones, far or near
    hits = index.search(COLLECTION, "Girls", query, 8, exclude=exclude)
    assert len(hits) == 8
    assert set(ids(hits)) <= keep_shown - exclude
    assert_hits(index, [hits], [brute_force(stored, "Girls", query, 8, exclude)], stored, [query])
    # Asking for more than qualify returns every one that does, nearest first.
    everything = index.search(COLLECTION, "Girls", query, 50, exclude=exclude)
    assert sorted(ids(everything)) == sorted(keep_shown - exclude)
    assert [hit.distance for hit in everything] == sorted(hit.distance for hit in everything)


def test_add_replaces_the_entry_of_an_object(index, stored):
    moved, hidden, changed = "o0000", "o0003", "o0006"  # all three are shown Men
    rng = np.random.default_rng(11)
    new_vector = (stored[changed].vector + rng.normal(0, 5, DIMS)).astype(np.float32)
    index.add(
        COLLECTION,
        [
            Entry(moved, "Women", True, stored[moved].vector),
            Entry(hidden, "Men", False, stored[hidden].vector),
            Entry(changed, "Men", True, new_vector),
        ],
    )
    [hit] = index.search(COLLECTION, "Women", stored[moved].vector, 1)
    assert hit.object_id == moved and hit.distance < 1  # neighbours are about 64 apart
    assert moved not in ids(index.search(COLLECTION, "Men", stored[moved].vector, 300, shown_only=False))
    assert hidden not in ids(index.search(COLLECTION, "Men", stored[hidden].vector, 300))
    assert ids(index.search(COLLECTION, "Men", stored[hidden].vector, 1, shown_only=False)) == [hidden]
    assert ids(index.search(COLLECTION, "Men", new_vector, 1)) == [changed]
    np.testing.assert_allclose(index.vectors(COLLECTION, [changed])[changed], new_vector, rtol=1e-3, atol=1e-3)
    assert {e.object_id: (e.partition, e.shown) for e in index.entries(COLLECTION) if e.object_id in stored} == {
        **{o: (e.partition, e.shown) for o, e in stored.items()},
        moved: ("Women", True),
        hidden: ("Men", False),
    }


def test_remove_forgets_objects_and_ignores_unknown_ids(index, stored):
    query = stored["o0000"].vector
    nearest = ids(index.search(COLLECTION, "Men", query, 3))
    index.remove(COLLECTION, [*nearest, "never-stored"])
    hits = index.search(COLLECTION, "Men", query, 3)
    assert len(hits) == 3 and not set(nearest) & set(ids(hits))
    assert index.vectors(COLLECTION, nearest) == {}
    assert len(list(index.entries(COLLECTION))) == len(stored) - 3


def test_clear_forgets_the_collection_only(index, stored):
    index.add("other", [Entry("x1", "Men", True, stored["o0000"].vector)])
    index.clear(COLLECTION)
    assert index.search(COLLECTION, "Men", stored["o0000"].vector, 5) == []
    assert list(index.entries(COLLECTION)) == []
    assert index.partitions(COLLECTION) == set()
    assert ids(index.search("other", "Men", stored["o0000"].vector, 5)) == ["x1"]
    # A cleared collection takes vectors again.
    index.add(COLLECTION, [Entry("o0001", "Women", True, stored["o0001"].vector)])
    assert ids(index.search(COLLECTION, "Women", stored["o0001"].vector, 5)) == ["o0001"]


def test_vectors_returns_the_stored_vectors_by_id(index, stored):
    wanted = ["o0005", "o0100", "o0200", "missing"]
    got = index.vectors(COLLECTION, wanted)
    assert set(got) == {"o0005", "o0100", "o0200"}
    for object_id, vector in got.items():
        # Exact backends store float32; others may store half precision.
        np.testing.assert_allclose(vector, stored[object_id].vector, rtol=2e-3, atol=2e-3)


def test_entries_lists_a_partition_or_the_whole_collection(index, stored):
    women = {entry.object_id: entry for entry in index.entries(COLLECTION, "Women")}
    assert set(women) == {o for o, e in stored.items() if e.partition == "Women"}
    for object_id, entry in women.items():
        assert (entry.partition, entry.shown) == ("Women", stored[object_id].shown)
        np.testing.assert_allclose(entry.vector, stored[object_id].vector, rtol=2e-3, atol=2e-3)
    assert {entry.object_id for entry in index.entries(COLLECTION)} == set(stored)
    assert list(index.entries(COLLECTION, "Boys")) == []


def test_partitions_lists_those_holding_entries(index, stored):
    assert index.partitions(COLLECTION) == set(PARTITIONS)
    index.remove(COLLECTION, [o for o, e in stored.items() if e.partition == "Girls"])
    assert index.partitions(COLLECTION) == {"Men", "Women"}
    assert index.partitions("nothing here") == set()


def test_search_many_equals_search_row_by_row(index, stored):
    queries = queries_for(stored, "Men", count=12)
    exclude = [{f"o{i * 3:04d}"} for i in range(len(queries))]
    many = index.search_many(COLLECTION, "Men", queries, 7, exclude=exclude)
    single = [index.search(COLLECTION, "Men", query, 7, exclude=ex) for query, ex in zip(queries, exclude)]
    assert [ids(hits) for hits in many] == [ids(hits) for hits in single]
    np.testing.assert_allclose(
        [[h.distance for h in hits] for hits in many], [[h.distance for h in hits] for hits in single], rtol=1e-6
    )
    assert index.search_many(COLLECTION, "Men", queries[:0], 7) == []


def test_equal_distances_are_ordered_by_object_id(index, stored):
    twin = stored["o0000"].vector
    twins = ["t9", "t10", "t1", "t2"]  # string order: t1, t10, t2, t9
    index.add(COLLECTION, [Entry(object_id, "Boys", True, twin) for object_id in twins])
    index.add(COLLECTION, [Entry("far", "Boys", True, twin + 10)])
    hits = index.search(COLLECTION, "Boys", twin + 0.5, 5)
    assert ids(hits) == ["t1", "t10", "t2", "t9", "far"]
    assert len({hit.distance for hit in hits[:4]}) == 1


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda v: np.where(np.arange(DIMS) == 7, np.nan, v), id="nan"),
        pytest.param(lambda v: np.where(np.arange(DIMS) == 7, np.inf, v), id="inf"),
        pytest.param(lambda v: v[:-1], id="wrong-dims"),
    ],
)
def test_bad_vectors_raise_vector_error_and_store_nothing(index, stored, bad):
    good = Entry("new-good", "Men", True, stored["o0000"].vector)
    broken = Entry("new-bad", "Men", True, bad(stored["o0003"].vector).astype(np.float32))
    with pytest.raises(VectorError):
        index.add(COLLECTION, [good, broken])
    with pytest.raises(VectorError):
        index.add(COLLECTION, [Entry("o0000", "Men", True, broken.vector)])
    assert index.vectors(COLLECTION, ["new-good", "new-bad"]) == {}
    np.testing.assert_allclose(
        index.vectors(COLLECTION, ["o0000"])["o0000"], stored["o0000"].vector, rtol=2e-3, atol=2e-3
    )
    assert len(list(index.entries(COLLECTION))) == len(stored)


def test_vectors_of_one_call_must_have_one_length(index):
    entries = [
        Entry("a", "Men", True, np.ones(DIMS, np.float32)),
        Entry("b", "Men", True, np.ones(DIMS - 1, np.float32)),
    ]
    with pytest.raises(VectorError):
        index.add(COLLECTION, entries)
    assert list(index.entries(COLLECTION)) == []


def test_one_exclude_set_per_query_or_a_value_error(index, stored):
    queries = queries_for(stored, "Men", count=3)
    with pytest.raises(ValueError, match="2 exclude sets for 3 query vectors"):
        index.search_many(COLLECTION, "Men", queries, 5, exclude=[[], []])
