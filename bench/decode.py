"""Decoding full-size uploads: JPEG draft mode against a full decode, on the catalog's 48
full-resolution photos (1080x1440 and 1800x2400), same photos, same run.

    .venv/bin/python bench/decode.py [--repeat 5]

Prints the median time per photo of `visual_recs.images.decode_image` (draft mode: the JPEG
decoder scales by 1/2, 1/4 or 1/8 while decoding) and of a full decode then resize, with
their ratio, and the peak size of the decoded image in each case.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image, ImageOps

from common import CATALOG_DIR
from visual_recs.images import decode_image


def full_decode(data: bytes) -> tuple[np.ndarray, int]:
    with Image.open(io.BytesIO(data)) as img:
        img = ImageOps.exif_transpose(img.convert("RGB"))
        pixels = img.width * img.height
        return np.asarray(img.resize((224, 224), Image.Resampling.BILINEAR)), pixels


def drafted_pixels(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (224, 224))
        return img.size[0] * img.size[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    photos = [p.read_bytes() for p in sorted((CATALOG_DIR / "fullres").glob("*.jpg"))]
    times = {"draft": [], "full": []}
    for _ in range(args.repeat):
        for data in photos:  # interleaved, so machine noise hits both alike
            started = time.perf_counter()
            decode_image(data)
            times["draft"].append(time.perf_counter() - started)
            started = time.perf_counter()
            full_decode(data)
            times["full"].append(time.perf_counter() - started)
    draft_ms, full_ms = (statistics.median(times[k]) * 1000 for k in ("draft", "full"))
    full_px = statistics.median(full_decode(d)[1] for d in photos)
    draft_px = statistics.median(drafted_pixels(d) for d in photos)
    print(f"{len(photos)} photos x {args.repeat}")
    print(f"draft mode (decode_image): {draft_ms:6.2f} ms/photo, median {draft_px / 1e6:.2f} Mpx decoded")
    print(f"full decode + resize     : {full_ms:6.2f} ms/photo, median {full_px / 1e6:.2f} Mpx decoded")
    print(f"ratio full / draft       : {full_ms / draft_ms:6.1f}x")


if __name__ == "__main__":
    main()
