"""Retrieval quality on the sample catalog: each product's 5 nearest within its gender, and the
share of them with the same ProductType (precision@5), for the tutorial's recipe and ours.

    .venv/bin/python bench/relevance.py [--limit N]

Configurations, all with the same real ImageNet ResNet50 (no top), one forward pass per
preprocessing:
- tutorial: pixels / 255 (as the article's notebook), flattened 7x7x2048 = 100,352-d
- caffe + flatten: Keras' resnet50.preprocess_input, flattened
- caffe + avg: Keras' preprocessing, global average pooling, 2048-d (the app's default)
- caffe + avg + letterbox: the same, photo fitted with white bars instead of squashed
Exact duplicate photos (same bytes under another id) are left out of each product's
neighbours, as the app's pages do.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections import defaultdict

import numpy as np

from common import CATALOG_DIR, catalog_rows, setup_django


def precision_at_5(vectors: np.ndarray, rows, hashes) -> float:
    from visual_recs.backends.indexes import ExactIndex

    by_gender = defaultdict(list)
    for i, row in enumerate(rows):
        by_gender[row["Gender"]].append(i)
    hits = total = 0
    for members in by_gender.values():
        members = np.array(members)
        neighbours = ExactIndex().kneighbors(vectors[members], vectors[members], 5 + 10, exclude=np.arange(len(members)))
        for query, found in zip(members, neighbours):
            kept = [members[j] for j, _ in found if hashes[members[j]] != hashes[query]][:5]
            hits += sum(rows[j]["ProductType"] == rows[query]["ProductType"] for j in kept)
            total += len(kept)
    return hits / total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    setup_django()
    from keras.applications.resnet50 import preprocess_input

    from visual_recs.backends.extractors import ResNet50Extractor
    from visual_recs.images import decode_image

    rows = catalog_rows(args.limit)
    data = [(CATALOG_DIR / "images" / row["Image"]).read_bytes() for row in rows]
    hashes = [hashlib.sha256(d).hexdigest() for d in data]
    network = ResNet50Extractor(pooling="flatten").network()  # 7x7x2048 maps; avg = their mean

    def feature_maps(fit: str, preprocess) -> np.ndarray:
        maps = np.empty((len(rows), 7, 7, 2048), dtype=np.float32)
        for start in range(0, len(rows), 32):
            batch = np.stack([decode_image(d, fit=fit) for d in data[start : start + 32]]).astype(np.float32)
            maps[start : start + len(batch)] = network.predict_on_batch(preprocess(batch))
        return maps

    results = {}
    started = time.perf_counter()
    maps = feature_maps("squash", lambda x: x / 255.0)
    results["tutorial: /255, flatten (100,352-d)"] = precision_at_5(maps.reshape(len(rows), -1), rows, hashes)
    results["/255, avg (2048-d)"] = precision_at_5(maps.mean(axis=(1, 2)), rows, hashes)
    maps = feature_maps("squash", preprocess_input)
    results["caffe, flatten (100,352-d)"] = precision_at_5(maps.reshape(len(rows), -1), rows, hashes)
    results["caffe, avg (2048-d, default)"] = precision_at_5(maps.mean(axis=(1, 2)), rows, hashes)
    maps = feature_maps("letterbox", preprocess_input)
    results["caffe, avg, letterbox"] = precision_at_5(maps.mean(axis=(1, 2)), rows, hashes)
    print(f"{len(rows)} products, {time.perf_counter() - started:.0f} s")
    for name, value in results.items():
        print(f"{name:40s} precision@5 same ProductType: {value:.3f}")


if __name__ == "__main__":
    main()
