"""Safe loading of the product photos a shop uploads, as input for ResNet50.

Every photo becomes an RGB ``uint8`` array of a fixed size, or an :class:`ImageError` whose
message is written for a person (it is stored with the product and shown in the admin and API).
Pillow's global limits (``Image.MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``) are
never changed: the pixel limit is checked here, from the header, before anything is decoded.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from collections.abc import Collection
from typing import IO, Any, Union

import numpy as np
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import File
from django.db.models.fields.files import FieldFile
from PIL import Image, ImageOps, UnidentifiedImageError

from .exceptions import (
    ImageTooLarge,
    ImageTooManyPixels,
    MissingImage,
    StorageUnavailable,
    UnreadableImage,
    UnsupportedFormat,
)

DEFAULT_MAX_BYTES: int = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS: int = 40_000_000
FITS = ("squash", "letterbox")

ImageSource = Union[str, "os.PathLike[str]", IO[bytes], File]

_WHITE = (255, 255, 255)
_BOMB_MESSAGE = "the image declares more pixels than can be decoded safely"
_CHUNK = 1024 * 1024
# What Pillow raises from inside its plugins on malformed data (RuntimeError: the AVIF decoder).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, RuntimeError)
# EPS is rendered by running Ghostscript on the file: not something to do with uploads.
_REFUSED_FORMATS = frozenset({"EPS"})
_TRANSPARENT_MODES = frozenset({"PA", "RGBA", "LA", "La", "RGBa"})
_WIDE_GREY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# What a path may name besides a regular file, for the message that refuses it.
_FILE_KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_image_bytes(source: ImageSource, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read the photo's bytes from a path, a binary file-like object or a Django ``File``/``FieldFile``.

    Raises :class:`MissingImage` if there is no photo or its file is gone, :class:`ImageTooLarge`
    if it has more than ``max_bytes`` bytes (never reading more than ``max_bytes + 1``) and
    :class:`UnreadableImage` if it is empty or cannot be read.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        raise TypeError("read_image_bytes() takes a path or a file; pass image bytes to decode_image()")
    if isinstance(source, (str, os.PathLike)):
        data = _read_path(os.fspath(source), max_bytes)
    elif isinstance(source, File):
        data = _read_django_file(source, max_bytes)
    elif hasattr(source, "read"):
        data = _read_stream(source, max_bytes)
    else:
        raise TypeError(f"cannot read an image from a {type(source).__name__}")
    if not data:
        raise UnreadableImage("the file is empty")
    return data


def decode_image(
    data: bytes,
    *,
    size: tuple[int, int] = (224, 224),
    fit: str = "squash",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: Collection[str] | None = None,
) -> np.ndarray:
    """Decode image bytes into a ``uint8`` array of shape ``(size[1], size[0], 3)``.

    ``formats`` (Pillow's names, e.g. ``("JPEG", "PNG")``) narrows the accepted formats, as
    uploads from strangers are; None accepts every format this module reads.

    ``size`` is ``(width, height)`` as in Pillow. Only the first frame of an animation is used,
    the EXIF orientation is applied and transparency is composited onto white. ``fit="squash"``
    resizes straight to ``size`` like Keras' ``load_img(target_size=...)``; ``fit="letterbox"``
    keeps the aspect ratio and pads with white. Raises :class:`ImageTooManyPixels` or
    :class:`UnreadableImage` for bad data, ``ValueError`` for a bad ``size`` or ``fit``.
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, not {fit!r}")
    if len(size) != 2 or not all(isinstance(n, int) and n > 0 for n in size):
        raise ValueError(f"size must be two positive ints (width, height), not {size!r}")
    # No warnings.catch_warnings() here: it is process-wide and photos are decoded in threads.
    # The max_pixels check refuses bombs before Pillow's own warning threshold matters.
    with _open_checked(data, max_pixels, formats) as img:
        img = _decoded_first_frame(img, draft_side=max(size))
    return np.array(_fit(_to_rgb(_reduced_wide_grey(img, size)), size, fit), dtype=np.uint8)


def load_image(
    source: ImageSource,
    *,
    size: tuple[int, int] = (224, 224),
    fit: str = "squash",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """:func:`read_image_bytes` then :func:`decode_image`."""
    return decode_image(read_image_bytes(source, max_bytes=max_bytes), size=size, fit=fit, max_pixels=max_pixels)


def image_format(data: bytes) -> str | None:
    """Pillow's name of the format of ``data`` (``"JPEG"``, ``"PNG"``, ...), or ``None`` if it is not
    an image this module reads. Sniffed from the bytes only; never raises."""
    try:
        with Image.open(io.BytesIO(data), formats=_allowed_formats()) as img:
            return img.format
    except (*_DECODE_ERRORS, TypeError, Image.DecompressionBombError):
        return None


def _read_path(name: str, max_bytes: int) -> bytes:
    """The bytes of the regular file at ``name``; a FIFO, a directory or a device is refused unread."""
    if "\x00" in name:
        raise UnreadableImage("the photo's file name contains a NUL character")
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever (it
        # does not change reads of a regular file). The type is then checked on the open file
        # itself, so nothing can swap the file between the check and the read.
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError as exc:
        raise MissingImage(f"the photo file '{name}' does not exist") from exc
    except OSError as exc:
        raise UnreadableImage(f"the photo file '{name}' cannot be read: {exc.strerror or 'I/O error'}") from exc
    kind = _FILE_KINDS.get(stat.S_IFMT(os.fstat(fd).st_mode), "something else")
    if kind != "file":
        os.close(fd)
        raise UnreadableImage(f"the photo file '{name}' is {kind}, not a regular file")
    with open(fd, "rb") as fh:
        try:
            return _read_bounded(fh, max_bytes)
        except OSError as exc:
            raise UnreadableImage(f"the photo file '{name}' cannot be read: {exc.strerror or 'I/O error'}") from exc


def _read_bounded(fh: Any, max_bytes: int) -> bytes:
    # Reading in chunks (not one read(max_bytes + 1)) copes with streams that return short reads.
    buf = bytearray()
    while len(buf) <= max_bytes:
        chunk = fh.read(min(_CHUNK, max_bytes + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
    raise ImageTooLarge(f"the file is larger than the {_describe_bytes(max_bytes)} limit")


def _read_stream(fh: Any, max_bytes: int) -> bytes:
    # The stream may already have been read (e.g. by a form's validation): start from the beginning.
    if getattr(fh, "seekable", None) and fh.seekable():
        fh.seek(0)
    try:
        return _read_bounded(fh, max_bytes)
    except OSError as exc:
        raise UnreadableImage("the photo file cannot be read") from exc


def _read_django_file(source: File, max_bytes: int) -> bytes:
    if isinstance(source, FieldFile):
        if not source.name:
            raise MissingImage("no photo")
        kind = _local_file_kind(source)
        if kind not in (None, "file"):
            # Opening a FIFO in MEDIA_ROOT would wait for a writer forever, and hang the worker.
            raise UnreadableImage(f"the photo file '{source.name}' is {kind}, not a regular file")
        # A handle of our own from the storage: the FieldFile's may be stale (the file was
        # replaced or deleted) or in use by another thread.
        try:
            fh = source.storage.open(source.name, "rb")
        except FileNotFoundError as exc:
            raise MissingImage(f"the photo file '{source.name}' does not exist") from exc
        except OSError as exc:
            raise StorageUnavailable(f"the photo file '{source.name}' could not be opened: {exc}") from exc
        with fh:
            try:
                return _read_bounded(fh, max_bytes)
            except OSError as exc:
                # The storage failed mid-read: a passing fault, not a bad photo (uploads, read
                # by _read_stream, are the client's problem instead).
                raise StorageUnavailable(f"the photo file '{source.name}' could not be read: {exc}") from exc
    opened_here = source.closed
    if opened_here:
        try:
            source.open("rb")
        except FileNotFoundError as exc:
            raise MissingImage(f"the photo file '{source.name}' does not exist") from exc
    try:
        return _read_stream(source, max_bytes)
    finally:
        # A file the caller opened is theirs to close.
        if opened_here:
            source.close()


def _local_file_kind(source: FieldFile) -> str | None:
    """What the photo's file is on a local disk ("file", "a FIFO (named pipe)", ...).

    None where the storage keeps no local files (``path()`` is not implemented: S3 and the like
    serve only regular objects), where the name is not the storage's, or where no such file
    exists (``storage.open`` then says which).
    """
    try:
        path = source.storage.path(source.name)
    except (NotImplementedError, SuspiciousFileOperation):
        return None
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, unreadable, or a NUL in the name
        return None
    return _FILE_KINDS.get(stat.S_IFMT(mode), "something else")


def _describe_bytes(n: int) -> str:
    mb = n / (1024 * 1024)
    return f"{mb:.3g} MB" if mb >= 0.1 else f"{n:,} bytes"


def _allowed_formats() -> list[str]:
    Image.init()  # registers every plugin, including ones added after import
    return [fmt for fmt in Image.OPEN if fmt not in _REFUSED_FORMATS]


def _open_checked(data: bytes, max_pixels: int, formats: Collection[str] | None = None) -> Image.Image:
    """Open (header only) and refuse other formats, or too many pixels, before anything is decoded."""
    try:
        img = Image.open(io.BytesIO(data), formats=_allowed_formats())
    except UnidentifiedImageError as exc:
        raise UnreadableImage("not an image file (or a format Pillow cannot read)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooManyPixels(_BOMB_MESSAGE) from exc
    except _DECODE_ERRORS as exc:
        raise UnreadableImage("the image header is corrupt") from exc
    if formats is not None and img.format not in formats:
        img.close()
        accepted = ", ".join(sorted(formats))
        raise UnsupportedFormat(f"it is a {img.format} image; send one of {accepted}")
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise ImageTooManyPixels(
            f"the image is {width:,} x {height:,} pixels, more than the limit of {max_pixels:,} pixels"
        )
    return img


def _decoded_first_frame(img: Image.Image, *, draft_side: int) -> Image.Image:
    """Decode only the first frame, JPEGs at a reduced scale, and apply the EXIF orientation."""
    try:
        # Pillow opens multi-frame files on their first frame; it is the only one ever loaded here.
        if img.tell() != 0:
            img.seek(0)
        # A square draft request keeps both sides >= the output whether or not EXIF swaps them.
        # Only JPEG implements draft (it decodes at 1/2, 1/4 or 1/8 scale); other formats ignore it.
        img.draft("RGB", (draft_side, draft_side))
        img.load()
        return ImageOps.exif_transpose(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooManyPixels(_BOMB_MESSAGE) from exc
    except _DECODE_ERRORS as exc:
        raise UnreadableImage("the image data is truncated or corrupt") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in _TRANSPARENT_MODES or ("transparency" in img.info and mode in ("P", "L", "RGB")):
        # Product shots are cut out on transparent backgrounds; black behind them would look like content.
        rgba = img.convert("LA").convert("RGBA") if mode == "La" else img.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if mode in _WIDE_GREY_MODES:
        return _stretch_to_l(img).convert("RGB")
    if mode == "RGB":
        return img
    try:
        return img.convert("RGB")  # 1, L, P, CMYK (Pillow undoes Adobe's inversion), YCbCr, LAB, HSV
    except ValueError as exc:
        raise UnreadableImage(f"images in colour mode {mode} are not supported") from exc


def _reduced_wide_grey(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A 16/32-bit grey image shrunk (by whole factors, to at least twice ``size``) before any per-pixel work.

    JPEG's draft mode does this for photos; these formats decode at full size, and stretching
    their values there took a 6000 x 6600 16-bit PNG (a 77 KB upload) to 1.4 GB of float64.
    Pillow resizes 32-bit modes only, hence the conversion of the 16-bit ones first.
    """
    if img.mode not in _WIDE_GREY_MODES:
        return img
    if img.mode.startswith("I;16"):
        img = img.convert("I")
    factor = min(img.width // (2 * size[0]), img.height // (2 * size[1]))
    return img.reduce(factor) if factor > 1 else img


def _stretch_to_l(img: Image.Image) -> Image.Image:
    # Clipping 16/32-bit values to 0..255 turns most of them white; stretch the range actually used.
    values = np.asarray(img, dtype=np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        return Image.new("L", img.size, 0)
    low, high = values[finite].min(), values[finite].max()
    scaled = np.where(finite, values - low, np.float32(0)) * np.float32(255.0 / (high - low) if high > low else 0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))  # 2-D uint8 -> "L"


def _fit(img: Image.Image, size: tuple[int, int], fit: str) -> Image.Image:
    if fit == "squash":
        return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    scale = min(size[0] / img.width, size[1] / img.height)
    inner = (max(1, min(size[0], round(img.width * scale))), max(1, min(size[1], round(img.height * scale))))
    canvas = Image.new("RGB", size, _WHITE)
    canvas.paste(
        img.resize(inner, Image.Resampling.BILINEAR, reducing_gap=3.0),
        ((size[0] - inner[0]) // 2, (size[1] - inner[1]) // 2),
    )
    return canvas
