"""Progress bars for management commands, and indexing in the command's process with one."""

from __future__ import annotations

from typing import Any, TextIO

from collections.abc import Iterable

from django.core.management.base import BaseCommand, OutputWrapper
from django.db import models
from tqdm import tqdm

from visual_recs import indexing
from visual_recs.indexing import Summary
from visual_recs.management.output import unwrapped


def progress_bar(stream: OutputWrapper | TextIO, **options: Any) -> tqdm:
    """A tqdm bar that redraws in place on a command's ``self.stderr``.

    tqdm redraws with a carriage return and no newline, so the bar writes to the stream the
    command's wrapper wraps (see ``unwrapped``).
    """
    return tqdm(file=unwrapped(stream), **options)


MAX_LISTED = 20  # failures listed one by one; the rest are counted


def index_here(command: BaseCommand, objects: Iterable[models.Model], total: int, *, label: str, force: bool = False) -> Summary:
    """``indexing.index_many`` in the command's process, with a progress bar and a report of failures."""
    with progress_bar(command.stderr, total=total, desc=f"Indexing {label}", unit="img") as bar:
        summary = indexing.index_many(objects, force=force, progress=bar.update)
    command.stdout.write(f"{label}: {summary}.")
    for object_id, reason in summary.failures[:MAX_LISTED]:
        command.stdout.write(f"  failed {object_id}: {reason}")
    if len(summary.failures) > MAX_LISTED:
        command.stdout.write(f"  ... and {len(summary.failures) - MAX_LISTED} more (see the admin, filtered by status).")
    return summary
