"""Tests of visual_recs.images: every fixture image is made here with Pillow (no binary files)."""

from __future__ import annotations

import io
import random
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage
from django.db import models
from django.db.models.fields.files import FieldFile
from PIL import Image, ImageFile, JpegImagePlugin

from visual_recs import images
from visual_recs.exceptions import ImageError, ImageTooLarge, ImageTooManyPixels, MissingImage, UnreadableImage
from visual_recs.images import decode_image, image_format, load_image, read_image_bytes

DATA = Path(__file__).resolve().parents[2] / "shared/data/fashion-images"
CATALOG_PHOTO = DATA / "images/13683.jpg"
FULLRES_PHOTOS = sorted((DATA / "fullres").glob("*.jpg"))

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)
needs_catalog = pytest.mark.skipif(not CATALOG_PHOTO.exists(), reason="shared catalog photos not present")
needs_fullres = pytest.mark.skipif(not FULLRES_PHOTOS, reason="shared full-resolution photos not present")


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def halves(size: tuple[int, int], left, right, mode: str = "RGB") -> Image.Image:
    img = Image.new(mode, size, left)
    img.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return img


def centre_square(mode: str, background, square, size: int = 100) -> Image.Image:
    img = Image.new(mode, (size, size), background)
    img.paste(square, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return img


def check_array(arr: np.ndarray, shape: tuple[int, int, int] = (224, 224, 3)) -> np.ndarray:
    assert isinstance(arr, np.ndarray)
    assert arr.shape == shape
    assert arr.dtype == np.uint8
    return arr.astype(int)  # so differences below cannot wrap around


def assert_colour(region: np.ndarray, rgb, tol: int = 6) -> None:
    mean = region.reshape(-1, 3).mean(axis=0)
    assert np.all(np.abs(mean - np.array(rgb)) <= tol), f"mean colour {mean.round(1)} is not {rgb}"


def assert_sentence(exc: ImageError) -> str:
    """A message a person can read: words, not a repr, a traceback or raw bytes."""
    msg = str(exc)
    assert len(msg) >= 8 and msg[0].isalpha(), msg
    for noise in ("Error(", "<", ">", "\\x", "b'", "Traceback", "None"):
        assert noise not in msg, msg
    return msg


# --- decoding: colour modes and content ---


def test_rgb_jpeg_keeps_colour():
    arr = check_array(decode_image(encode(Image.new("RGB", (300, 200), (200, 30, 40)), "JPEG", quality=95)))
    assert_colour(arr, (200, 30, 40), tol=4)


def test_rgb_png_keeps_each_half():
    arr = check_array(decode_image(encode(halves((300, 200), GREEN, WHITE), "PNG")))
    assert_colour(arr[:, :100], GREEN, tol=0)
    assert_colour(arr[:, 124:], WHITE, tol=0)


@needs_catalog
def test_real_catalog_photo_matches_plain_pillow_resize():
    arr = check_array(load_image(CATALOG_PHOTO))
    with Image.open(CATALOG_PHOTO) as img:
        expected = np.asarray(img.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), dtype=int)
    assert np.abs(arr - expected).mean() < 2
    assert arr.std() > 10  # a real photo, not a flat fill


@needs_fullres
def test_fullres_jpeg_is_decoded_in_draft_mode(monkeypatch):
    calls = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        before = self.size
        result = real_draft(self, mode, size)
        calls.append((size, before, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    arr = check_array(load_image(FULLRES_PHOTOS[0]))

    assert len(calls) == 1
    requested, before, after = calls[0]
    assert min(requested) >= 224
    assert after[0] < before[0] and after[1] < before[1]  # decoded at a reduced scale
    assert min(after) >= 224  # but still at least as big as the output
    with Image.open(FULLRES_PHOTOS[0]) as img:  # the full decode, for reference
        expected = np.asarray(img.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), dtype=int)
    assert np.abs(arr - expected).mean() < 6


def test_exif_orientation_6_is_applied():
    # Stored wide, left red / right blue; orientation 6 means "rotate 90 degrees clockwise to display",
    # which brings the left edge to the top: red above, blue below.
    exif = Image.Exif()
    exif[0x0112] = 6
    arr = check_array(decode_image(encode(halves((200, 100), RED, BLUE), "JPEG", exif=exif, quality=95)))
    assert_colour(arr[:100], RED, tol=8)
    assert_colour(arr[124:], BLUE, tol=8)


def test_greyscale_l_becomes_grey_rgb():
    img = Image.fromarray(np.tile(np.linspace(0, 255, 256).astype(np.uint8), (64, 1)))  # dark left, bright right
    assert img.mode == "L"
    arr = check_array(decode_image(encode(img, "PNG")))
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    assert arr[:, :10].mean() < 15 and arr[:, -10:].mean() > 240


def test_palette_image():
    img = halves((100, 100), RED, GREEN).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert img.mode == "P"
    arr = check_array(decode_image(encode(img, "PNG")))
    assert_colour(arr[:, :100], RED, tol=0)
    assert_colour(arr[:, 124:], GREEN, tol=0)


def test_palette_with_transparency_goes_on_white():
    img = Image.new("P", (100, 100), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black (transparent), 1 red
    img.paste(1, (25, 25, 75, 75))
    data = encode(img, "PNG", transparency=0)
    assert Image.open(io.BytesIO(data)).mode == "P"
    arr = check_array(decode_image(data))
    assert_colour(arr[:20, :20], WHITE, tol=0)  # black index is transparent: white, not black
    assert_colour(arr[80:140, 80:140], RED, tol=0)


def test_rgba_transparent_background_goes_on_white():
    arr = check_array(decode_image(encode(centre_square("RGBA", (0, 0, 0, 0), (0, 0, 0, 255)), "PNG")))
    for corner in (arr[:20, :20], arr[:20, -20:], arr[-20:, :20], arr[-20:, -20:]):
        assert (corner == 255).all()
    assert (arr[80:140, 80:140] == 0).all()


def test_rgba_half_transparent_is_blended_with_white():
    arr = check_array(decode_image(encode(Image.new("RGBA", (50, 50), (0, 0, 0, 128)), "PNG")))
    assert_colour(arr, (127, 127, 127), tol=2)


def test_la_goes_on_white():
    arr = check_array(decode_image(encode(centre_square("LA", (0, 0), (60, 255)), "PNG")))
    assert (arr[:20, :20] == 255).all()
    assert_colour(arr[80:140, 80:140], (60, 60, 60), tol=0)


def test_cmyk_jpeg_cyan():
    data = encode(Image.new("CMYK", (100, 100), (255, 0, 0, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    arr = check_array(decode_image(data))
    assert arr[..., 0].mean() < 40
    assert arr[..., 1].mean() > 215 and arr[..., 2].mean() > 215


@pytest.mark.parametrize("low, high", [(1000, 60000), (30000, 31000)])
def test_16_bit_greyscale_png_is_stretched_not_clipped(low, high):
    img = Image.fromarray(np.tile(np.linspace(low, high, 200).astype(np.uint16), (50, 1)))
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    arr = check_array(decode_image(data))
    grey = arr[..., 0]
    assert grey.min() <= 3 and grey.max() >= 252
    assert len(np.unique(grey)) > 100
    assert (np.diff(grey[0]) >= 0).all()  # the gradient still runs left to right


def test_float_tiff_is_stretched():
    img = Image.fromarray(np.tile(np.linspace(-5.0, 5.0, 100, dtype=np.float32), (40, 1)))
    assert img.mode == "F"
    arr = check_array(decode_image(encode(img, "TIFF")))
    assert arr[:, :10].mean() < 15 and arr[:, -10:].mean() > 240


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_image_uses_first_frame(fmt):
    frames = [Image.new("RGB", (64, 64), RED), Image.new("RGB", (64, 64), BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    assert_colour(check_array(decode_image(data)), RED, tol=8)


def test_multi_page_tiff_uses_first_page():
    data = encode(Image.new("RGB", (64, 64), GREEN), "TIFF", save_all=True, append_images=[Image.new("RGB", (64, 64), BLUE)])
    assert_colour(check_array(decode_image(data)), GREEN, tol=0)


# --- fitting ---


def test_squash_fills_the_output():
    assert_colour(check_array(decode_image(encode(Image.new("RGB", (400, 100), RED), "PNG"))), RED, tol=0)


def test_letterbox_pads_wide_image_with_white_above_and_below():
    arr = check_array(decode_image(encode(Image.new("RGB", (400, 100), RED), "PNG"), fit="letterbox"))
    assert (arr[:80] == 255).all() and (arr[-80:] == 255).all()  # 224 * 100/400 = 56 rows of red, centred
    assert_colour(arr[100:124], RED, tol=0)


def test_letterbox_pads_tall_image_left_and_right_and_honours_size():
    arr = check_array(
        decode_image(encode(Image.new("RGB", (100, 400), BLUE), "PNG"), size=(320, 160), fit="letterbox"),
        shape=(160, 320, 3),
    )
    assert (arr[:, :130] == 255).all() and (arr[:, -130:] == 255).all()  # 40 columns of blue in the middle
    assert_colour(arr[:, 145:175], BLUE, tol=0)


def test_unknown_fit_is_a_programming_error():
    with pytest.raises(ValueError):
        decode_image(encode(Image.new("RGB", (10, 10)), "PNG"), fit="crop")
    with pytest.raises(ValueError):
        decode_image(encode(Image.new("RGB", (10, 10)), "PNG"), size=(0, 224))


# --- bad data ---


@needs_catalog
def test_truncated_jpeg():
    data = CATALOG_PHOTO.read_bytes()
    with pytest.raises(UnreadableImage) as info:
        decode_image(data[: len(data) // 2])
    assert "truncated or corrupt" in assert_sentence(info.value)


def test_truncated_png():
    data = encode(Image.effect_noise((200, 200), 50), "PNG")
    with pytest.raises(UnreadableImage) as info:
        decode_image(data[: len(data) // 2])
    assert_sentence(info.value)


@pytest.mark.parametrize(
    "data",
    [
        random.Random(1).randbytes(5000),
        b"Product description: a red cotton T-shirt.\n" * 20,
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n" + b"\0" * 200,
        b"",
    ],
    ids=["random", "text", "pdf", "empty"],
)
def test_not_an_image(data):
    with pytest.raises(UnreadableImage) as info:
        decode_image(data)
    assert "not an image file" in assert_sentence(info.value)


def test_eps_is_refused_because_pillow_would_run_ghostscript():
    data = encode(Image.new("RGB", (20, 20), RED), "EPS")
    with pytest.raises(UnreadableImage):
        decode_image(data)
    assert image_format(data) is None


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels but holds (almost) no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_png():
    data = encode(Image.new("L", (6000, 6000), 0), "PNG")
    assert len(data) < 100_000  # tiny on disk, 36 megapixels decoded
    with pytest.raises(ImageTooManyPixels) as info:
        decode_image(data, max_pixels=10_000_000)
    assert "6,000 x 6,000" in assert_sentence(info.value)


@pytest.mark.parametrize(
    "width, height, max_pixels",
    [
        (8_000, 8_000, 10_000_000),  # over our limit, under Pillow's: our own check
        (100_000, 100_000, 10**12),  # over twice Pillow's limit: Pillow refuses it in Image.open
        (100_000, 100_000, images.DEFAULT_MAX_PIXELS),
    ],
)
def test_huge_header_is_refused_before_decoding(monkeypatch, width, height, max_pixels):
    def no_decoding(self):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    limits = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageTooManyPixels) as info:
            decode_image(png_header_only(width, height), max_pixels=max_pixels)
    assert not caught  # Pillow's DecompressionBombWarning is turned into the error, not leaked
    assert_sentence(info.value)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == limits  # global state untouched


def test_corrupted_images_raise_only_image_errors():
    rng = random.Random(7)
    photo = Image.radial_gradient("L").convert("RGB").resize((48, 40))
    seeds = [encode(photo, fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")]
    for seed in seeds:
        for _ in range(40):
            data = bytearray(seed)
            if rng.random() < 0.5:
                del data[rng.randrange(1, len(data)) :]
            else:
                for _ in range(rng.randint(1, 4)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow warns about corrupt TIFF tags: fine
                image_format(bytes(data))
                try:
                    check_array(decode_image(bytes(data)))
                except ImageError as exc:
                    assert_sentence(exc)


# --- reading bytes ---


class CountingReader(io.RawIOBase):
    """An endless upload that counts the bytes asked of it."""

    def __init__(self):
        self.served = 0

    def readable(self):
        return True

    def readinto(self, buf):
        buf[:] = b"\xff" * len(buf)
        self.served += len(buf)
        return len(buf)


def test_too_large_stops_reading_early():
    stream = CountingReader()
    with pytest.raises(ImageTooLarge) as info:
        read_image_bytes(stream, max_bytes=1000)
    assert stream.served <= 1001
    assert "limit" in assert_sentence(info.value)


def test_too_large_message_gives_the_limit_in_mb():
    stream = CountingReader()
    with pytest.raises(ImageTooLarge) as info:
        read_image_bytes(stream)
    assert stream.served <= images.DEFAULT_MAX_BYTES + 1
    assert "20 MB" in assert_sentence(info.value)


def test_too_large_file_on_disk(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encode(Image.effect_noise((100, 100), 80), "PNG"))
    assert path.stat().st_size > 1000
    with pytest.raises(ImageTooLarge):
        load_image(path, max_bytes=1000)
    assert check_array(load_image(str(path))).std() > 0  # under the default limit it loads


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    for source in (tmp_path / "empty.jpg", io.BytesIO(b"")):
        with pytest.raises(UnreadableImage) as info:
            read_image_bytes(source)
        assert assert_sentence(info.value) == "the file is empty"


def test_missing_file(tmp_path):
    with pytest.raises(MissingImage) as info:
        load_image(tmp_path / "gone.jpg")
    assert "gone.jpg" in assert_sentence(info.value)


def test_file_like_is_read_from_the_start():
    stream = io.BytesIO(encode(Image.new("RGB", (30, 30), GREEN), "PNG"))
    stream.read(10)  # e.g. a form's validation has already looked at it
    assert_colour(check_array(load_image(stream)), GREEN, tol=0)


def test_bytes_are_not_a_source():
    with pytest.raises(TypeError):
        read_image_bytes(b"\x89PNG")


def test_django_files(tmp_path):
    path = tmp_path / "shirt.png"
    path.write_bytes(encode(Image.new("RGB", (30, 30), BLUE), "PNG"))
    with open(path, "rb") as fh:
        assert_colour(check_array(load_image(File(fh))), BLUE, tol=0)
    assert_colour(check_array(load_image(ContentFile(path.read_bytes(), name="shirt.png"))), BLUE, tol=0)


class SettingsFreeStorage(FileSystemStorage):
    # FileSystemStorage reads settings.MEDIA_ROOT even when given a location; these tests run without settings.
    @property
    def base_location(self):
        return self._location


def field_file(tmp_path: Path, name: str) -> FieldFile:
    return FieldFile(None, models.ImageField(storage=SettingsFreeStorage(location=tmp_path)), name)


def test_field_file_is_opened_and_closed_again(tmp_path):
    (tmp_path / "shirt.png").write_bytes(encode(Image.new("RGB", (30, 30), RED), "PNG"))
    photo = field_file(tmp_path, "shirt.png")
    assert photo.closed
    assert_colour(check_array(load_image(photo)), RED, tol=0)
    assert photo.closed  # we opened it, we closed it

    photo.open("rb")
    photo.read(5)
    assert_colour(check_array(load_image(photo)), RED, tol=0)
    assert not photo.closed  # the caller opened it: theirs to close
    photo.close()


def test_field_file_without_a_name(tmp_path):
    with pytest.raises(MissingImage) as info:
        load_image(field_file(tmp_path, ""))
    assert assert_sentence(info.value) == "no photo"


def test_field_file_whose_file_is_gone(tmp_path):
    with pytest.raises(MissingImage) as info:
        load_image(field_file(tmp_path, "products/gone.jpg"))
    assert "products/gone.jpg" in assert_sentence(info.value)


# --- image_format ---


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF"])
def test_image_format_sniffs_the_bytes(fmt):
    assert image_format(encode(Image.new("RGB", (8, 8)), fmt)) == fmt


@pytest.mark.parametrize("data", [b"just some text", b"", b"\xff\xd8\xff"])
def test_image_format_none_for_non_images(data):
    assert image_format(data) is None


def test_image_format_does_not_raise_for_a_bomb():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert image_format(png_header_only(10_000, 10_000)) == "PNG"  # only warned about: still named
        assert image_format(png_header_only(100_000, 100_000)) is None  # Pillow refuses to open it at all


def test_a_huge_16_bit_png_is_shrunk_before_its_values_are_stretched(tmp_path):
    """A 90 KB upload of 6000 x 6600 16-bit pixels once took 1.2 GB to decode (float64 at full size)."""
    import subprocess
    import sys

    ramp = np.tile((np.arange(6600, dtype=np.uint32) * 9).astype(np.uint16), (6000, 1))
    photo = tmp_path / "huge16.png"
    Image.fromarray(ramp).save(photo, "PNG")
    del ramp
    assert photo.stat().st_size < 200_000
    child = (
        "import resource, sys\n"
        "from visual_recs.images import decode_image\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = decode_image(data, max_pixels=50_000_000)\n"
        "grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(*out.shape, int(out.min()), int(out.max()), grew // 1024)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", child, str(photo)], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    height, width, channels, low, high, grew_mib = map(int, result.stdout.split())
    assert (height, width, channels) == (224, 224, 3)
    assert low <= 2 and high >= 253  # the ramp still spans black to white
    assert grew_mib < 400, f"decoding grew the process by {grew_mib} MiB"
