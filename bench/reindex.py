"""Throughput of `visual_recs_reindex --sync` over the sample catalog, and where the time goes.

    .venv/bin/python bench/reindex.py [--limit N]

Prints images/s end to end (decode + ResNet50 + vectors + neighbour lists), and, on the
same photos in the same run, decoding alone and the network alone, so the overlap of
decoding with inference can be read off: end to end close to the network alone means
decoding is hidden behind inference.
"""

from __future__ import annotations

import argparse
import io
import time
from concurrent.futures import ThreadPoolExecutor

from common import CATALOG_DIR, load_catalog, setup_django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None, help="first N catalog rows (default: all)")
    args = parser.parse_args()
    # One forward pass per photo, as the bare network it is compared with (the demo's extractor
    # also runs the mirror image and the colour histogram).
    setup_django()
    from django.conf import settings

    settings.VISUAL_RECS = {
        **settings.VISUAL_RECS,
        "EXTRACTOR": {"BACKEND": "visual_recs.backends.extractors.ResNet50Extractor", "OPTIONS": {}},
    }

    import numpy as np
    from django.core.management import call_command

    from visual_recs.backends import get_extractor
    from visual_recs.images import decode_image, read_image_bytes
    from visual_recs.contrib.catalog.models import Product

    n = load_catalog(args.limit)
    extractor = get_extractor()
    extractor.extract(np.zeros((1, 224, 224, 3), dtype=np.uint8))  # load the network outside the timings

    started = time.perf_counter()
    call_command("visual_recs_reindex", "--sync", stdout=io.StringIO())
    end_to_end = time.perf_counter() - started

    paths = [CATALOG_DIR / product.image.name for product in Product.objects.all()]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        pixels = list(pool.map(lambda p: decode_image(read_image_bytes(p)), paths))
    decode_two_threads = time.perf_counter() - started

    started = time.perf_counter()
    for start in range(0, len(pixels), extractor.batch_size):
        extractor.extract(np.stack(pixels[start : start + extractor.batch_size]))
    network_only = time.perf_counter() - started

    print(f"photos: {n}  (batch size {extractor.batch_size}, model {extractor.model_id})")
    print(f"visual_recs_reindex --sync : {end_to_end:7.1f} s  {n / end_to_end:6.1f} images/s")
    print(f"decode only, 2 threads     : {decode_two_threads:7.1f} s  {n / decode_two_threads:6.1f} images/s")
    print(f"ResNet50 only              : {network_only:7.1f} s  {n / network_only:6.1f} images/s")


if __name__ == "__main__":
    main()
