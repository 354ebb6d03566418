"""Child processes the tests start (a Celery worker, the demo server)."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen, *, timeout: float = 20) -> None:
    """Ask ``process`` to exit, and kill it if it has not within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
