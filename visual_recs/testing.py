"""Contract tests any backend can run against itself: ``BackendTests`` (index), ``ExtractorTests``.

A shop that writes its own index backend (a subclass of ``visual_recs.backends.base.BaseIndex``)
runs the same tests as the built-in ones, with pytest and pytest-django::

    # tests/test_my_index.py
    from visual_recs.testing import BackendTests

    from myshop.index import MyIndex


    class TestMyIndex(BackendTests):
        def make_index(self):
            return MyIndex(some_option=1)

Each ``test_*`` method of the mixin then runs against a new index built by ``make_index``, in
the test database (pytest-django's ``db`` fixture): add, replace and remove; searches that
answer as a brute force does (exactly for an ``exact`` backend, else to ``min_recall`` of the
true neighbours), fill ``k``, stay in their partition, honour ``exclude`` and ``shown_only``,
and order ties by id; ``search_many``, ``vectors``, ``entries``, ``partitions``, ``clear``;
``VectorError`` for NaN, infinite or wrong-length vectors; and the optional members
(``dimensions``, ``ensure_schema``, ``prune_changes``, ``check_database``) whether the backend
implements them or keeps the base class's defaults. A backend that documents a difference
overrides that test method (wagtail's search backends do the same with its ``BackendTests``).

``ExtractorTests`` does the same for an extractor (``make_extractor``), without a database.
The helpers (``make_entries``, ``brute_force``, ``queries_for``...) serve a backend's own
further tests. This module imports pytest: only test code imports it.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pytest
from django.db import connection

from .backends.base import BaseIndex, Entry, Hit, euclidean
from .exceptions import VectorError

#: Length of the test vectors, for an index that does not declare ``dimensions``.
DIMS = 2048
COLLECTION = "contract"
PARTITIONS = ("Men", "Women", "Girls")


def make_entries(seed: int = 7, count: int = 360, dims: int = DIMS) -> list[Entry]:
    """Clustered vectors (like features of look-alike photos) in three partitions, a third hidden."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (12, dims)) * 3
    entries = []
    for number in range(count):
        vector = centres[rng.integers(len(centres))] + rng.normal(0, 1, dims)
        entries.append(
            Entry(
                object_id=f"o{number:04d}",
                partition=PARTITIONS[number % len(PARTITIONS)],
                shown=number % 3 != 1,
                vector=vector.astype(np.float32),
            )
        )
    return entries


def brute_force(
    entries: dict[str, Entry],
    partition: str,
    query: np.ndarray,
    k: int,
    exclude: Collection[str] = (),
    shown_only: bool = True,
) -> list[Hit]:
    """The true answer of ``search`` over ``entries`` (by object id): float64 distances, ties by id."""
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


def queries_for(entries: dict[str, Entry], partition: str, count: int = 8, seed: int = 3) -> np.ndarray:
    """Query vectors for ``partition``: half stored vectors of it, half new points near them."""
    rng = np.random.default_rng(seed)
    own = [entry.vector for entry in entries.values() if entry.partition == partition]
    picked = [own[i] for i in rng.choice(len(own), count, replace=False)]
    return np.stack(
        [vector if i % 2 == 0 else vector + rng.normal(0, 0.5, vector.shape) for i, vector in enumerate(picked)]
    ).astype(np.float32)


def ids(hits: list[Hit]) -> list[str]:
    """The object ids of ``hits``, in their order."""
    return [hit.object_id for hit in hits]


class BackendTests:
    """The contract of ``BaseIndex`` as pytest test methods; a subclass supplies ``make_index``.

    Name the subclass ``Test...`` so that pytest collects it. It needs pytest-django.
    """

    #: Share of the true neighbours an approximate (not ``exact``) backend must find.
    min_recall = 0.95
    #: Relative error allowed in the vectors an index gives back, and in an approximate one's
    #: distances (pgvector's ``halfvec`` rounds to 16-bit floats, about 1e-3).
    tolerance = 2e-3

    def make_index(self) -> BaseIndex:
        """A new, empty index of the backend under test (called once per test)."""
        raise NotImplementedError("Subclasses of BackendTests build the index they test in make_index().")

    @pytest.fixture
    def index(self, db) -> BaseIndex:
        """The index under test, in the test database."""
        return self.make_index()

    @pytest.fixture
    def dims(self, index) -> int:
        """The length of the test vectors: the index's own, if it declares one."""
        return index.dimensions or DIMS

    @pytest.fixture
    def stored(self, index, dims) -> dict[str, Entry]:
        """The standard data set, stored in the index, by object id."""
        entries = make_entries(dims=dims)
        index.add(COLLECTION, entries)
        return {entry.object_id: entry for entry in entries}

    def assert_hits(self, index: BaseIndex, got: list[list[Hit]], expected: list[list[Hit]], entries, queries) -> None:
        """``got`` answers the queries as well as the backend promises: exactly, or to ``min_recall``."""
        assert [len(hits) for hits in got] == [len(hits) for hits in expected]
        if index.exact:
            for got_hits, expected_hits in zip(got, expected):
                assert ids(got_hits) == ids(expected_hits)
                np.testing.assert_allclose(
                    [hit.distance for hit in got_hits], [hit.distance for hit in expected_hits], rtol=1e-4
                )
            return
        found = sum(len(set(ids(g)) & set(ids(e))) for g, e in zip(got, expected))
        assert found >= self.min_recall * sum(len(hits) for hits in expected)
        for got_hits, query in zip(got, queries):
            true = [np.linalg.norm(entries[hit.object_id].vector.astype(np.float64) - query) for hit in got_hits]
            np.testing.assert_allclose([hit.distance for hit in got_hits], true, rtol=self.tolerance)
            assert [hit.distance for hit in got_hits] == sorted(hit.distance for hit in got_hits)

    def test_search_equals_brute_force(self, index, stored):
        for partition in PARTITIONS:
            queries = queries_for(stored, partition)
            got = [index.search(COLLECTION, partition, query, 10) for query in queries]
            expected = [brute_force(stored, partition, query, 10) for query in queries]
            self.assert_hits(index, got, expected, stored, queries)

    def test_no_partition_searches_the_whole_collection(self, index, stored):
        queries = np.concatenate([queries_for(stored, partition, count=3) for partition in PARTITIONS])
        got = index.search_many(COLLECTION, None, queries, 12, exclude=[[]] * len(queries))
        expected = [
            sorted(
                (hit for p in PARTITIONS for hit in brute_force(stored, p, query, 12)),
                key=lambda h: (h.distance, h.object_id),
            )[:12]
            for query in queries
        ]
        self.assert_hits(index, got, expected, stored, queries)
        assert len({stored[object_id].partition for hits in got for object_id in ids(hits)}) > 1

    def test_search_only_looks_at_the_given_partition(self, index, stored):
        query = queries_for(stored, "Men")[0]
        for partition in PARTITIONS:
            hits = index.search(COLLECTION, partition, query, 20, shown_only=False)
            assert len(hits) == 20
            assert {stored[object_id].partition for object_id in ids(hits)} == {partition}
        assert index.search(COLLECTION, "Boys", query, 5) == []
        assert index.search("another collection", "Men", query, 5) == []

    def test_search_returns_only_shown_entries_unless_asked(self, index, stored):
        queries = queries_for(stored, "Women")
        shown = [index.search(COLLECTION, "Women", query, 15) for query in queries]
        assert all(stored[object_id].shown for hits in shown for object_id in ids(hits))
        every = [index.search(COLLECTION, "Women", query, 15, shown_only=False) for query in queries]
        assert any(not stored[object_id].shown for hits in every for object_id in ids(hits))
        expected = [brute_force(stored, "Women", query, 15, shown_only=False) for query in queries]
        self.assert_hits(index, every, expected, stored, queries)

    def test_search_never_returns_an_excluded_id(self, index, stored):
        men = [entry for entry in stored.values() if entry.partition == "Men" and entry.shown]
        for entry in men[:5]:
            nearest = ids(brute_force(stored, "Men", entry.vector, 6))
            exclude = {entry.object_id, *nearest[:4]}
            hits = index.search(COLLECTION, "Men", entry.vector, 10, exclude=exclude)
            assert not exclude & set(ids(hits))
            expected = brute_force(stored, "Men", entry.vector, 10, exclude)
            self.assert_hits(index, [hits], [expected], stored, [entry.vector])

    def test_search_fills_k_when_most_of_the_partition_is_hidden_or_excluded(self, index, stored):
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
        self.assert_hits(index, [hits], [brute_force(stored, "Girls", query, 8, exclude)], stored, [query])
        # Asking for more than qualify returns every one that does, nearest first.
        everything = index.search(COLLECTION, "Girls", query, 50, exclude=exclude)
        assert sorted(ids(everything)) == sorted(keep_shown - exclude)
        assert [hit.distance for hit in everything] == sorted(hit.distance for hit in everything)

    def test_add_replaces_the_entry_of_an_object(self, index, stored):
        moved, hidden, changed = "o0000", "o0003", "o0006"  # all three are shown Men
        rng = np.random.default_rng(11)
        new_vector = (stored[changed].vector + rng.normal(0, 5, len(stored[changed].vector))).astype(np.float32)
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
        np.testing.assert_allclose(
            index.vectors(COLLECTION, [changed])[changed], new_vector, rtol=self.tolerance, atol=self.tolerance
        )
        assert {e.object_id: (e.partition, e.shown) for e in index.entries(COLLECTION) if e.object_id in stored} == {
            **{o: (e.partition, e.shown) for o, e in stored.items()},
            moved: ("Women", True),
            hidden: ("Men", False),
        }

    def test_remove_forgets_objects_and_ignores_unknown_ids(self, index, stored):
        query = stored["o0000"].vector
        nearest = ids(index.search(COLLECTION, "Men", query, 3))
        index.remove(COLLECTION, [*nearest, "never-stored"])
        hits = index.search(COLLECTION, "Men", query, 3)
        assert len(hits) == 3 and not set(nearest) & set(ids(hits))
        assert index.vectors(COLLECTION, nearest) == {}
        assert len(list(index.entries(COLLECTION))) == len(stored) - 3

    def test_clear_forgets_the_collection_only(self, index, stored):
        index.add("other", [Entry("x1", "Men", True, stored["o0000"].vector)])
        index.clear(COLLECTION)
        assert index.search(COLLECTION, "Men", stored["o0000"].vector, 5) == []
        assert list(index.entries(COLLECTION)) == []
        assert index.partitions(COLLECTION) == set()
        assert ids(index.search("other", "Men", stored["o0000"].vector, 5)) == ["x1"]
        # A cleared collection takes vectors again.
        index.add(COLLECTION, [Entry("o0001", "Women", True, stored["o0001"].vector)])
        assert ids(index.search(COLLECTION, "Women", stored["o0001"].vector, 5)) == ["o0001"]

    def test_vectors_returns_the_stored_vectors_by_id(self, index, stored):
        wanted = ["o0005", "o0100", "o0200", "missing"]
        got = index.vectors(COLLECTION, wanted)
        assert set(got) == {"o0005", "o0100", "o0200"}
        for object_id, vector in got.items():
            # Exact backends store float32; others may store half precision.
            np.testing.assert_allclose(vector, stored[object_id].vector, rtol=self.tolerance, atol=self.tolerance)

    def test_entries_lists_a_partition_or_the_whole_collection(self, index, stored):
        women = {entry.object_id: entry for entry in index.entries(COLLECTION, "Women")}
        assert set(women) == {o for o, e in stored.items() if e.partition == "Women"}
        for object_id, entry in women.items():
            assert (entry.partition, entry.shown) == ("Women", stored[object_id].shown)
            np.testing.assert_allclose(entry.vector, stored[object_id].vector, rtol=self.tolerance, atol=self.tolerance)
        assert {entry.object_id for entry in index.entries(COLLECTION)} == set(stored)
        assert list(index.entries(COLLECTION, "Boys")) == []

    def test_partitions_lists_those_holding_entries(self, index, stored):
        assert index.partitions(COLLECTION) == set(PARTITIONS)
        index.remove(COLLECTION, [o for o, e in stored.items() if e.partition == "Girls"])
        assert index.partitions(COLLECTION) == {"Men", "Women"}
        assert index.partitions("nothing here") == set()

    def test_search_many_equals_search_row_by_row(self, index, stored):
        queries = queries_for(stored, "Men", count=12)
        exclude = [{f"o{i * 3:04d}"} for i in range(len(queries))]
        many = index.search_many(COLLECTION, "Men", queries, 7, exclude=exclude)
        single = [index.search(COLLECTION, "Men", query, 7, exclude=ex) for query, ex in zip(queries, exclude)]
        assert [ids(hits) for hits in many] == [ids(hits) for hits in single]
        np.testing.assert_allclose(
            [[h.distance for h in hits] for hits in many], [[h.distance for h in hits] for hits in single], rtol=1e-6
        )
        assert index.search_many(COLLECTION, "Men", queries[:0], 7) == []

    def test_equal_distances_are_ordered_by_object_id(self, index, stored):
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
            pytest.param(lambda v: np.where(np.arange(len(v)) == 7, np.nan, v), id="nan"),
            pytest.param(lambda v: np.where(np.arange(len(v)) == 7, np.inf, v), id="inf"),
            pytest.param(lambda v: v[:-1], id="wrong-dims"),
        ],
    )
    def test_bad_vectors_raise_vector_error_and_store_nothing(self, index, stored, bad):
        good = Entry("new-good", "Men", True, stored["o0000"].vector)
        broken = Entry("new-bad", "Men", True, bad(stored["o0003"].vector).astype(np.float32))
        with pytest.raises(VectorError):
            index.add(COLLECTION, [good, broken])
        with pytest.raises(VectorError):
            index.add(COLLECTION, [Entry("o0000", "Men", True, broken.vector)])
        assert index.vectors(COLLECTION, ["new-good", "new-bad"]) == {}
        np.testing.assert_allclose(
            index.vectors(COLLECTION, ["o0000"])["o0000"],
            stored["o0000"].vector,
            rtol=self.tolerance,
            atol=self.tolerance,
        )
        assert len(list(index.entries(COLLECTION))) == len(stored)

    def test_vectors_of_one_call_must_have_one_length(self, index, dims):
        entries = [
            Entry("a", "Men", True, np.ones(dims, np.float32)),
            Entry("b", "Men", True, np.ones(dims - 1, np.float32)),
        ]
        with pytest.raises(VectorError):
            index.add(COLLECTION, entries)
        assert list(index.entries(COLLECTION)) == []

    def test_one_exclude_set_per_query_or_a_value_error(self, index, stored):
        queries = queries_for(stored, "Men", count=3)
        with pytest.raises(ValueError, match="2 exclude sets for 3 query vectors"):
            index.search_many(COLLECTION, "Men", queries, 5, exclude=[[], []])


    # The optional members: a backend may implement them or keep the base class's defaults.

    def test_vectors_have_the_declared_length_or_one_per_collection(self, index):
        if index.dimensions is not None:
            with pytest.raises(VectorError):
                index.add(COLLECTION, [Entry("long", "Men", True, np.ones(index.dimensions + 1, np.float32))])
            assert list(index.entries(COLLECTION)) == []
            return
        index.add("short", [Entry("a", "Men", True, np.ones(3, np.float32))])
        index.add("long", [Entry("b", "Men", True, np.ones(5, np.float32))])
        assert ids(index.search("short", "Men", np.ones(3, np.float32), 2)) == ["a"]
        assert ids(index.search("long", "Men", np.ones(5, np.float32), 2)) == ["b"]

    def test_ensure_schema_can_run_again_and_keeps_the_entries(self, index, stored):
        index.ensure_schema()
        index.ensure_schema()
        assert {entry.object_id for entry in index.entries(COLLECTION)} == set(stored)

    def test_prune_changes_keeps_what_searches_need(self, index, stored):
        pruned = index.prune_changes()
        assert isinstance(pruned, int) and pruned >= 0
        queries = queries_for(stored, "Women")
        got = index.search_many(COLLECTION, "Women", queries, 10)
        expected = [brute_force(stored, "Women", query, 10) for query in queries]
        self.assert_hits(index, got, expected, stored, queries)

    def test_check_database_finds_nothing_wrong_with_a_working_index(self, index, stored):
        assert index.check_database(connection) == []


def sample_images(size: tuple[int, int], seed: int = 5) -> np.ndarray:
    """Four uint8 RGB images of ``size`` (width, height): a red and a blue gradient, a slightly
    darker copy of the red one, and noise."""
    width, height = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, width)[np.newaxis, :, np.newaxis] * np.ones((height, 1, 1))
    red = np.concatenate([155 + 100 * ramp, 40 * ramp, 20 * ramp], axis=2)
    blue = np.concatenate([20 * ramp, 60 + 40 * ramp, 155 + 100 * ramp], axis=2)
    red_copy = red * 0.95
    noise = rng.integers(0, 256, red.shape)
    return np.stack([red, blue, red_copy, noise]).astype(np.uint8)


class ExtractorTests:
    """The contract of ``BaseExtractor`` as pytest test methods; a subclass supplies ``make_extractor``.

    Name the subclass ``Test...`` so that pytest collects it. No database needed.
    """

    #: Largest difference allowed between a row extracted alone and in a batch, relative to its length.
    tolerance = 1e-4

    def make_extractor(self):
        """The extractor under test, built with its options (called once or twice per test)."""
        raise NotImplementedError("Subclasses of ExtractorTests build the extractor they test in make_extractor().")

    @pytest.fixture
    def extractor(self):
        """The extractor under test."""
        return self.make_extractor()

    @pytest.fixture
    def images(self, extractor) -> np.ndarray:
        """``sample_images`` at the extractor's input size."""
        return sample_images(extractor.input_size)

    def test_extract_gives_one_finite_float32_row_per_image(self, extractor, images):
        vectors = extractor.extract(images)
        assert vectors.dtype == np.float32 and vectors.shape == (len(images), extractor.dims)
        assert np.isfinite(vectors).all()

    def test_a_row_does_not_depend_on_the_rest_of_the_batch(self, extractor, images):
        batch = extractor.extract(images)
        for image, row in zip(images, batch):
            alone = extractor.extract(image[np.newaxis])[0]
            assert np.linalg.norm(alone - row) <= self.tolerance * max(1.0, float(np.linalg.norm(row)))

    def test_a_look_alike_is_nearer_than_other_photos(self, extractor, images):
        red, blue, red_copy, noise = extractor.extract(images)
        assert np.linalg.norm(red - red_copy) < min(np.linalg.norm(red - blue), np.linalg.norm(red - noise))

    def test_model_id_is_stable_and_the_parts_make_up_the_vector(self, extractor):
        assert isinstance(extractor.model_id, str) and extractor.model_id
        assert self.make_extractor().model_id == extractor.model_id
        assert sum(extractor.parts.values()) == extractor.dims

    def test_the_optional_checks_pass_for_a_working_extractor(self, extractor):
        extractor.manifest()  # raises WeightsError for unusable converted files
        assert extractor.weights_source() != "imagenet"  # weights come from a file, not a download at first use
