"""Writing files so that readers never see half of one: stage the bytes, then rename or link."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged(folder: Path, data: bytes, *, prefix: str = ".staged.", mode: int = 0o644) -> Iterator[Path]:
    """A temporary file in `folder` holding `data`, on disk (fsync) and with `mode`, to be renamed
    or linked into place by the caller; whatever is left of it is removed on the way out."""
    handle, temporary = tempfile.mkstemp(prefix=prefix, dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)  # mkstemp makes it private; a web server or an admin must read it
        yield Path(temporary)
    finally:
        Path(temporary).unlink(missing_ok=True)


def public_folder(folder: Path) -> None:
    """Make `folder` and its missing parents, each readable by everyone whatever the umask (the
    daemon's systemd unit sets 0077): a web server publishes what is in it."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
        os.chmod(made, 0o755)
