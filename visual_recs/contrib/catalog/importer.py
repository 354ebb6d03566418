"""Import a catalog CSV and its photos into a model, as a :class:`~.mapping.Mapping` says.

By default the file is the sample fashion dataset's (``fashion.csv``: ProductId, Gender, ...,
ProductTitle, Image) and the model the bundled Product; a shop maps its own columns onto its
own model. The id column finds each row's object (its primary key, or a unique field), and
each photo is stored through the field's storage under ``<upload_to>/<id>.<ext>``, so
importing the same file again finds every row unchanged and writes nothing.

Photos are data from elsewhere: a path must stay inside the images directory (no absolute
path, ``..`` or symbolic link out of it), and a file is an image when Pillow recognises its
bytes, whatever its name says.

A new photo for an existing object is stored under a name of its own
(``<upload_to>/<id>-<hash>.<ext>``) and the old file deleted only after the rows commit; in the
same transaction the object's vector is marked pending. An import stopped at any point
therefore leaves each object either as it was (old row, old photo, old vector) or changed and
marked for indexing, never a new photo behind an old vector.

Saves happen with the app's signals paused; the caller indexes :func:`ids_to_index` in one go.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from django.core.exceptions import SuspiciousFileOperation, ValidationError
from django.core.files.base import ContentFile
from django.db import models, transaction
from django.db.models.fields import AutoFieldMixin
from django.db.models.fields.files import FieldFile
from django.utils.text import get_valid_filename

from visual_recs import indexing, queue, registry
from visual_recs.conf import app_settings
from visual_recs.exceptions import ImageError, MissingImage, NotRegistered
from visual_recs.images import image_format, read_image_bytes
from visual_recs.utils import chunked

from .exceptions import CatalogError
from .mapping import InvalidValue, Mapping

# Browsers serve a photo by its type; Pillow's name for it is the extension, except for these.
_EXTENSION_OF_FORMAT = {"JPEG": ".jpg", "TIFF": ".tif"}
_ROWS_PER_TRANSACTION = 200  # one commit per block: SQLite writes thousands of rows a second this way


@dataclass(frozen=True)
class CatalogRow:
    """One data row of the CSV, with the line it ends on (for messages)."""

    line: int
    values: dict[str, str]


@dataclass(frozen=True)
class Skipped:
    """A row that was not imported, and why."""

    line: int
    id_column: str
    key: str
    reason: str

    def __str__(self) -> str:
        who = f"{self.id_column} {self.key}" if self.key else f"no {self.id_column}"
        return f"line {self.line} ({who}): {self.reason}"


@dataclass
class ImportSummary:
    """What one import did, row by row (primary keys of the objects)."""

    created: list[Any] = field(default_factory=list)
    updated: list[Any] = field(default_factory=list)
    unchanged: list[Any] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    #: Updated objects whose photo or partition changed: their vectors are stale.
    reindex: list[Any] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)

    def __str__(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped"
        )


class _SkipRow(Exception):
    """Internal: the current row cannot be imported; ``str()`` says why."""


def read_catalog(csv_path: str | Path, mapping: Mapping, *, limit: int | None = None) -> list[CatalogRow]:
    """The first ``limit`` (default: all) data rows of the CSV; CatalogError if it cannot be used at all,
    e.g. a column of the mapping is missing (named in the message)."""
    csv_path = Path(csv_path)
    try:
        # utf-8-sig: spreadsheets save CSV with a byte-order mark that would stick to the first column.
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = mapping.required_columns - set(reader.fieldnames or ())
            if missing:
                raise CatalogError(f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}.")
            # line_num is the line the row ends on; a quoted field may span lines.
            return [CatalogRow(reader.line_num, values) for values in itertools.islice(reader, limit)]
    except FileNotFoundError as exc:
        raise CatalogError(f"There is no CSV file at {csv_path}.") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CatalogError(f"{csv_path} cannot be read as UTF-8 CSV: {exc}") from exc


def import_rows(
    rows: Iterable[CatalogRow],
    images_dir: str | Path,
    mapping: Mapping,
    *,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Create or update an object per row, photo included; skip (and report) rows that cannot be used.

    A row is unchanged when its fields equal the object's and its photo has the same sha256
    as the stored one; then nothing is written. ``progress`` is called with 1 after each row.
    """
    images_root = Path(images_dir).resolve()
    if not images_root.is_dir():
        raise CatalogError(f"The images directory {images_dir} does not exist.")
    importer = _Importer(mapping, images_root)
    with queue.paused():
        for block in chunked(rows, _ROWS_PER_TRANSACTION):
            importer.import_block(block, progress)
    return importer.summary


def ids_to_index(mapping: Mapping, summary: ImportSummary) -> list[Any]:
    """Objects of this import whose vectors must be (re)made: new or changed ones, and
    unchanged ones never indexed (an earlier run stopped before indexing finished).

    Raises NotRegistered when the mapping's model is not in ``VISUAL_RECS["MODELS"]``.
    """
    indexed_model = registry.for_model(mapping.model)
    needing_work = set(indexing.objects_needing_work(indexed_model).values_list("pk", flat=True))
    return sorted({*summary.created, *summary.updated, *needing_work.intersection(summary.unchanged)})


class _Importer:
    """One import's state: the mapping, the rows seen so far, and the summary."""

    def __init__(self, mapping: Mapping, images_root: Path) -> None:
        self.mapping = mapping
        self.images_root = images_root
        self.summary = ImportSummary()
        self.seen: dict[Any, int] = {}  # key -> line, to refuse duplicates within the file
        self.partition_field = _partition_field(mapping.model)
        meta = mapping.model._meta
        # The row's own fields are validated; the id too, unless the database assigns it.
        checked = {*mapping.columns, *([] if isinstance(mapping.id_field, AutoFieldMixin) else [mapping.id_field.name])}
        self.unchecked = [f.name for f in meta.concrete_fields if f.name not in checked]

    def import_block(self, block: list[CatalogRow], progress: Callable[[int], None] | None) -> None:
        keys = []
        for row in block:
            try:
                keys.append(self.mapping.key_of(row.values))
            except InvalidValue:
                pass  # reported when the row itself is imported
        # The base manager: a default manager that hides some objects must not make them look new.
        existing = self.mapping.model._base_manager.in_bulk(keys, field_name=self.mapping.id_field.name)
        with transaction.atomic():
            reindex_before = len(self.summary.reindex)
            for row in block:
                try:
                    self.import_row(row, existing)
                except (_SkipRow, InvalidValue) as exc:
                    # As the row has it, for the message; a NUL shown as \x00 (the summary is printed).
                    key = (row.values.get(self.mapping.id_column) or "").strip().replace("\x00", "\\x00")
                    self.summary.skipped.append(Skipped(row.line, self.mapping.id_column, key, str(exc)))
                if progress is not None:
                    progress(1)
            _mark_vectors_pending(self.mapping.model, self.summary.reindex[reindex_before:])

    def import_row(self, row: CatalogRow, existing: dict[Any, models.Model]) -> None:
        mapping = self.mapping
        key = mapping.key_of(row.values)
        if key in self.seen:
            raise _SkipRow(f"{mapping.id_column} {key} already appeared on line {self.seen[key]}")
        self.seen[key] = row.line
        values = mapping.values_of(row.values)
        data, extension = _read_photo(self.images_root, mapping.photo_name_of(row.values), mapping.image_column)
        obj = existing.get(key)
        is_new = obj is None
        if is_new:
            obj = mapping.model(**{mapping.id_field.attname: key})
        meta = mapping.model._meta
        changed_fields = [name for name, value in values.items() if meta.get_field(name).value_from_object(obj) != value]
        for name in changed_fields:
            setattr(obj, meta.get_field(name).attname, values[name])
        self.validate(obj)
        photo = getattr(obj, mapping.image_field.attname)
        sha256 = hashlib.sha256(data).hexdigest()
        photo_changed = is_new or indexing.photo_sha256(photo) != sha256
        if not changed_fields and not photo_changed:
            self.summary.unchanged.append(obj.pk)
            return
        stem = _file_stem(key)
        if is_new:
            _store_photo(obj, mapping.image_field, f"{stem}{extension}", data, sha256)
        elif photo_changed:
            _replace_photo(obj, mapping.image_field, stem, f"{stem}-{sha256[:16]}{extension}", data, sha256)
        obj.save()
        if is_new:
            self.summary.created.append(obj.pk)
            return
        self.summary.updated.append(obj.pk)
        if photo_changed or self.partition_field in changed_fields:
            self.summary.reindex.append(obj.pk)

    def validate(self, obj: models.Model) -> None:
        """The model's own rules (choices, lengths, required) for the fields the CSV sets."""
        try:
            obj.clean_fields(exclude=self.unchecked)
        except ValidationError as exc:
            reasons = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in exc.message_dict.items())
            raise _SkipRow(reasons) from exc


def _partition_field(model: type[models.Model]) -> str | None:
    """The registered partition field: a change of it moves the vector, as a new photo does."""
    try:
        return registry.for_model(model).partition_field
    except NotRegistered:
        return None


def _file_stem(key: Any) -> str:
    """The start of the stored photo's name: the row's id, made safe for a file name."""
    try:
        return get_valid_filename(str(key))
    except SuspiciousFileOperation as exc:
        raise _SkipRow(f"the id {key!r} cannot name a file") from exc


def _photo_path(images_root: Path, name: str, column: str) -> Path:
    """The file ``name`` names inside ``images_root`` (already resolved); _SkipRow if it points elsewhere.

    Refuses absolute paths, ``..`` parts and symbolic links that lead out of the directory:
    a CSV is data from elsewhere and must not make the import copy arbitrary server files.
    """
    if not name:
        raise _SkipRow(f"the {column} column is empty")
    candidate = Path(name)
    if candidate.is_absolute() or candidate.drive or name.startswith(("/", "\\")):
        raise _SkipRow(f"photo path {name!r} is absolute; it must be relative to the images directory")
    if ".." in candidate.parts or ".." in name.split("\\"):
        raise _SkipRow(f"photo path {name!r} leads out of the images directory")
    path = (images_root / candidate).resolve()
    if not path.is_relative_to(images_root):
        raise _SkipRow(f"photo path {name!r} resolves outside the images directory (a symbolic link)")
    return path


def _read_photo(images_root: Path, name: str, column: str) -> tuple[bytes, str]:
    """The photo's bytes and the extension its format is served under; _SkipRow when it is unusable."""
    path = _photo_path(images_root, name, column)
    try:
        data = read_image_bytes(path, max_bytes=app_settings.MAX_IMAGE_BYTES)
    except MissingImage as exc:
        raise _SkipRow(f"photo {name!r} is not in the images directory") from exc
    except ImageError as exc:
        raise _SkipRow(f"photo {name!r}: {exc}") from exc
    fmt = image_format(data)
    if fmt is None:
        raise _SkipRow(f"photo {name!r} is not an image (or a format Pillow cannot read)")
    return data, _EXTENSION_OF_FORMAT.get(fmt, f".{fmt.lower()}")


def _store_photo(obj: models.Model, image_field: models.FileField, filename: str, data: bytes, sha256: str) -> None:
    """Point the object's photo at ``filename`` under the field's ``upload_to``, holding ``data``.

    A file already there with the same content is kept (an earlier run, or a database that was
    reset while the media stayed); another file there is replaced, so the name stays fixed
    instead of the storage inventing ``<name>_<random>`` beside it.
    """
    name = image_field.generate_filename(obj, filename)
    setattr(obj, image_field.attname, name)  # a fresh FieldFile: the old one may hold an open file
    photo: FieldFile = getattr(obj, image_field.attname)
    if indexing.photo_sha256(photo) == sha256:
        return
    if photo.storage.exists(name):
        photo.storage.delete(name)
    setattr(obj, image_field.attname, photo.storage.save(name, ContentFile(data)))


def _replace_photo(
    obj: models.Model, image_field: models.FileField, stem: str, filename: str, data: bytes, sha256: str
) -> None:
    """Store an object's new photo as ``filename`` beside the old one, which goes after the commit.

    Until the transaction commits, the row (and so the vector made from it) still names the
    old file, which is untouched: a stopped import changes nothing a rerun would miss. Only
    files this import named after the object are deleted, never a photo a shop uploaded.
    """
    old = getattr(obj, image_field.attname)
    old_name, storage = old.name, old.storage
    _store_photo(obj, image_field, filename, data, sha256)
    ours = image_field.generate_filename(obj, stem)
    new_name = getattr(obj, image_field.attname).name
    if old_name.startswith((f"{ours}.", f"{ours}-")) and old_name != new_name:
        transaction.on_commit(partial(storage.delete, old_name))


def _mark_vectors_pending(model: type[models.Model], pks: list[Any]) -> None:
    """Vectors of updated photos or partitions become pending, in the transaction of the rows'
    change, so the sweep redoes them even if the import stops or queueing fails (saves were
    paused, so no receiver did this)."""
    if not pks:
        return
    try:
        indexed_model = registry.for_model(model)
    except NotRegistered:
        return
    # No photo name: the photo to index is the one the object has when its task runs.
    indexing.mark_changed(indexed_model, pks)
