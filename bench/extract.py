"""Photos per second, fidelity and memory of the extractors, side by side in one run:
TensorFlow FP32 (the reference), the fast extractor in FP32 and in INT8 (OpenVINO).

    .venv/bin/python -m bench.extract [--limit N] [--rounds 3] [--timed 512] [--json PATH]

- images/s end to end: read + decode + network, decoding of the next batch overlapped with
  the network in a thread, as the indexing pipeline does; the median of ``--rounds`` passes
  over the first ``--timed`` photos, the extractors taking turns within each round so that
  the machine's noise falls on all of them alike.
- network alone: the same photos decoded beforehand, images/s of the network itself (what the
  end-to-end figure can at most approach, the decoding sharing the CPU with it).
- overlap@5: each product's 5 nearest within its gender (byte-duplicate photos of it left out,
  as the pages do) by the fast vectors, against the same lists by TensorFlow's; averaged.
- ProductType P@5: bench/relevance.py's grading of those lists (share of the 5 with the
  product's ProductType).
- resident memory and first vector: a fresh process that sets up the demo's Django, builds
  the extractor and makes one photo's vector.
- the web process: the demo shop under gunicorn (one sync worker, the demo's extractor options:
  mirror image and colour), 200 products; the worker's resident memory before and after its
  first search by photo through the API, and that search's time, cold and warm.

Every extractor has the app's default options (avg pooling, 224 px, squash), so the figures
compare the networks alone. The converted files are made first when missing (a minute or two
each, INT8 calibrated on 200 of the catalog's photos).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` both as a script and with -m
from common import CATALOG_DIR, REPO, Gunicorn, catalog_rows, load_catalog, median, rss_mb, setup_django  # noqa: E402
from relevance import Catalog, euclidean_between, photo_bytes  # noqa: E402

BACKENDS = {
    "tf_fp32": ("visual_recs.backends.extractors.ResNet50Extractor", {}),
    "fast_fp32": ("visual_recs.backends.fast.FastResNet50Extractor", {"precision": "fp32"}),
    "int8": ("visual_recs.backends.fast.FastResNet50Extractor", {"precision": "int8"}),
}
BATCH = 32


def build(name: str):
    from django.utils.module_loading import import_string

    backend, options = BACKENDS[name]
    return import_string(backend)(**options)


def ensure_converted() -> None:
    """The fast extractors' networks, converted by the app's command if the cache lacks them
    (INT8 calibrated on 200 of the catalog's photos, as `make weights` does)."""
    from django.core.management import call_command

    call_command("visual_recs_fetch_weights", convert=["fp32", "int8"], calibration_dir=CATALOG_DIR / "images")


def features(extractor, data: list[bytes]) -> tuple[np.ndarray, float]:
    """Every photo's vector, and the seconds the pass took (decoding overlapped with the network)."""
    from visual_recs.images import decode_image

    def decode(start: int) -> np.ndarray:
        return np.stack([decode_image(d) for d in data[start : start + BATCH]])

    out = np.empty((len(data), extractor.dims), dtype=np.float32)
    started = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(decode, 0)
        for start in range(0, len(data), BATCH):
            images = pending.result()
            if start + BATCH < len(data):
                pending = pool.submit(decode, start + BATCH)
            out[start : start + len(images)] = extractor.extract(images)
    return out, time.perf_counter() - started


def network_alone(extractor, images: np.ndarray) -> float:
    """Seconds the network takes for ``images`` (decoded already), in batches as above."""
    started = time.perf_counter()
    for start in range(0, len(images), BATCH):
        extractor.extract(images[start : start + BATCH])
    return time.perf_counter() - started


def overlap_at_5(catalog: Catalog, reference: np.ndarray, found: np.ndarray) -> float:
    shares = [len(set(a[a >= 0]) & set(b[b >= 0])) / 5 for a, b in zip(reference, found)]
    return float(np.mean(shares))


def fresh_process(name: str) -> dict:
    """Run ``--child name`` in a new interpreter and return what it measured."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "bench.extract", "--child", name],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"--child {name} exited {result.returncode}: {result.stdout[-500:]} {result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(name: str) -> None:
    """A web process's first search: Django set up, the extractor built, one photo's vector."""
    started = time.perf_counter()
    setup_django()
    from visual_recs.images import load_image

    photo = CATALOG_DIR / "images" / catalog_rows(1)[0]["Image"]
    ready = time.perf_counter()
    extractor = build(name)
    extractor.extract(load_image(photo)[np.newaxis])
    first_vector = time.perf_counter() - ready
    print(json.dumps({
        "rss_mb": round(rss_mb(), 1),
        "first_vector_s": round(first_vector, 3),
        "django_setup_s": round(ready - started, 3),
        "tensorflow_loaded": "tensorflow" in sys.modules,
    }))


def web_process(name: str, photo: bytes) -> dict:
    """The demo shop under gunicorn (one sync worker) with extractor ``name``: the worker's
    resident memory before and after its first search by photo, and how long that search took."""
    from bench.abuse import search_api

    env_before = {key: os.environ.get(key) for key in ("DJANGO_SETTINGS_MODULE", "VISUAL_RECS_BENCH_EXTRACTOR")}
    os.environ.update(DJANGO_SETTINGS_MODULE="bench.extract_settings", VISUAL_RECS_BENCH_EXTRACTOR=name)
    log = Path(tempfile.mkdtemp(prefix="visual-recs-bench-web-")) / "gunicorn.log"
    server = Gunicorn(workers=1, log=log)
    try:
        server.wait_ready("/")
        [worker] = server.worker_pids()
        before = rss_mb(worker)
        answer = search_api(server.port, photo)
        if answer.status != 200:
            raise RuntimeError(f"search by photo answered {answer.status}: {answer.body[:300]!r}; see {log}")
        after = rss_mb(worker)
        second = search_api(server.port, photo)
    finally:
        server.stop()
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return {"rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
            "first_search_s": round(answer.seconds, 2), "second_search_s": round(second.seconds, 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, help="first N catalog photos (default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per extractor (median)")
    parser.add_argument("--timed", type=int, default=512, help="photos per timed pass")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)

    setup_django()
    rows = catalog_rows(args.limit)
    data = photo_bytes(rows)
    catalog = Catalog(rows, data)
    ensure_converted()
    extractors = {name: build(name) for name in BACKENDS}
    for extractor in extractors.values():  # load every network before anything is timed
        extractor.extract(np.zeros((1, 224, 224, 3), np.uint8))

    vectors = {}
    seconds: dict[str, list[float]] = {name: [] for name in BACKENDS}
    for name, extractor in extractors.items():
        vectors[name], _ = features(extractor, data)
        print(f"{name}: vectors of {len(data)} photos", file=sys.stderr, flush=True)
    timed = data[: args.timed]
    from visual_recs.images import decode_image

    decoded = np.stack([decode_image(d) for d in timed])
    network_seconds: dict[str, list[float]] = {name: [] for name in BACKENDS}
    for round_ in range(args.rounds):
        for name, extractor in extractors.items():
            seconds[name].append(features(extractor, timed)[1])
            network_seconds[name].append(network_alone(extractor, decoded))
        print(f"round {round_ + 1}/{args.rounds} timed", file=sys.stderr, flush=True)

    queries = np.arange(len(catalog))
    lists = {name: catalog.nearest(euclidean_between(v), queries) for name, v in vectors.items()}
    figures: dict[str, float | int | bool] = {"photos": len(data), "timed_photos": len(timed), "rounds": args.rounds}
    for name in BACKENDS:
        figures[f"{name}_img_s"] = round(len(timed) / median(seconds[name]), 2)
        figures[f"{name}_network_img_s"] = round(len(timed) / median(network_seconds[name]), 2)
        figures[f"{name}_product_type_p5"] = round(catalog.precision(lists[name], queries)["ProductType"], 4)
        a, b = vectors["tf_fp32"], vectors[name]
        cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        figures[f"{name}_min_cosine"] = round(float(cosine.min()), 5)
        if name != "tf_fp32":
            figures[f"{name}_overlap_at_5"] = round(overlap_at_5(catalog, lists["tf_fp32"], lists[name]), 4)
            figures[f"{name}_speedup"] = round(figures[f"{name}_img_s"] / figures["tf_fp32_img_s"], 2)
            figures[f"{name}_network_speedup"] = round(figures[f"{name}_network_img_s"] / figures["tf_fp32_network_img_s"], 2)
        process = fresh_process(name)
        figures[f"{name}_rss_mb"] = process["rss_mb"]
        figures[f"{name}_first_vector_s"] = process["first_vector_s"]
        figures[f"{name}_loads_tensorflow"] = process["tensorflow_loaded"]
    figures["fast_rss_mb"] = figures["int8_rss_mb"]

    # The web process: the demo under gunicorn, its first search by photo (mirror image and colour on).
    load_catalog(rows=rows[:200])
    for name in BACKENDS:
        web = web_process(name, data[0])
        for key, value in web.items():
            figures[f"{name}_web_{key}"] = value

    print(f"{'':10} {'img/s':>7} {'x TF':>5} {'net img/s':>9} {'x TF':>5} {'overlap@5':>9} {'PT P@5':>7} {'min cos':>8} {'RSS MB':>7} {'1st vec s':>9}")
    for name in BACKENDS:
        print(
            f"{name:10} {figures[f'{name}_img_s']:7.1f} {figures.get(f'{name}_speedup', 1.0):5.2f} "
            f"{figures[f'{name}_network_img_s']:9.1f} {figures.get(f'{name}_network_speedup', 1.0):5.2f} "
            f"{figures.get(f'{name}_overlap_at_5', 1.0):9.3f} {figures[f'{name}_product_type_p5']:7.3f} "
            f"{figures[f'{name}_min_cosine']:8.4f} {figures[f'{name}_rss_mb']:7.0f} {figures[f'{name}_first_vector_s']:9.2f}"
        )
    print(f"\nweb process (gunicorn, 1 sync worker): {'RSS before':>10} {'after 1st search':>16} {'1st search s':>12} {'2nd s':>6}")
    for name in BACKENDS:
        print(
            f"{name:10} {figures[f'{name}_web_rss_before_mb']:39.0f} {figures[f'{name}_web_rss_after_mb']:16.0f} "
            f"{figures[f'{name}_web_first_search_s']:12.2f} {figures[f'{name}_web_second_search_s']:6.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
