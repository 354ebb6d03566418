"""Photos to vectors: the write path a worker runs.

``index_many`` reads and decodes photos in threads while the network runs on the previous
batch, then commits each batch in one transaction: the ``FeatureVector`` rows and the index
entries, with the changed objects marked as lacking lists. The neighbour lists they change
are repaired at the end of the run (see ``neighbours``); a repair that fails leaves the
marks for the retry or the sweep.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from django.db import models
from django.db.models import F
from django.db.models.fields.files import FieldFile

from .. import registry
from ..backends import get_extractor, get_index
from ..conf import app_settings
from ..exceptions import ImageError, ImageTooLarge, VectorError
from ..images import decode_image, read_image_bytes
from ..models import FeatureVector, IndexStatus
from ..registry import IndexedModel
from ..utils import chunked
from . import neighbours
from .space import Space, current_space

logger = logging.getLogger(__name__)

Status = IndexStatus

# Photos are decoded in threads (Pillow releases the GIL) while the network runs on the
# previous batch; two decoders keep up with ResNet50 on a CPU.
DECODE_THREADS = 2
#: Vectors per batch when an index is filled from the stored vectors.
LOAD_BATCH = 1000


@dataclass
class Summary:
    """What one indexing run did, by outcome."""

    indexed: int = 0
    unchanged: int = 0
    failed: int = 0
    no_image: int = 0
    superseded: int = 0  # a newer photo arrived while this one was being indexed: its own task does it
    failures: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"{self.indexed} indexed, {self.unchanged} skipped unchanged, "
            f"{self.failed} failed, {self.no_image} without a photo"
        )
        return text + (f", {self.superseded} superseded by a newer photo" if self.superseded else "")


@dataclass
class _Job:
    """One object on its way through ``index_many``."""

    obj: models.Model
    object_id: str
    partition: str
    listed: bool
    existing: FeatureVector | None
    image: FieldFile | None = None  # its photo, found before the decoder threads read it
    image_name: str | None = None  # the stored name of the photo read (None: no photo was read)
    sha256: str = ""
    pixels: np.ndarray | None = None
    error: str = ""
    outcome: str = ""  # "extract", "unchanged", "failed", "no_image" or "superseded"


def photo_sha256(image) -> str:
    """sha256 of a stored photo, streamed in chunks; "" when there is no readable file."""
    if not image:
        return ""
    digest = hashlib.sha256()
    try:
        with image.storage.open(image.name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except (FileNotFoundError, OSError):
        return ""
    return digest.hexdigest()


def mark_changed(
    indexed_model: IndexedModel, object_ids: Iterable[str], *, image_name: str = "", partition: str | None = None
) -> None:
    """Record, without reading any photo, that the objects' photos may have changed: the one pending mark.

    Their vectors become ``pending`` (the sweep's work until their task runs) and their
    ``photo_marks`` go up, which tells a task still reading the old photo that it is
    superseded. The stored hash and vector stay: a task that finds the same photo skips the
    network. ``image_name`` is the photo's stored name now ("": unknown, so the next save marks
    again). A row is created only when ``partition`` is given (a save); a delete or an import
    marks the rows that exist. An existing row keeps its partition: that is where its index
    entry still is, until the task moves it.
    """
    content_type = indexed_model.content_type
    pending = {"status": Status.PENDING, "error": "", "image_name": image_name}
    for chunk in chunked(map(str, object_ids), 500):
        rows = FeatureVector.objects.filter(content_type=content_type, object_id__in=chunk)
        if rows.update(**pending, photo_marks=F("photo_marks") + 1) == len(chunk) or partition is None:
            continue
        for object_id in set(chunk) - set(rows.values_list("object_id", flat=True)):
            # get_or_create, not create: a concurrent save may have made the row since the update.
            _, created = FeatureVector.objects.get_or_create(
                content_type=content_type,
                object_id=object_id,
                defaults={**pending, "partition": partition, "photo_marks": 1},
            )
            if not created:
                rows.filter(object_id=object_id).update(**pending, photo_marks=F("photo_marks") + 1)


def index(obj: models.Model, *, force: bool = False) -> str:
    """Index one object now; returns its outcome ("indexed", "unchanged", "failed", "no_image", "superseded")."""
    summary = index_many([obj], force=force)
    for outcome in ("indexed", "unchanged", "failed", "no_image", "superseded"):
        if getattr(summary, outcome):
            return outcome
    raise AssertionError("index_many accounted for no object")


def index_many(
    objects: Iterable[models.Model],
    *,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Index objects of registered models in batches, then repair the neighbour lists they change.

    A photo whose hash and extractor are unchanged is skipped (unless ``force``); a photo that
    cannot be used marks that object's vector ``failed`` with the reason, and the run goes on.
    ``progress`` is called with the number of objects finished after each batch.

    Each batch's vectors and index entries are committed together, with the changed objects
    marked as lacking lists; the lists are repaired once at the end of the run (one rebuild
    of a partition when much of it changed). If that repair fails, the marks stay: the
    task's retry, the sweep or the next run of this function repairs them.
    """
    extractor = get_extractor()
    model_id = extractor.model_id
    summary = Summary()
    to_repair: dict[str, tuple[IndexedModel, set[str]]] = {}
    with ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="visual_recs_decode") as pool:
        for indexed_model, jobs in _prepared_batches(objects, extractor, model_id, force, pool):
            _extract(extractor, [job for job in jobs if job.outcome == "extract"])
            repair = _commit(indexed_model, jobs, model_id, summary)
            to_repair.setdefault(indexed_model.key, (indexed_model, set()))[1].update(repair)
            if progress is not None:
                progress(len(jobs))
    for indexed_model, object_ids in to_repair.values():
        neighbours.repair_lists(indexed_model, object_ids)
    return summary


def index_vectors(pairs: Sequence[tuple[models.Model, np.ndarray]], *, image_sha256: str = "") -> Summary:
    """Store vectors made elsewhere for objects of one registered model, as indexing their photos would.

    For vectors computed outside this process (a batch job, a benchmark). The lists are
    repaired before it returns. ``image_sha256`` is recorded for each object.
    """
    summary = Summary()
    if not pairs:
        return summary
    indexed_model = registry.for_model(pairs[0][0])
    model_id = get_extractor().model_id
    jobs = _jobs_for(indexed_model, [obj for obj, _ in pairs])
    for job, (_, vector) in zip(jobs, pairs):
        job.sha256, job.outcome, job.pixels = image_sha256, "extract", np.asarray(vector, dtype=np.float32)
    neighbours.repair_lists(indexed_model, _commit(indexed_model, jobs, model_id, summary))
    return summary


def _prepared_batches(objects, extractor, model_id, force, pool) -> Iterator[tuple[IndexedModel, list[_Job]]]:
    """Batches of jobs whose photos were read and decoded in ``pool``, one batch ahead of the caller."""
    ahead: tuple[IndexedModel, list[_Job], list[Future]] | None = None
    for batch in chunked(objects, extractor.batch_size):
        by_model: dict[type, list[models.Model]] = defaultdict(list)
        for obj in batch:
            by_model[type(obj)].append(obj)
        for model_class, objs in by_model.items():
            indexed_model = registry.for_model(model_class)
            jobs = _jobs_for(indexed_model, objs)
            futures = [pool.submit(_read_and_decode, job, extractor, model_id, force) for job in jobs]
            if ahead is not None:
                yield _finished(ahead)
            ahead = (indexed_model, jobs, futures)
    if ahead is not None:
        yield _finished(ahead)


def _finished(ahead) -> tuple[IndexedModel, list[_Job]]:
    indexed_model, jobs, futures = ahead
    for future in futures:
        future.result()  # re-raises a programming error from the thread; image errors are on the job
    return indexed_model, jobs


def _jobs_for(indexed_model: IndexedModel, objs: Sequence[models.Model]) -> list[_Job]:
    """Jobs with the database facts they need, in two queries for the whole batch (and the ``photo`` hook's).

    Each photo is found here, in the caller's thread, not in the decoder threads: a ``photo``
    hook may query the database, and a thread would do it on a connection of its own, outside
    this one's transaction.
    """
    ids = [str(obj.pk) for obj in objs]
    existing = {
        vector.object_id: vector
        for vector in FeatureVector.objects.filter(content_type=indexed_model.content_type, object_id__in=ids).defer(
            "vector"
        )
    }
    listed = {str(pk) for pk in indexed_model.shown().filter(pk__in=[obj.pk for obj in objs]).values_list("pk", flat=True)}
    return [
        _Job(
            obj=obj,
            object_id=object_id,
            partition=indexed_model.partition_of(obj),
            listed=object_id in listed,
            existing=existing.get(object_id),
            image=indexed_model.image_of(obj),
        )
        for obj, object_id in zip(objs, ids)
    ]


def _read_and_decode(job: _Job, extractor, model_id: str, force: bool) -> None:
    """Runs in a decoder thread: fills ``job.outcome`` and its photo's hash, pixels or error.

    An object without a photo is "no_image": its vector, if it had one, is dropped.
    """
    image = job.image
    if image is None:
        job.outcome = "no_image"
        return
    job.image_name = image.name
    try:
        data = read_image_bytes(image, max_bytes=app_settings.MAX_IMAGE_BYTES)
    except ImageTooLarge as exc:
        job.sha256, job.outcome, job.error = photo_sha256(image), "failed", str(exc)
        return
    except ImageError as exc:
        job.outcome, job.error = "failed", str(exc)
        return
    job.sha256 = hashlib.sha256(data).hexdigest()
    existing = job.existing
    if (
        not force
        and existing is not None
        and existing.image_sha256 == job.sha256
        and (
            _has_vector(existing, model_id)
            or (existing.status == Status.FAILED and existing.attempts >= app_settings.MAX_ATTEMPTS)
        )
    ):
        # Same photo as last time: its vector is still right (a save that only renamed or
        # re-uploaded it costs this hash, not the network), and one that failed every attempt
        # would fail again. Below the attempt limit a failure is tried again: some reasons pass
        # (a file not yet fully copied, a worker short of memory).
        job.outcome = "unchanged"
        return
    try:
        job.pixels = decode_image(
            data, size=extractor.input_size, fit=extractor.fit, max_pixels=app_settings.MAX_IMAGE_PIXELS
        )
        job.outcome = "extract"
    except ImageError as exc:
        job.outcome, job.error = "failed", str(exc)


def _has_vector(existing: FeatureVector | None, model_id: str) -> bool:
    """Whether the row holds a vector of the extractor ``model_id`` (ready, or pending a check of its photo)."""
    return (
        existing is not None
        and existing.status != Status.FAILED
        and existing.model_id == model_id
        and existing.dims > 0
    )


def _extract(extractor, jobs: list[_Job]) -> None:
    if not jobs:
        return
    vectors = extractor.extract(np.stack([job.pixels for job in jobs]))
    for job, vector in zip(jobs, vectors):
        job.pixels = vector  # the vector replaces the pixels: the batch holds one or the other


def _commit(indexed_model: IndexedModel, jobs: list[_Job], model_id: str, summary: Summary) -> set[str]:
    """Write a batch's outcomes and index entries in one transaction; returns the ids whose lists need repair.

    Those are the changed objects (marked: their rows lose their ``list_radius``), and the
    unchanged ones still marked by an earlier run whose repair did not finish.
    """
    _refuse_bad_vectors(indexed_model, jobs)
    partitions = {job.partition for job in jobs} | {job.existing.partition for job in jobs if job.existing}
    with neighbours.locked(indexed_model, partitions):
        _drop_superseded(indexed_model, jobs)
        changed = [job for job in jobs if _affects_lists(job, model_id)]
        _store(indexed_model, jobs, model_id, summary)
        _write_index(indexed_model, changed, model_id)
    unfinished = {
        job.object_id
        for job in jobs
        if job.outcome == "unchanged"
        and job.existing.status == Status.READY
        and job.existing.model_id == model_id
        and job.existing.list_radius is None
    }
    return {job.object_id for job in changed} | unfinished


def _drop_superseded(indexed_model: IndexedModel, jobs: list[_Job]) -> None:
    """Jobs whose photo stopped being the object's while they worked on it write nothing.

    A newer save may have replaced the photo after this job read it: under another name (the
    object's field names another file now), or under the same name (its save marked the row
    again: ``photo_marks`` went up, see ``mark_changed``). The newer save's own task writes the
    right vector; an older task must not overwrite it, nor call its old photo unchanged. Runs
    inside the partitions' lock, before the writes.
    """
    read = [
        job
        for job in jobs
        if job.outcome in ("extract", "failed") or (job.outcome == "unchanged" and job.image_name is not None)
    ]
    if not read:
        return
    names_now = indexed_model.photo_names(job.obj.pk for job in read)
    marks_now = dict(
        FeatureVector.objects.filter(
            content_type=indexed_model.content_type, object_id__in=[job.object_id for job in read]
        ).values_list("object_id", "photo_marks")
    )
    for job in read:
        renamed = names_now.get(job.object_id, "") != (job.image.name if job.image else "")
        marks_then = job.existing.photo_marks if job.existing is not None else 0
        remarked = job.object_id in marks_now and marks_now[job.object_id] != marks_then
        if renamed or remarked:
            job.outcome = "superseded"


def _refuse_bad_vectors(indexed_model: IndexedModel, jobs: list[_Job]) -> None:
    """A vector the index cannot hold (NaN, wrong length) fails its object, not the batch."""
    index = get_index()
    for job in jobs:
        if job.outcome != "extract":
            continue
        try:
            index.check_vectors(job.pixels[np.newaxis], index.dimensions)
        except VectorError as exc:
            job.outcome, job.error, job.pixels = "failed", f"The extractor made an unusable vector: {exc}", None


def _write_index(indexed_model: IndexedModel, jobs: list[_Job], model_id: str) -> None:
    """Add the batch's vectors (and moved or shown/hidden ones) to the index, mapped into the
    current space; remove those that left it."""
    index = get_index()
    space = current_space(indexed_model)
    collection = space.collection
    moved_ids = [job.object_id for job in jobs if job.outcome == "unchanged"]
    stored = dict(
        FeatureVector.objects.filter(content_type=indexed_model.content_type, object_id__in=moved_ids).values_list(
            "object_id", "vector"
        )
    )
    rows = [
        (job.object_id, job.partition, job.listed, job.pixels)
        if job.outcome == "extract"
        else (job.object_id, job.partition, job.listed, FeatureVector.from_bytes(stored[job.object_id]))
        for job in jobs
        if job.outcome in ("extract", "unchanged")
    ]
    if rows:
        index.add(collection, space.entries(rows))
    removed = [job.object_id for job in jobs if job.outcome in ("failed", "no_image")]
    if removed:
        index.remove(collection, removed)


def _store(indexed_model: IndexedModel, jobs: list[_Job], model_id: str, summary: Summary) -> None:
    """Write the batch's outcomes (inside ``_commit``'s transaction): upsert vectors, delete those of objects that lost their photo."""
    content_type = indexed_model.content_type
    rows: list[FeatureVector] = []
    for job in jobs:
        if job.outcome == "superseded":
            summary.superseded += 1
            continue
        if job.outcome == "no_image":
            summary.no_image += 1
            continue
        if job.outcome == "unchanged":
            summary.unchanged += 1
            existing = job.existing
            updates = {}
            if existing.partition != job.partition or existing.listed != job.listed:
                updates.update(partition=job.partition, listed=job.listed, list_radius=None)
            if job.image_name is not None and existing.image_name != job.image_name:
                updates["image_name"] = job.image_name
            if job.image_name is not None and existing.status == Status.PENDING:
                # The marked photo was read and is the one the vector was made from: ready again.
                updates.update(status=Status.READY, error="", list_radius=None)
            if updates:
                FeatureVector.objects.filter(pk=existing.pk).update(**updates)
            continue
        row = FeatureVector(
            content_type=content_type,
            object_id=job.object_id,
            partition=job.partition,
            listed=job.listed,
            image_sha256=job.sha256,
            image_name=job.image_name or "",
            list_radius=None,  # no list yet: the mark that the repair (or the sweep) clears
        )
        if job.outcome == "extract":
            summary.indexed += 1
            row.status, row.error, row.attempts = Status.READY, "", 0
            row.model_id, row.dims, row.vector = model_id, len(job.pixels), FeatureVector.to_bytes(job.pixels)
        else:
            summary.failed += 1
            summary.failures.append((job.object_id, job.error))
            logger.warning("visual_recs: %s %s failed: %s", indexed_model.label, job.object_id, job.error)
            row.status, row.error = Status.FAILED, job.error
            row.attempts = _failed_attempts(job.existing, job.sha256) + 1
            row.model_id, row.dims, row.vector = model_id, 0, None
        rows.append(row)
    no_image_ids = [job.object_id for job in jobs if job.outcome == "no_image"]
    if rows:
        FeatureVector.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["content_type", "object_id"],
            update_fields=[
                "partition", "listed", "status", "error", "attempts", "model_id", "dims", "vector",
                "image_sha256", "image_name", "list_radius", "updated_at",
            ],
        )
    if no_image_ids:
        FeatureVector.objects.filter(content_type=content_type, object_id__in=no_image_ids).delete()


def _failed_attempts(existing: FeatureVector | None, sha256: str) -> int:
    """How many times this same photo has failed before (a new photo starts again from none)."""
    if existing is None or existing.status != Status.FAILED or existing.image_sha256 != sha256:
        return 0
    return existing.attempts


def _affects_lists(job: _Job, model_id: str) -> bool:
    """Whether the job changes the index (and so maybe some neighbour list)."""
    if job.outcome == "superseded":
        return False  # it writes nothing: the newer photo's task does
    existing = job.existing
    if job.outcome == "extract":
        return True
    had_vector = _has_vector(existing, model_id)
    if job.outcome in ("failed", "no_image"):
        return had_vector
    moved = had_vector and (existing.partition != job.partition or existing.listed != job.listed)
    # A pending vector found unchanged is written to the index again: it may have been left out
    # of a rebuild while pending (rebuilds load ready rows).
    return moved or (had_vector and existing.status == Status.PENDING and job.image_name is not None)


def unindex(indexed_model: IndexedModel, object_id: str) -> bool:
    """Forget a deleted object: its vector, its index entry, its list, and its place in other lists (repaired).

    Returns False, and forgets nothing, when an object of that key exists again (deleted, then
    saved anew before this ran): that save's own task indexes it.
    """
    object_id = str(object_id)
    content_type = indexed_model.content_type
    rows = FeatureVector.objects.filter(content_type=content_type, object_id=object_id)
    partitions = set(rows.values_list("partition", flat=True)) | neighbours.partitions_of_sources_naming(
        indexed_model, {object_id}
    )
    with neighbours.locked(indexed_model, partitions):
        # Looked at under the lock: a task indexing the object that is back waits for it.
        if indexed_model.all().filter(pk=indexed_model.model._meta.pk.to_python(object_id)).exists():
            return False
        rows.delete()
        get_index().remove(neighbours.current_collection(indexed_model), [object_id])
    neighbours.repair_lists(indexed_model, [object_id])
    return True


def rebuild_index(
    indexed_model: IndexedModel, *, space: Space | None = None, progress: Callable[[int], None] | None = None
) -> int:
    """Fill the configured index from the stored vectors, then recompute every list; returns the vectors loaded.

    For a new index backend (or one that lost its data), or a new fit (``space``, default the
    current one): the ``FeatureVector`` rows of the configured extractor are the source, so no
    photo is read and no network runs. The collection is emptied first, loaded in batches,
    then each partition's lists are rebuilt. ``progress`` is called with the number of vectors
    loaded after each batch.
    """
    index = get_index()
    index.ensure_schema()
    space = space or current_space(indexed_model)
    collection = space.collection
    ready = neighbours.ready_rows(indexed_model).order_by("pk")
    rows = ready.values_list("object_id", "partition", "listed", "vector").iterator(chunk_size=LOAD_BATCH)
    partitions: set[str] = set()
    loaded = 0
    index.clear(collection)
    for batch in chunked(rows, LOAD_BATCH):
        entries = space.entries([(*row, FeatureVector.from_bytes(vector)) for *row, vector in batch])
        with neighbours.locked(indexed_model, {entry.partition for entry in entries}):
            index.add(collection, entries)
        partitions.update(entry.partition for entry in entries)
        loaded += len(entries)
        if progress is not None:
            progress(len(entries))
    for partition in sorted(partitions):
        neighbours.rebuild_partition(indexed_model, partition, collection=collection)
    return loaded


@dataclass
class Reconciled:
    """What one pass of ``reconcile`` checked and fixed, and where the next pass starts."""

    checked: int = 0
    orphans: int = 0
    moved: int = 0
    next_after: int | None = None  # a FeatureVector pk; None: the next pass starts from the beginning

    def __str__(self) -> str:
        return f"{self.checked} vectors checked, {self.orphans} of deleted objects removed, {self.moved} moved or re-shown"


def reconcile(indexed_model: IndexedModel, *, after: int | None = None, limit: int = 5000) -> Reconciled:
    """Fix vectors that disagree with their objects, ``limit`` rows a pass, from the row after ``after``.

    Saves keep vectors in step through their signals; what bypasses them does not: a delete
    whose task could not be queued (broker down), ``queryset.update()`` of the partition field
    or of what the filter looks at, ``bulk_create``. A vector whose object is gone is removed
    (its place in other lists repaired); one whose object changed partition or visibility is
    moved there, its photo not read again. The cost of a pass is bounded by
    ``limit``; the sweep carries ``next_after`` from one pass to the next, so the whole table
    is covered in turn. A photo replaced behind the signals' back is not detected here (that
    would mean reading every photo); ``visual_recs_reindex`` does it.
    """
    result = Reconciled()
    rows = FeatureVector.objects.filter(content_type=indexed_model.content_type).order_by("pk")
    if after is not None:
        rows = rows.filter(pk__gt=after)
    to_pk = indexed_model.model._meta.pk.to_python
    page = rows.values_list("pk", "object_id", "partition", "listed")[:limit]
    for batch in chunked(page.iterator(chunk_size=500), 500):
        by_id = {object_id: (partition, listed) for _, object_id, partition, listed in batch}
        pks = [to_pk(object_id) for object_id in by_id]
        objects = {str(obj.pk): obj for obj in indexed_model.all().filter(pk__in=pks)}
        shown = {str(pk) for pk in indexed_model.shown().filter(pk__in=pks).values_list("pk", flat=True)}
        for object_id in set(by_id) - set(objects):
            unindex(indexed_model, object_id)
            result.orphans += 1
        moved = [
            obj
            for object_id, obj in objects.items()
            if by_id[object_id] != (indexed_model.partition_of(obj), object_id in shown)
        ]
        if moved:
            _relocate(indexed_model, moved)
            result.moved += len(moved)
        result.checked += len(batch)
        result.next_after = batch[-1][0]
    if result.checked < limit:
        result.next_after = None  # reached the end: start again from the beginning next time
    return result


def _relocate(indexed_model: IndexedModel, objects: Sequence[models.Model]) -> None:
    """Move objects' vectors to their current partition and visibility, as their photo is (not read)."""
    model_id = get_extractor().model_id
    jobs = [job for job in _jobs_for(indexed_model, objects) if job.existing is not None]
    for job in jobs:
        job.outcome, job.sha256 = "unchanged", job.existing.image_sha256
    neighbours.repair_lists(indexed_model, _commit(indexed_model, jobs, model_id, Summary()))
