"""The one domain service: photos to vectors, vectors to neighbour lists, lists to pages.

Tasks, signals, the admin, the management commands, the API and the template tag are thin
shells over the functions here: ``index``, ``index_many``, ``unindex``, ``refresh_partition``,
``similar_to``/``recommendations``, ``search_by_image``, ``index_states``, ``index_overview``
and ``objects_needing_work``.

Neighbour lists are kept exact as products come and go: when some vectors change, only the
lists that can be affected are recomputed (the changed products' own, those that name a
changed product, and those a new vector is now closer to than their farthest entry); when
much of a partition changed, the whole partition is rebuilt in one blocked pass.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from django.db import models, transaction
from django.db.models import Count, Max, OuterRef, Subquery

from . import registry
from .backends import get_extractor, get_index
from .conf import app_settings
from .exceptions import ImageError, ImageTooLarge, UnknownPartition
from .images import ImageSource, decode_image, read_image_bytes
from .models import FeatureVector, SimilarItem
from .registry import IndexedModel
from .utils import chunked

logger = logging.getLogger(__name__)

Status = FeatureVector.Status

# Photos are decoded in threads (Pillow releases the GIL) while the network runs on the
# previous batch; two decoders keep up with ResNet50 on a CPU.
DECODE_THREADS = 2
# Above this share of a partition changed, one full rebuild is cheaper than repairs.
FULL_REBUILD_SHARE = 0.25
_SQL_CHUNK = 500  # ids per IN (...) clause: well under SQLite's variable limit


@dataclass
class Summary:
    """What one indexing run did, by outcome."""

    indexed: int = 0
    unchanged: int = 0
    failed: int = 0
    no_image: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.indexed} indexed, {self.unchanged} skipped unchanged, "
            f"{self.failed} failed, {self.no_image} without a photo"
        )


@dataclass
class Similar:
    """One recommendation: a shown object and its distance to the product."""

    object: models.Model
    distance: float
    rank: int


@dataclass
class _Job:
    """One object on its way through ``index_many``."""

    obj: models.Model
    object_id: str
    partition: str
    listed: bool
    existing: FeatureVector | None
    sha256: str = ""
    pixels: np.ndarray | None = None
    error: str = ""
    outcome: str = ""  # "extract", "unchanged", "failed" or "no_image"


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


# --- indexing ---------------------------------------------------------------------------


def index(obj: models.Model, *, force: bool = False) -> str:
    """Index one object now; returns its outcome ("indexed", "unchanged", "failed", "no_image")."""
    summary = index_many([obj], force=force)
    for outcome in ("indexed", "unchanged", "failed", "no_image"):
        if getattr(summary, outcome):
            return outcome
    raise AssertionError("index_many accounted for no object")


def index_many(
    objects: Iterable[models.Model],
    *,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Index objects of registered models in batches, then bring the neighbour lists up to date.

    A photo whose hash and extractor are unchanged is skipped (unless ``force``); a photo that
    cannot be used marks that object's vector ``failed`` with the reason, and the run goes on.
    ``progress`` is called with the number of objects finished after each batch.
    """
    extractor = get_extractor()
    model_id = extractor.model_id
    summary = Summary()
    changed: dict[str, set[str]] = defaultdict(set)  # indexed model key -> object ids
    touched_partitions: dict[str, set[str]] = defaultdict(set)
    registrations: dict[str, IndexedModel] = {}

    with ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="visual_recs_decode") as pool:
        for indexed_model, jobs in _prepared_batches(objects, extractor, model_id, force, pool):
            registrations[indexed_model.key] = indexed_model
            _extract(extractor, [job for job in jobs if job.outcome == "extract"])
            _store(indexed_model, jobs, model_id, summary)
            for job in jobs:
                if _affects_lists(job):
                    changed[indexed_model.key].add(job.object_id)
                    touched_partitions[indexed_model.key].add(job.partition)
                    if job.existing is not None:
                        touched_partitions[indexed_model.key].add(job.existing.partition)
            if progress is not None:
                progress(len(jobs))

    for key, object_ids in changed.items():
        update_neighbours(registrations[key], object_ids, touched_partitions[key])
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
            futures = [pool.submit(_read_and_decode, job, indexed_model, extractor, model_id, force) for job in jobs]
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
    """Jobs with the database facts they need, in two queries for the whole batch."""
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
        )
        for obj, object_id in zip(objs, ids)
    ]


def _read_and_decode(job: _Job, indexed_model: IndexedModel, extractor, model_id: str, force: bool) -> None:
    """Runs in a decoder thread: fills ``job.outcome`` and its photo's hash, pixels or error."""
    image = indexed_model.image_of(job.obj)
    if image is None:
        job.outcome = "no_image"
        return
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
        and (existing.status == Status.FAILED or (existing.status == Status.READY and existing.model_id == model_id))
    ):
        # Same photo as last time: a ready vector is still right, and a failed one would fail again.
        job.outcome = "unchanged"
        return
    try:
        job.pixels = decode_image(
            data, size=extractor.input_size, fit=extractor.fit, max_pixels=app_settings.MAX_IMAGE_PIXELS
        )
        job.outcome = "extract"
    except ImageError as exc:
        job.outcome, job.error = "failed", str(exc)


def _extract(extractor, jobs: list[_Job]) -> None:
    if not jobs:
        return
    vectors = extractor.extract(np.stack([job.pixels for job in jobs]))
    for job, vector in zip(jobs, vectors):
        job.pixels = vector  # the vector replaces the pixels: the batch holds one or the other


def _store(indexed_model: IndexedModel, jobs: list[_Job], model_id: str, summary: Summary) -> None:
    """Write the batch's outcomes: upsert vectors, delete those of objects that lost their photo."""
    content_type = indexed_model.content_type
    rows: list[FeatureVector] = []
    for job in jobs:
        if job.outcome == "no_image":
            summary.no_image += 1
            continue
        if job.outcome == "unchanged":
            summary.unchanged += 1
            existing = job.existing
            if existing.partition != job.partition or existing.listed != job.listed:
                FeatureVector.objects.filter(pk=existing.pk).update(partition=job.partition, listed=job.listed)
            continue
        row = FeatureVector(
            content_type=content_type,
            object_id=job.object_id,
            partition=job.partition,
            listed=job.listed,
            image_sha256=job.sha256,
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
            row.attempts = (job.existing.attempts if job.existing else 0) + 1
            row.model_id, row.dims, row.vector = model_id, 0, None
        rows.append(row)
    no_image_ids = [job.object_id for job in jobs if job.outcome == "no_image"]
    with transaction.atomic():
        if rows:
            FeatureVector.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["content_type", "object_id"],
                update_fields=[
                    "partition", "listed", "status", "error", "attempts", "model_id", "dims", "vector",
                    "image_sha256", "updated_at",
                ],
            )
        if no_image_ids:
            FeatureVector.objects.filter(content_type=content_type, object_id__in=no_image_ids).delete()


def _affects_lists(job: _Job) -> bool:
    """Whether the job may change some neighbour list."""
    existing = job.existing
    if job.outcome == "extract":
        return True
    was_ready = existing is not None and existing.status == Status.READY
    if job.outcome in ("failed", "no_image"):
        return was_ready
    return was_ready and (existing.partition != job.partition or existing.listed != job.listed)


def unindex(indexed_model: IndexedModel, object_id: str) -> None:
    """Forget an object: its vector, its list, and its place in other lists (which are repaired)."""
    object_id = str(object_id)
    content_type = indexed_model.content_type
    partitions = set(
        FeatureVector.objects.filter(content_type=content_type, object_id=object_id).values_list("partition", flat=True)
    )
    partitions |= _partitions_of_sources_naming(indexed_model, {object_id})
    FeatureVector.objects.filter(content_type=content_type, object_id=object_id).delete()
    update_neighbours(indexed_model, {object_id}, partitions)


# --- neighbour lists --------------------------------------------------------------------


@dataclass
class _Partition:
    """The ready vectors of one partition, as arrays."""

    ids: list[str]
    vectors: np.ndarray
    listed: np.ndarray  # bool per row

    @property
    def candidate_rows(self) -> np.ndarray:
        return np.flatnonzero(self.listed)


def _load_partition(indexed_model: IndexedModel, partition: str) -> _Partition:
    model_id = get_extractor().model_id
    rows = FeatureVector.objects.filter(
        content_type=indexed_model.content_type, partition=partition, status=Status.READY, model_id=model_id
    ).values_list("object_id", "vector", "listed", "dims")
    ids, vectors, listed = [], [], []
    for object_id, vector, is_listed, dims in rows.iterator(chunk_size=1000):
        ids.append(object_id)
        vectors.append(np.frombuffer(bytes(vector), dtype="<f4", count=dims))
        listed.append(is_listed)
    matrix = np.vstack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
    return _Partition(ids, matrix, np.array(listed, dtype=bool))


def _partitions_of_sources_naming(indexed_model: IndexedModel, object_ids: set[str]) -> set[str]:
    content_type = indexed_model.content_type
    sources = set()
    for chunk in chunked(object_ids, _SQL_CHUNK):
        sources.update(
            SimilarItem.objects.filter(content_type=content_type, target_id__in=chunk).values_list(
                "source_id", flat=True
            )
        )
    partitions = set()
    for chunk in chunked(sources, _SQL_CHUNK):
        partitions.update(
            FeatureVector.objects.filter(content_type=content_type, object_id__in=chunk).values_list(
                "partition", flat=True
            )
        )
    return partitions


def refresh_partition(indexed_model: IndexedModel, partition: str) -> int:
    """Rebuild every neighbour list of one partition; returns how many lists were written."""
    with partition_lock(indexed_model, partition):
        data = _load_partition(indexed_model, partition)
        content_type = indexed_model.content_type
        stale_sources = set(
            FeatureVector.objects.filter(content_type=content_type, partition=partition).values_list(
                "object_id", flat=True
            )
        ) - set(data.ids)
        _write_lists(indexed_model, data, np.arange(len(data.ids)), clear=stale_sources)
        return len(data.ids)


def update_neighbours(indexed_model: IndexedModel, changed_ids: set[str], partitions: set[str]) -> int:
    """Repair the lists that ``changed_ids`` (new, changed, moved or removed vectors) can affect.

    ``partitions`` are the partitions those objects are in now or were in before.
    Returns how many lists were rewritten.
    """
    # Lists of changed objects that have no ready vector any more (failed, no photo, deleted).
    _delete_lists(indexed_model.content_type, changed_ids)
    written = 0
    for partition in partitions:
        with partition_lock(indexed_model, partition):
            written += _repair_partition(indexed_model, partition, changed_ids)
    return written


@contextmanager
def partition_lock(indexed_model: IndexedModel, partition: str) -> Iterator[None]:
    """A transaction in which no other process reads or rewrites the lists of this partition.

    Without it, two workers indexing neighbours at the same moment would each compute its
    list from vectors that lack the other's. On PostgreSQL this is a transaction-level
    advisory lock (re-entrant, released at commit); SQLite already admits one writer at a time.
    """
    with transaction.atomic():
        connection = transaction.get_connection()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [partition_lock_key(indexed_model, partition)])
        yield


def partition_lock_key(indexed_model: IndexedModel, partition: str) -> int:
    """The 64-bit advisory lock key of one partition of one model."""
    name = f"visual_recs:{indexed_model.content_type.pk}:{partition}".encode()
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big", signed=True)


def _repair_partition(indexed_model: IndexedModel, partition: str, changed_ids: set[str]) -> int:
    data = _load_partition(indexed_model, partition)
    if not data.ids:
        return 0
    k = app_settings.NEIGHBOURS
    content_type = indexed_model.content_type
    row_of = {object_id: row for row, object_id in enumerate(data.ids)}
    changed_rows = np.array(sorted(row_of[i] for i in changed_ids if i in row_of), dtype=int)
    if len(changed_rows) > FULL_REBUILD_SHARE * len(data.ids):
        return refresh_partition(indexed_model, partition)
    rows = set(changed_rows.tolist())
    # Lists naming a changed object hold a stale distance, or an object that left.
    for chunk in chunked(changed_ids, _SQL_CHUNK):
        naming = SimilarItem.objects.filter(content_type=content_type, target_id__in=chunk)
        rows.update(row_of[s] for s in naming.values_list("source_id", flat=True) if s in row_of)
    # Lists that a changed, listed vector now belongs in: closer than their farthest entry, or not full.
    new_candidates = changed_rows[data.listed[changed_rows]] if len(changed_rows) else changed_rows
    if len(new_candidates):
        worst = np.full(len(data.ids), np.inf)
        counts = np.zeros(len(data.ids), dtype=int)
        in_partition = FeatureVector.objects.filter(content_type=content_type, partition=partition)
        for entry in (
            SimilarItem.objects.filter(content_type=content_type, source_id__in=in_partition.values("object_id"))
            .values("source_id")
            .annotate(worst=Max("distance"), n=Count("id"))
        ):
            if entry["source_id"] in row_of:
                worst[row_of[entry["source_id"]]] = entry["worst"]
                counts[row_of[entry["source_id"]]] = entry["n"]
        available = len(data.candidate_rows) - data.listed.astype(int)  # candidates other than itself
        full = counts >= np.minimum(k, available)
        nearest = get_index().kneighbors(data.vectors, data.vectors[new_candidates], 1)
        for row, hits in enumerate(nearest):
            if not full[row] or (hits and hits[0][1] < worst[row]):
                rows.add(row)
    return _write_lists(indexed_model, data, np.array(sorted(rows), dtype=int))


def _write_lists(indexed_model: IndexedModel, data: _Partition, source_rows: np.ndarray, clear: set[str] = frozenset()) -> int:
    """Compute and store the lists of ``source_rows``; also delete the lists of ``clear``."""
    content_type = indexed_model.content_type
    candidates = data.candidate_rows
    position_in_candidates = np.full(len(data.ids), -1)
    position_in_candidates[candidates] = np.arange(len(candidates))
    neighbours = (
        get_index().kneighbors(
            data.vectors[source_rows],
            data.vectors[candidates],
            app_settings.NEIGHBOURS,
            exclude=position_in_candidates[source_rows],
        )
        if len(source_rows) and len(candidates)
        else [[] for _ in source_rows]
    )
    items = [
        SimilarItem(
            content_type=content_type,
            source_id=data.ids[source_row],
            target_id=data.ids[candidates[position]],
            rank=rank,
            distance=distance,
        )
        for source_row, hits in zip(source_rows, neighbours)
        for rank, (position, distance) in enumerate(hits, start=1)
    ]
    with transaction.atomic():
        _delete_lists(content_type, {data.ids[row] for row in source_rows} | set(clear))
        SimilarItem.objects.bulk_create(items, batch_size=1000)
    return len(source_rows)


def _delete_lists(content_type, source_ids: Iterable[str]) -> None:
    for chunk in chunked(source_ids, _SQL_CHUNK):
        SimilarItem.objects.filter(content_type=content_type, source_id__in=chunk).delete()


# --- reading ----------------------------------------------------------------------------

NO_IMAGE = "no_image"
#: Every status ``recommendations`` and ``index_states`` report.
STATUSES = (Status.READY.value, Status.PENDING.value, Status.FAILED.value, NO_IMAGE)


@dataclass(frozen=True)
class IndexState:
    """Where one object stands in the index.

    ``status`` is "ready", "pending" (queued, or never indexed yet), "failed" (``error`` says
    why) or "no_image"; ``partition`` is the object's partition now.
    """

    status: str
    partition: str
    error: str = ""
    image_sha256: str = ""


@dataclass
class Recommendations:
    """What a product page shows: the product's index status and its similar items, nearest first.

    While a product is pending, ``items`` are those of its previous photo, if it had one.
    """

    status: str
    partition: str
    items: list[Similar]
    error: str = ""


class _Hit(NamedTuple):
    """A candidate recommendation before the read-time checks."""

    object_id: str
    distance: float
    partition: str  # where it was found: it must still be the object's partition to be shown
    image_sha256: str = ""


def similar_to(obj: models.Model, limit: int = 5) -> list[Similar]:
    """The nearest shown objects to ``obj`` in its partition, nearest first (see ``recommendations``)."""
    return recommendations(obj, limit).items


def recommendations(obj: models.Model, limit: int = 5) -> Recommendations:
    """The index status of ``obj`` and up to ``limit`` similar shown objects, in three queries.

    The stored neighbour list is read with its targets' photo hashes, then the targets that
    pass the model's filter now and are still in the product's partition: a deleted,
    deactivated or moved product never shows, even before the lists are rebuilt. Photos
    byte-identical to the product's own, or to a nearer item's, are left out unless
    ``EXCLUDE_DUPLICATE_PHOTOS`` is off. A ready product without a list yet (its list is
    being rebuilt) gets neighbours from the index, computed here and not stored.
    """
    indexed_model = registry.for_model(obj)
    object_id = str(obj.pk)
    vector = _state_rows(indexed_model, [object_id]).first()
    state = _state_of(indexed_model, obj, vector)
    if state.status == NO_IMAGE or limit < 1:
        return Recommendations(state.status, state.partition, [], state.error)
    hits = _listed_hits(indexed_model, object_id, state.partition)
    if not hits and state.status == Status.READY:
        hits = _hits_from_index(indexed_model, object_id, vector.partition, state.partition)
        if hits is None:
            # Made by another extractor: the sweep or a reindex will redo it.
            return Recommendations(Status.PENDING.value, state.partition, [])
    same_photo = {state.image_sha256} if state.image_sha256 else set()
    items = _shown(indexed_model, hits, limit, duplicates_of=same_photo)
    return Recommendations(state.status, state.partition, items, state.error)


def index_states(objects: Sequence[models.Model]) -> dict[str, IndexState]:
    """The index state of each of ``objects`` (all of one registered model) by ``str(pk)``, in one query."""
    if not objects:
        return {}
    indexed_model = registry.for_model(objects[0])
    ids = [str(obj.pk) for obj in objects]
    vectors = {vector.object_id: vector for vector in _state_rows(indexed_model, ids)}
    return {object_id: _state_of(indexed_model, obj, vectors.get(object_id)) for obj, object_id in zip(objects, ids)}


def _state_rows(indexed_model: IndexedModel, object_ids: list[str]) -> models.QuerySet:
    return FeatureVector.objects.filter(content_type=indexed_model.content_type, object_id__in=object_ids).only(
        "object_id", "status", "error", "partition", "image_sha256"
    )


def _state_of(indexed_model: IndexedModel, obj: models.Model, vector: FeatureVector | None) -> IndexState:
    partition = indexed_model.partition_of(obj)
    if indexed_model.image_of(obj) is None:
        return IndexState(NO_IMAGE, partition)
    if vector is None:
        # A photo but no row yet: the save's task has not run, or the broker was down (the sweep's work).
        return IndexState(Status.PENDING.value, partition)
    error = vector.error if vector.status == Status.FAILED else ""
    return IndexState(vector.status, partition, error, vector.image_sha256)


def _listed_hits(indexed_model: IndexedModel, object_id: str, partition: str) -> list[_Hit]:
    """The stored list of ``object_id``, with each target's photo hash from the same query."""
    rows = SimilarItem.objects.filter(content_type=indexed_model.content_type, source_id=object_id).order_by("rank")
    if not app_settings.EXCLUDE_DUPLICATE_PHOTOS:
        return [_Hit(target, distance, partition) for target, distance in rows.values_list("target_id", "distance")]
    target_photo = FeatureVector.objects.filter(
        content_type=OuterRef("content_type"), object_id=OuterRef("target_id")
    ).values("image_sha256")[:1]
    rows = rows.annotate(target_sha256=Subquery(target_photo)).values_list("target_id", "distance", "target_sha256")
    return [_Hit(target, distance, partition, sha256 or "") for target, distance, sha256 in rows]


def _hits_from_index(
    indexed_model: IndexedModel, object_id: str, vector_partition: str, partition: str
) -> list[_Hit] | None:
    """The neighbours of a ready vector computed from its partition; None if it is not among them (stale)."""
    data = _load_partition(indexed_model, vector_partition)
    try:
        row = data.ids.index(object_id)
    except ValueError:
        return None
    candidates = data.candidate_rows
    itself = np.flatnonzero(candidates == row)
    found = get_index().kneighbors(
        data.vectors[[row]],
        data.vectors[candidates],
        app_settings.NEIGHBOURS,
        exclude=np.array([itself[0] if len(itself) else -1]),
    )[0]
    target_ids = [data.ids[candidates[position]] for position, _ in found]
    photos: dict[str, str] = {}
    if app_settings.EXCLUDE_DUPLICATE_PHOTOS and target_ids:
        photos = dict(
            FeatureVector.objects.filter(
                content_type=indexed_model.content_type, object_id__in=target_ids
            ).values_list("object_id", "image_sha256")
        )
    return [
        _Hit(target_id, distance, partition, photos.get(target_id, ""))
        for target_id, (_, distance) in zip(target_ids, found)
    ]


def _shown(indexed_model: IndexedModel, hits: list[_Hit], limit: int, *, duplicates_of: set[str]) -> list[Similar]:
    """The first ``limit`` hits that may be shown now, as objects, in one query (none without hits).

    ``duplicates_of``: photo hashes already on the page; hits with these photos, or with the
    photo of a nearer hit, are left out while ``EXCLUDE_DUPLICATE_PHOTOS`` is on.
    """
    to_pk = indexed_model.model._meta.pk.to_python
    shown = indexed_model.shown().in_bulk([to_pk(hit.object_id) for hit in hits])
    by_id = {str(pk): obj for pk, obj in shown.items()}
    exclude_duplicates = app_settings.EXCLUDE_DUPLICATE_PHOTOS
    seen_photos = set(duplicates_of) if exclude_duplicates else set()
    results: list[Similar] = []
    for hit in hits:
        obj = by_id.get(hit.object_id)
        if obj is None or indexed_model.partition_of(obj) != hit.partition:
            continue  # filtered out, deleted, or moved to another partition since it was indexed
        if exclude_duplicates and hit.image_sha256:
            if hit.image_sha256 in seen_photos:
                continue
            seen_photos.add(hit.image_sha256)
        results.append(Similar(obj, hit.distance, len(results) + 1))
        if len(results) == limit:
            break
    return results


# --- what needs work --------------------------------------------------------------------


def objects_needing_work(indexed_model: IndexedModel) -> models.QuerySet:
    """Objects whose vector is pending, made by another extractor, or missing though they have a photo."""
    content_type = indexed_model.content_type
    model_id = get_extractor().model_id
    vectors = FeatureVector.objects.filter(content_type=content_type)
    to_do = set(vectors.filter(status=Status.PENDING).values_list("object_id", flat=True))
    to_do |= set(vectors.filter(status=Status.READY).exclude(model_id=model_id).values_list("object_id", flat=True))
    known = set(vectors.values_list("object_id", flat=True))
    with_photo = {str(pk) for pk in indexed_model.with_photo().values_list("pk", flat=True)}
    to_do |= with_photo - known
    to_pk = indexed_model.model._meta.pk.to_python
    return indexed_model.all().filter(pk__in=[to_pk(object_id) for object_id in to_do])


# --- search by photo --------------------------------------------------------------------


def search_by_image(
    indexed_model: IndexedModel, photo: bytes | ImageSource, *, partition: str | None = None, limit: int = 5
) -> list[Similar]:
    """The shown objects whose photos look most like ``photo``, nearest first.

    ``photo``: its bytes, or anything ``images.read_image_bytes`` reads (an upload, a path).

    The photo passes the same size limits and safe loader as catalog photos, then the
    extractor (which loads its network in this process on first use). ``partition`` (e.g. a
    gender) limits the search to one partition; None searches each and merges by distance.
    Raises ``ImageError`` for a photo that cannot be used and ``UnknownPartition``, both with
    a message for a person. The same photo as a catalog product finds that product first.
    """
    # Bytes go in as a stream, so the size and emptiness checks (and their messages) are the loader's own.
    source = io.BytesIO(photo) if isinstance(photo, bytes) else photo
    data = read_image_bytes(source, max_bytes=app_settings.MAX_IMAGE_BYTES)
    partitions = _searchable_partitions(indexed_model, partition)
    extractor = get_extractor()
    pixels = decode_image(data, size=extractor.input_size, fit=extractor.fit, max_pixels=app_settings.MAX_IMAGE_PIXELS)
    if limit < 1 or not partitions:
        return []
    query = extractor.extract(pixels[np.newaxis])
    # Room for objects filtered out since they were indexed, as the stored lists keep.
    k = limit + app_settings.NEIGHBOURS
    hits: list[_Hit] = []
    for name in partitions:
        vectors = _load_partition(indexed_model, name)
        candidates = vectors.candidate_rows
        found = get_index().kneighbors(query, vectors.vectors[candidates], k)[0]
        hits.extend(_Hit(vectors.ids[candidates[position]], distance, name) for position, distance in found)
    hits.sort(key=lambda hit: hit.distance)
    return _shown(indexed_model, hits[:k], limit, duplicates_of=set())


def _searchable_partitions(indexed_model: IndexedModel, partition: str | None) -> list[str]:
    """The partitions with ready vectors to search: all of them, or ``partition`` if it exists."""
    indexed = set(
        FeatureVector.objects.filter(content_type=indexed_model.content_type, status=Status.READY)
        .values_list("partition", flat=True)
        .distinct()
    )
    if partition is None:
        return sorted(indexed)
    if partition in indexed:
        return [partition]
    declared = _declared_partitions(indexed_model)
    if partition in declared:
        return []  # a real value that has nothing indexed yet
    if not indexed_model.partition_field:
        raise UnknownPartition(f"the {indexed_model.key} catalog has no partitions; leave the partition out")
    known = ", ".join(sorted((indexed | declared) - {""}))
    raise UnknownPartition(
        f"{partition!r} is not a {indexed_model.partition_field} of {indexed_model.key}"
        + (f" (known: {known})" if known else "")
    )


def _declared_partitions(indexed_model: IndexedModel) -> set[str]:
    """The partition values the model declares as choices ({""} when it has no partitions)."""
    if not indexed_model.partition_field:
        return {""}
    field = indexed_model.model._meta.get_field(indexed_model.partition_field)
    return {str(value) for value, _ in field.flatchoices} if field.choices else set()


# --- status -----------------------------------------------------------------------------


def index_overview() -> dict[str, Any]:
    """Counts for staff: per registered model, its objects, and its vectors by partition and status.

    ``stale`` counts ready vectors made by another extractor (a reindex redoes them);
    ``not_indexed`` counts objects with a photo and no vector row yet.
    """
    model_id = get_extractor().model_id
    overview: dict[str, Any] = {"model_id": model_id, "models": {}}
    for key, indexed_model in registry.indexed_models().items():
        vectors = FeatureVector.objects.filter(content_type=indexed_model.content_type)
        partitions: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(Status.values, 0))
        for row in vectors.values("partition", "status").annotate(n=Count("id")).order_by("partition", "status"):
            partitions[row["partition"]][row["status"]] = row["n"]
        objects = indexed_model.all().count()
        with_photo = {str(pk) for pk in indexed_model.with_photo().values_list("pk", flat=True)}
        overview["models"][key] = {
            "model": indexed_model.label,
            "partition_field": indexed_model.partition_field,
            "objects": objects,
            "no_image": objects - len(with_photo),
            "not_indexed": len(with_photo - set(vectors.values_list("object_id", flat=True))),
            "stale": vectors.filter(status=Status.READY).exclude(model_id=model_id).count(),
            "partitions": dict(partitions),
        }
    return overview
