"""What only ``ExactIndex`` promises: its per-process cache follows the change log, never a rolled-back
write, reloads when the log may have been pruned, and answers the same with small working blocks.

A second ``ExactIndex`` instance stands for another process: instances share no cache.
Writes run in ``django_capture_on_commit_callbacks(execute=True)``, which plays the commit
of the test's transaction as far as on-commit hooks go.
"""

from __future__ import annotations

import datetime
import threading

import numpy as np
import pytest
from django.db import connection, transaction
from django.utils import timezone

from visual_recs.backends import indexes
from visual_recs.backends.base import Entry
from visual_recs.backends.indexes import ExactIndex
from visual_recs.models import ExactIndexChange
from visual_recs.testing import COLLECTION, brute_force, ids, make_entries, queries_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def entries() -> dict[str, Entry]:
    return {entry.object_id: entry for entry in make_entries(count=180)}


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a write as if its transaction committed."""

    def write(call, *args):
        with django_capture_on_commit_callbacks(execute=True):
            call(*args)

    return write


@pytest.fixture
def writer(entries, committed) -> ExactIndex:
    index = ExactIndex()
    committed(index.add, COLLECTION, list(entries.values()))
    return index


def near(vector: np.ndarray, seed: int = 5) -> np.ndarray:
    return (vector + np.random.default_rng(seed).normal(0, 0.1, vector.shape)).astype(np.float32)


def test_another_process_follows_the_change_log_without_reloading(
    writer, entries, committed, django_assert_num_queries
):
    reader = ExactIndex()
    query = entries["o0000"].vector
    with django_assert_num_queries(3):  # first use: the log's position, a count, the entries
        before = reader.search(COLLECTION, "Men", query, 5)
    with django_assert_num_queries(1):  # nothing changed: one look at the log
        assert reader.search(COLLECTION, "Men", query, 5) == before

    committed(writer.add, COLLECTION, [Entry("new", "Men", True, near(query))])
    with django_assert_num_queries(2):  # the log, then the changed rows
        assert ids(reader.search(COLLECTION, "Men", query, 5)) == ["o0000", "new", *ids(before)[1:4]]

    committed(writer.add, COLLECTION, [Entry("new", "Women", True, near(query))])  # moved away
    committed(writer.remove, COLLECTION, ["o0000"])
    with django_assert_num_queries(2):
        assert ids(reader.search(COLLECTION, "Men", query, 5)) == ids(before)[1:] + [
            ids(brute_force(entries, "Men", query, 6))[5]
        ]
    with django_assert_num_queries(3):  # Women's first use loads that partition alone
        assert "new" in ids(reader.search(COLLECTION, "Women", query, 3))

    hidden = entries["o0003"]
    committed(writer.add, COLLECTION, [Entry(hidden.object_id, "Men", False, hidden.vector)])
    with django_assert_num_queries(2):
        assert "o0003" not in ids(reader.search(COLLECTION, "Men", hidden.vector, 5))


def test_a_rolled_back_write_is_never_seen(writer, entries):
    reader = ExactIndex()
    query = entries["o0000"].vector
    before = ids(reader.search(COLLECTION, "Men", query, 5))
    assert ids(writer.search(COLLECTION, "Men", query, 5)) == before

    with pytest.raises(RuntimeError), transaction.atomic():
        writer.add(COLLECTION, [Entry("ghost", "Men", True, query)])
        writer.remove(COLLECTION, ["o0003"])
        # The writing transaction sees its own writes.
        assert ids(writer.search(COLLECTION, "Men", query, 2)) == ["ghost", "o0000"]
        raise RuntimeError("the indexing failed after the write")

    assert ids(writer.search(COLLECTION, "Men", query, 5)) == before
    assert ids(reader.search(COLLECTION, "Men", query, 5)) == before
    assert "o0003" in ids(writer.search(COLLECTION, "Men", entries["o0003"].vector, 1))


def test_a_partition_first_searched_inside_the_writing_transaction(
    entries, committed, django_capture_on_commit_callbacks, django_assert_num_queries
):
    index = ExactIndex()
    committed(index.add, COLLECTION, list(entries.values()))
    query = entries["o0000"].vector
    with pytest.raises(RuntimeError), transaction.atomic():
        index.add(COLLECTION, [Entry("ghost", "Men", True, query)])
        assert ids(index.search(COLLECTION, "Men", query, 1)) == ["ghost"]
        raise RuntimeError
    assert "ghost" not in ids(index.search(COLLECTION, "Men", query, 5))

    # Committed: the copy loaded inside the transaction becomes the cache, no reload.
    with django_capture_on_commit_callbacks(execute=True):
        index.add(COLLECTION, [Entry("kept", "Women", True, query)])
        assert ids(index.search(COLLECTION, "Women", query, 1)) == ["kept"]
    with django_assert_num_queries(1):
        assert ids(index.search(COLLECTION, "Women", query, 1)) == ["kept"]


def test_a_cache_older_than_half_the_retention_reloads(writer, entries, committed, monkeypatch):
    reader = ExactIndex(change_retention=datetime.timedelta(hours=1))
    query = entries["o0000"].vector
    reader.search(COLLECTION, "Men", query, 5)
    committed(writer.add, COLLECTION, [Entry("new", "Men", True, query)])
    ExactIndexChange.objects.all().delete()  # a prune that the reader's last look predates

    now = indexes.time.monotonic()
    monkeypatch.setattr(indexes.time, "monotonic", lambda: now + 29 * 60)
    assert "new" not in ids(reader.search(COLLECTION, "Men", query, 5))  # trusted the (pruned) log
    monkeypatch.setattr(indexes.time, "monotonic", lambda: now + 29 * 60 + 31 * 60)
    assert ids(reader.search(COLLECTION, "Men", query, 1)) == ["new"]  # reloaded


def _age_changes(count: int, age: datetime.timedelta) -> None:
    """Make the ``count`` oldest change-log rows ``age`` old."""
    oldest = list(ExactIndexChange.objects.order_by("id").values_list("id", flat=True)[:count])
    ExactIndexChange.objects.filter(id__in=oldest).update(created_at=timezone.now() - age)


def test_prune_changes_deletes_rows_older_than_the_retention(writer, entries):
    index = ExactIndex(change_retention=datetime.timedelta(hours=2))
    total = ExactIndexChange.objects.count()
    _age_changes(50, datetime.timedelta(hours=3))
    assert index.prune_changes() == 50
    assert ExactIndexChange.objects.count() == total - 50
    assert index.prune_changes() == 0


def test_the_sweep_prunes_the_change_log_by_the_configured_retention(settings, writer, entries):
    """The sweep leaves the span to the backend: a week's retention keeps six-day-old rows."""
    from visual_recs import tasks

    settings.VISUAL_RECS = {
        **settings.VISUAL_RECS,
        "INDEX": {"BACKEND": "visual_recs.backends.indexes.ExactIndex", "OPTIONS": {"change_retention": 7 * 86400}},
    }
    total = ExactIndexChange.objects.count()
    _age_changes(60, datetime.timedelta(days=6))
    _age_changes(20, datetime.timedelta(days=8))
    tasks.sweep.delay()
    assert ExactIndexChange.objects.count() == total - 20


@pytest.mark.parametrize("working_memory", [1, 0.00005], ids=["1MiB", "blocks-of-4-rows"])
def test_small_working_memory_gives_the_same_answers(writer, entries, working_memory):
    small = ExactIndex(working_memory=working_memory)
    queries = np.concatenate([queries_for(entries, "Men", count=20), queries_for(entries, "Men", count=20, seed=9)])
    exclude = [{f"o{3 * i:04d}"} for i in range(len(queries))]
    for shown_only in (True, False):
        expected = writer.search_many(COLLECTION, "Men", queries, 9, exclude=exclude, shown_only=shown_only)
        assert small.search_many(COLLECTION, "Men", queries, 9, exclude=exclude, shown_only=shown_only) == expected
        assert [ids(hits) for hits in expected] == [
            ids(brute_force(entries, "Men", query, 9, ex, shown_only)) for query, ex in zip(queries, exclude)
        ]


def test_many_near_ties_still_give_the_exact_order(committed):
    """More rows within float32 noise of the k-th than the shortlist holds: the float64 pass decides."""
    index = ExactIndex()
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 2048).astype(np.float32)
    ring = [Entry(f"r{i:03d}", "Men", True, base + rng.normal(0, 1e-3, 2048).astype(np.float32)) for i in range(60)]
    committed(index.add, COLLECTION, ring)
    query = base + 100
    got = index.search(COLLECTION, "Men", query, 5)
    assert got == brute_force({e.object_id: e for e in ring}, "Men", query, 5)


def test_a_long_lived_cache_grows_compacts_and_reloads_when_far_behind(committed, django_assert_num_queries):
    """Appends past the spare rows, removals past the compaction point, then a backlog bigger than
    the log is worth reading: every step still equals brute force."""
    rng = np.random.default_rng(4)
    writer, reader = ExactIndex(), ExactIndex()
    stored = {
        f"a{i:04d}": Entry(f"a{i:04d}", "Men", i % 4 != 0, rng.normal(0, 1, 16).astype(np.float32)) for i in range(100)
    }
    committed(writer.add, COLLECTION, list(stored.values()))
    queries = rng.normal(0, 1, (6, 16)).astype(np.float32)

    def check():
        got = reader.search_many(COLLECTION, "Men", queries, 7)
        assert got == [brute_force(stored, "Men", query, 7) for query in queries]

    check()
    for batch in range(5):  # 250 appends: the matrix outgrows its spare rows
        new = [Entry(f"b{batch}{i:03d}", "Men", True, rng.normal(0, 1, 16).astype(np.float32)) for i in range(50)]
        committed(writer.add, COLLECTION, new)
        stored.update((entry.object_id, entry) for entry in new)
        check()
    gone = sorted(stored)[::2][:160]  # removals past a quarter of the rows: compacted
    committed(writer.remove, COLLECTION, gone)
    for object_id in gone:
        del stored[object_id]
    check()

    backlog = [Entry(f"c{i:04d}", "Men", True, rng.normal(0, 1, 16).astype(np.float32)) for i in range(1001)]
    committed(writer.add, COLLECTION, backlog)
    stored.update((entry.object_id, entry) for entry in backlog)
    with django_assert_num_queries(4):  # the log (too long to apply), then a reload: position, count, rows
        check()


@pytest.mark.django_db(transaction=True)
def test_threads_sharing_the_cache_never_see_another_threads_uncommitted_write():
    index = ExactIndex()
    entries = make_entries(count=60)
    index.add(COLLECTION, entries)  # autocommit: committed at once
    query = entries[0].vector
    before = ids(index.search(COLLECTION, "Men", query, 3))
    written, looked = threading.Event(), threading.Event()
    seen_by_writer = []

    def write():
        try:
            with transaction.atomic():
                index.add(COLLECTION, [Entry("ghost", "Men", True, query)])
                seen_by_writer.extend(ids(index.search(COLLECTION, "Men", query, 1)))
                written.set()
                looked.wait(10)
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        finally:
            connection.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert written.wait(10)
        assert ids(index.search(COLLECTION, "Men", query, 3)) == before
    finally:
        looked.set()
        thread.join(10)
    assert seen_by_writer == ["ghost"]
    assert ids(index.search(COLLECTION, "Men", query, 3)) == before
