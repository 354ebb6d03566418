"""Where a command's data goes: its own stdout, or a file that appears only once it is whole."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from django.core.management.base import CommandError, OutputWrapper


def unwrapped(stream: OutputWrapper | TextIO) -> TextIO:
    """The stream a command's ``self.stdout``/``self.stderr`` wraps.

    Django's ``OutputWrapper`` appends a newline to every write that lacks one: a progress
    bar's redraw, or a row written in parts, would be broken over lines. A command run by
    ``call_command(stdout=self.stdout)`` gets a wrapper around a wrapper, hence the loop.
    """
    while isinstance(stream, OutputWrapper):
        stream = stream._out
    return stream


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[TextIO]:
    """A text stream (UTF-8, newlines as written) that becomes the file ``path`` when the block ends.

    It writes to a temporary file beside ``path`` and renames it over ``path`` at the end, so a
    reader never sees half a file and a failed or interrupted run leaves ``path`` as it was (no
    temporary file either). The file gets the mode of the one it replaces, else the umask's.
    A path that cannot be written is a CommandError that says why.
    """
    target = Path(path)
    if target.is_dir():
        raise CommandError(f"Cannot write to {target}: it is a directory.")
    try:
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise CommandError(f"Cannot write to {target}: {exc.strerror or exc}.") from exc
    try:
        with open(fd, "w", encoding="utf-8", newline="") as stream:
            yield stream
        os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise CommandError(f"Cannot write to {target}: {exc.strerror or exc}. It was left as it was.") from exc
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mode_for(target: Path) -> int:
    """The mode of the file being replaced, or what a plain ``open()`` would give a new one
    (mkstemp makes its files private, 0600, which a feed others read must not be)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
