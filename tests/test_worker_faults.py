"""A real worker killed with SIGKILL in the middle of a batch loses nothing.

The quick version of ``bench/faults.py``'s two SIGKILL cases, run as the bench runs them (its
own Redis, database and workers, in a process of its own), on 40 products: the worker process
killed (the batch comes back after the visibility timeout: ``acks_late``), and a prefork
worker's pool child killed (its parent gives the batch back: ``reject_on_worker_lost``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
PRODUCTS = 40


@pytest.mark.parametrize("case", ["sigkill-worker", "sigkill-pool-child"])
def test_a_worker_killed_mid_batch_loses_nothing(case, resnet_weights, tmp_path):
    out = tmp_path / "faults.json"
    command = [sys.executable, "-m", "bench.faults", "--case", case, "--products", str(PRODUCTS), "--json", str(out)]
    # It exits 1 when something was lost: the figures it wrote say what.
    subprocess.run(command, cwd=REPO, timeout=600)
    (result,) = json.loads(out.read_text())

    # The kill landed inside the first batch: some of its vectors committed, the rest not.
    assert result["mid_batch"], result["tried"]
    assert result["tasks_redelivered"] == 1, result["result"]
    # Each product's vector written once: the batch's second run skipped what the first committed.
    assert result["vectors_written"] == PRODUCTS, result["result"]
    checks = result["checks"]
    assert checks["checked_products"] == checks["checked_lists"] == PRODUCTS
    assert checks["lost"] == 0, checks
    assert result["unmet"] == [], result["unmet"]
