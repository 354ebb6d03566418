"""Import a catalog in the sample fashion dataset's CSV format into the bundled ``Product``.

The format is the one of the article's dataset (``fashion.csv``): ProductId, Gender, Category,
SubCategory, ProductType, Colour, Usage, ProductTitle, Image (a file name under the images
directory), ImageURL (not used: the original shop's address). ProductId stays the primary
key, and each photo is stored through the field's storage under ``products/<ProductId>.<ext>``,
so importing the same file again finds every row unchanged and writes nothing.

A new photo for an existing product is stored under a name of its own
(``products/<ProductId>-<hash>.<ext>``) and the old file deleted only after the rows commit;
in the same transaction the product's vector is marked pending. An import stopped at any
point therefore leaves each product either as it was (old row, old photo, old vector) or
changed and marked for indexing, never a new photo behind an old vector.

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

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction

from . import indexing, queue, registry
from .conf import app_settings
from .exceptions import ImageError, MissingImage, NotRegistered, VisualRecsError
from .images import image_format, read_image_bytes
from .models import FeatureVector, Product
from .utils import chunked

#: CSV column -> ``Product`` field, for the fields the import keeps in step with the file.
FIELD_OF_COLUMN: dict[str, str] = {
    "ProductTitle": "title",
    "Gender": "gender",
    "Category": "category",
    "SubCategory": "subcategory",
    "ProductType": "product_type",
    "Colour": "colour",
    "Usage": "usage",
}
REQUIRED_COLUMNS = frozenset({"ProductId", "Image", *FIELD_OF_COLUMN})
PHOTO_DIR = "products"
# Browsers serve a photo by its type; Pillow's name for it is the extension, except for these.
_EXTENSION_OF_FORMAT = {"JPEG": ".jpg", "TIFF": ".tif"}
_ROWS_PER_TRANSACTION = 200  # one commit per block: SQLite writes thousands of rows a second this way


class CatalogError(VisualRecsError):
    """The CSV as a whole cannot be imported (missing file, missing columns, not CSV)."""


@dataclass(frozen=True)
class CatalogRow:
    """One data row of the CSV, with the line it starts on (for messages)."""

    line: int
    values: dict[str, str]

    @property
    def product_id(self) -> str:
        return (self.values.get("ProductId") or "").strip()


@dataclass(frozen=True)
class Skipped:
    """A row that was not imported, and why."""

    line: int
    product_id: str
    reason: str

    def __str__(self) -> str:
        who = f"ProductId {self.product_id}" if self.product_id else "no ProductId"
        return f"line {self.line} ({who}): {self.reason}"


@dataclass
class ImportSummary:
    """What one import did, row by row."""

    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    #: Updated products whose photo or gender changed: their vectors are stale.
    reindex: list[int] = field(default_factory=list)

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


def read_catalog(csv_path: str | Path, *, limit: int | None = None) -> list[CatalogRow]:
    """The first ``limit`` (default: all) data rows of the CSV; CatalogError if it cannot be used at all."""
    csv_path = Path(csv_path)
    try:
        # utf-8-sig: spreadsheets save CSV with a byte-order mark that would stick to "ProductId".
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = REQUIRED_COLUMNS - set(reader.fieldnames or ())
            if missing:
                raise CatalogError(f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}.")
            rows = []
            for values in itertools.islice(reader, limit):
                # line_num is the line the row ends on; a quoted field may span lines.
                rows.append(CatalogRow(reader.line_num, values))
            return rows
    except FileNotFoundError as exc:
        raise CatalogError(f"There is no CSV file at {csv_path}.") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CatalogError(f"{csv_path} cannot be read as UTF-8 CSV: {exc}") from exc


def import_rows(
    rows: Iterable[CatalogRow],
    images_dir: str | Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Create or update a ``Product`` per row, photo included; skip (and report) rows that cannot be used.

    A row is unchanged when its fields equal the product's and its photo has the same sha256
    as the stored one; then nothing is written. ``progress`` is called with 1 after each row.
    """
    images_root = Path(images_dir).resolve()
    if not images_root.is_dir():
        raise CatalogError(f"The images directory {images_dir} does not exist.")
    summary = ImportSummary()
    seen: dict[int, int] = {}  # ProductId -> line, to refuse duplicates within the file
    with queue.paused():
        for block in chunked(rows, _ROWS_PER_TRANSACTION):
            existing = Product.objects.in_bulk([pk for pk in map(_pk_or_none, block) if pk is not None])
            with transaction.atomic():
                reindex_before = len(summary.reindex)
                for row in block:
                    try:
                        _import_row(row, images_root, existing, seen, summary)
                    except _SkipRow as exc:
                        summary.skipped.append(Skipped(row.line, row.product_id, str(exc)))
                    if progress is not None:
                        progress(1)
                _mark_vectors_pending(summary.reindex[reindex_before:])
    return summary


def ids_to_index(summary: ImportSummary) -> list[int]:
    """Products of this import whose vectors must be (re)made: new or changed ones, and
    unchanged ones never indexed (an earlier run stopped before indexing finished).

    Raises NotRegistered when ``Product`` is not in ``VISUAL_RECS["MODELS"]``.
    """
    indexed_model = registry.for_model(Product)
    needing_work = set(indexing.objects_needing_work(indexed_model).values_list("pk", flat=True))
    return sorted({*summary.created, *summary.updated, *needing_work.intersection(summary.unchanged)})


def _photo_path(images_root: Path, name: str) -> Path:
    """The file ``name`` names inside ``images_root`` (already resolved); _SkipRow if it points elsewhere.

    Refuses absolute paths, ``..`` parts and symbolic links that lead out of the directory:
    a CSV is data from elsewhere and must not make the import copy arbitrary server files.
    """
    if not name:
        raise _SkipRow("the Image column is empty")
    candidate = Path(name)
    if candidate.is_absolute() or candidate.drive or name.startswith(("/", "\\")):
        raise _SkipRow(f"photo path {name!r} is absolute; it must be relative to the images directory")
    if ".." in candidate.parts or ".." in name.split("\\"):
        raise _SkipRow(f"photo path {name!r} leads out of the images directory")
    path = (images_root / candidate).resolve()
    if not path.is_relative_to(images_root):
        raise _SkipRow(f"photo path {name!r} resolves outside the images directory (a symbolic link)")
    return path


def _pk_or_none(row: CatalogRow) -> int | None:
    try:
        pk = int(row.product_id)
    except ValueError:
        return None
    return pk if pk > 0 else None


def _import_row(
    row: CatalogRow, images_root: Path, existing: dict[int, Product], seen: dict[int, int], summary: ImportSummary
) -> None:
    pk = _pk_or_none(row)
    if pk is None:
        raise _SkipRow(f"ProductId {row.product_id!r} is not a positive whole number")
    if pk in seen:
        raise _SkipRow(f"ProductId {pk} already appeared on line {seen[pk]}")
    seen[pk] = row.line
    values = {name: (row.values.get(column) or "").strip() for column, name in FIELD_OF_COLUMN.items()}
    data, extension = _read_photo(images_root, (row.values.get("Image") or "").strip())
    product = existing.get(pk)
    is_new = product is None
    if is_new:
        product = Product(pk=pk)
    changed_fields = [name for name, value in values.items() if getattr(product, name) != value]
    for name in changed_fields:
        setattr(product, name, values[name])
    _validate(product, values)
    sha256 = hashlib.sha256(data).hexdigest()
    photo_changed = is_new or indexing.photo_sha256(product.image) != sha256
    if not changed_fields and not photo_changed:
        summary.unchanged.append(pk)
        return
    if is_new:
        _store_photo(product, f"{PHOTO_DIR}/{pk}{extension}", data, sha256)
    elif photo_changed:
        _replace_photo(product, f"{PHOTO_DIR}/{pk}-{sha256[:16]}{extension}", data, sha256)
    product.save()
    if is_new:
        summary.created.append(pk)
        return
    summary.updated.append(pk)
    if photo_changed or "gender" in changed_fields:
        summary.reindex.append(pk)


def _read_photo(images_root: Path, name: str) -> tuple[bytes, str]:
    """The photo's bytes and the extension its format is served under; _SkipRow when it is unusable."""
    path = _photo_path(images_root, name)
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


def _validate(product: Product, values: dict[str, str]) -> None:
    """The model's own rules (choices, lengths, required) for the fields the CSV sets."""
    others = [f.name for f in Product._meta.get_fields() if f.concrete and f.name not in values]
    try:
        product.clean_fields(exclude=others)
    except ValidationError as exc:
        reasons = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in exc.message_dict.items())
        raise _SkipRow(reasons) from exc


def _store_photo(product: Product, name: str, data: bytes, sha256: str) -> None:
    """Point ``product.image`` at ``name`` in the field's storage, holding ``data``.

    A file already there with the same content is kept (an earlier run, or a database that was
    reset while the media stayed); another file there is replaced, so the name stays fixed
    instead of the storage inventing ``<name>_<random>`` beside it.
    """
    product.image = name  # a fresh FieldFile: the old one may hold an open file of the previous photo
    if indexing.photo_sha256(product.image) == sha256:
        return
    storage = product.image.storage
    if storage.exists(name):
        storage.delete(name)
    product.image = storage.save(name, ContentFile(data))


def _replace_photo(product: Product, name: str, data: bytes, sha256: str) -> None:
    """Store a product's new photo under ``name`` beside the old one, which goes after the commit.

    Until the transaction commits, the row (and so the vector made from it) still names the
    old file, which is untouched: a stopped import changes nothing a rerun would miss. Only
    files this import named after the product are deleted, never a photo a shop uploaded.
    """
    old_name = product.image.name
    _store_photo(product, name, data, sha256)
    ours = old_name.startswith((f"{PHOTO_DIR}/{product.pk}.", f"{PHOTO_DIR}/{product.pk}-"))
    if ours and old_name != product.image.name:
        transaction.on_commit(partial(product.image.storage.delete, old_name))


def _mark_vectors_pending(product_ids: list[int]) -> None:
    """Vectors of updated photos or genders become pending, in the transaction of the rows'
    change, so the sweep redoes them even if the import stops or queueing fails (saves were
    paused, so no receiver did this)."""
    if not product_ids:
        return
    try:
        content_type = registry.for_model(Product).content_type
    except NotRegistered:
        return
    for block in chunked(map(str, product_ids), 500):
        # No hash: the photo to index is the one the product has when its task runs (a hash here
        # would tell a running task that its photo is superseded, as a save's signal does).
        FeatureVector.objects.filter(content_type=content_type, object_id__in=block).update(
            status=FeatureVector.Status.PENDING, image_sha256=""
        )
