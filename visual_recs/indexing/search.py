"""Search by photo: the upload goes through the safe loader and the extractor, then the index.

One nearest-neighbour query per searched partition; no partition is loaded into this process
(beyond what the index backend itself keeps, see its documentation).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ..backends import get_extractor, get_index
from ..conf import FORM_OVERHEAD_BYTES, app_settings
from ..exceptions import ImageTooLarge, SearchBusy, SearchUnavailable, UnknownPartition, WeightsError
from ..images import ImageSource, decode_image, read_image_bytes
from ..models import FeatureVector, IndexStatus
from ..registry import IndexedModel
from .reading import Similar, Strip, _Hit
from .space import current_space

logger = logging.getLogger(__name__)



def search_by_image(
    indexed_model: IndexedModel, photo: bytes | ImageSource, *, partition: str | None = None, limit: int = 5
) -> list[Similar]:
    """The shown objects whose photos look most like ``photo``, nearest first.

    ``photo``: its bytes, or anything ``images.read_image_bytes`` reads (an upload, a path).

    The photo passes the safe loader of catalog photos, with the stricter limits of uploads
    (``UPLOAD_FORMATS``, ``MAX_UPLOAD_PIXELS``; ``MAX_IMAGE_BYTES``), then the
    extractor (which loads its network in this process on first use). ``partition`` (e.g. a
    gender) limits the search to one partition; None searches them all (one index query).
    Raises ``ImageError`` for a photo that cannot be used and ``UnknownPartition``, both with
    a message for a person. The same photo as a catalog product finds that product first.
    """
    with _search_slot():
        # Bytes go in as a stream, so the size and emptiness checks (and their messages) are the loader's own.
        source = io.BytesIO(photo) if isinstance(photo, bytes) else photo
        data = read_image_bytes(source, max_bytes=app_settings.MAX_IMAGE_BYTES)
        _check_partition(indexed_model, partition)
        extractor = get_extractor()
        pixels = decode_image(
            data,
            size=extractor.input_size,
            fit=extractor.fit,
            max_pixels=min(app_settings.MAX_UPLOAD_PIXELS, app_settings.MAX_IMAGE_PIXELS),
            formats=app_settings.UPLOAD_FORMATS,
        )
        if limit < 1:
            return []
        try:
            vector = extractor.extract(pixels[np.newaxis])[0]
        except WeightsError as exc:
            logger.error("Search by photo is unavailable: %s", exc)
            raise SearchUnavailable("search by photo is unavailable right now; try again later") from exc
        return _search(indexed_model, vector, partition, limit)


def refuse_oversized_upload(declared_bytes: int | str | None) -> None:
    """``ImageTooLarge`` for a request body declared larger than a photo may be, before it is read.

    ``declared_bytes`` is the request's ``Content-Length``; a multipart form adds a little
    around the file, hence the allowance.
    """
    try:
        declared = int(declared_bytes or 0)
    except (TypeError, ValueError):
        return  # no usable length: the loader still stops reading past MAX_IMAGE_BYTES
    limit = app_settings.MAX_IMAGE_BYTES
    if declared > limit + FORM_OVERHEAD_BYTES:
        raise ImageTooLarge(f"the upload is larger than the {limit / (1024 * 1024):.3g} MB limit")


_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


@contextmanager
def _search_slot() -> Iterator[None]:
    """One of the process's ``MAX_CONCURRENT_SEARCHES`` slots, or ``SearchBusy`` at once."""
    size = app_settings.MAX_CONCURRENT_SEARCHES
    with _slots_lock:
        slots = _slots.setdefault(size, threading.BoundedSemaphore(size))
    if not slots.acquire(blocking=False):
        raise SearchBusy(f"this server is already running {size} searches by photo; try again in a moment")
    try:
        yield
    finally:
        slots.release()


def search_by_vector(
    indexed_model: IndexedModel, vector: np.ndarray, *, partition: str | None = None, limit: int = 5
) -> list[Similar]:
    """``search_by_image`` for a vector the extractor already made: one index query."""
    _check_partition(indexed_model, partition)
    if limit < 1:
        return []
    return _search(indexed_model, np.asarray(vector, dtype=np.float32), partition, limit)


def _search(indexed_model: IndexedModel, query: np.ndarray, partition: str | None, limit: int) -> list[Similar]:
    """One index query: in ``partition``, or (None) in the whole collection, which is every partition's nearest merged."""
    space = current_space(indexed_model)
    query = space.to_index(query[np.newaxis])[0]  # into the space the index holds
    # Room for objects filtered out since they were indexed, as the stored lists keep.
    k = limit + app_settings.NEIGHBOURS
    found = get_index().search(space.collection, partition, query, k)
    hits = [_Hit(hit.object_id, hit.distance, partition) for hit in found]
    strip = Strip(indexed_model, limit)
    strip.add(hits)
    return strip.items()


#: The most characters of an unknown partition an error message repeats.
ECHOED = 40


def _check_partition(indexed_model: IndexedModel, partition: str | None) -> None:
    """``UnknownPartition`` unless ``partition`` is None, holds ready vectors, or is a declared value."""
    if partition is None:
        return
    ready = FeatureVector.objects.filter(content_type=indexed_model.content_type, status=IndexStatus.READY)
    if ready.filter(partition=partition).exists():
        return
    declared = _declared_partitions(indexed_model)
    if partition in declared:
        return  # a real value that has nothing indexed yet
    if not indexed_model.partitioned:
        raise UnknownPartition(f"the {indexed_model.key} catalog has no partitions; leave the partition out")
    indexed = set(ready.values_list("partition", flat=True).distinct())
    known = ", ".join(sorted((indexed | declared) - {""}))
    shown = partition if len(partition) <= ECHOED else partition[:ECHOED] + "…"  # not a client's megabyte back
    raise UnknownPartition(
        f"{shown!r} is not one of the {indexed_model.partition_field or 'partition'} values of {indexed_model.key}"
        + (f" (known: {known})" if known else "")
    )


def _declared_partitions(indexed_model: IndexedModel) -> set[str]:
    """The partition values the model declares as choices ({""} when it has no partitions; none with a hook)."""
    if not indexed_model.partitioned:
        return {""}
    if indexed_model.partition_hook is not None:
        return set()
    field = indexed_model.model._meta.get_field(indexed_model.partition_field)
    return {str(value) for value, _ in field.flatchoices} if field.choices else set()

