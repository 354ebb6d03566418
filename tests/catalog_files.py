"""Small catalogs in the sample dataset's CSV format, written for a test; files that are not photos."""

from __future__ import annotations

import csv
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

COLUMNS = [
    "ProductId", "Gender", "Category", "SubCategory", "ProductType", "Colour", "Usage", "ProductTitle", "Image",
    "ImageURL",
]


def write_catalog_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write ``rows`` (dicts keyed by the dataset's columns) as a fashion.csv at ``path``."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@contextmanager
def released_if_read_blocked(fifo: Path, *, after_seconds: float = 30) -> Iterator[list[bool]]:
    """A watchdog, so that code which opens ``fifo`` and waits for a writer fails the test instead of hanging it.

    If after ``after_seconds`` something holds the FIFO open for reading (an ``open()`` blocked for
    want of a writer), it is opened for writing and closed: the reader gets end of file, and the
    list yielded holds True. Code that never waits on the FIFO finishes first and cancels it.
    """
    released: list[bool] = []

    def release() -> None:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO unless a reader has it open
        except OSError:
            return
        os.close(fd)
        released.append(True)

    watchdog = threading.Timer(after_seconds, release)
    watchdog.start()
    try:
        yield released
    finally:
        watchdog.cancel()
