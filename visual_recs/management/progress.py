"""Progress bars for management commands."""

from __future__ import annotations

from typing import Any, TextIO

from django.core.management.base import OutputWrapper
from tqdm import tqdm


def progress_bar(stream: OutputWrapper | TextIO, **options: Any) -> tqdm:
    """A tqdm bar that redraws in place on a command's ``self.stderr``.

    tqdm redraws with a carriage return and no newline; Django's ``OutputWrapper`` appends a
    newline to every write, which would print each redraw on a line of its own. So the bar
    writes to the stream the wrapper wraps.
    """
    # A command run by call_command(stdout=self.stdout) gets a wrapper around a wrapper.
    while isinstance(stream, OutputWrapper):
        stream = stream._out
    return tqdm(file=stream, **options)
