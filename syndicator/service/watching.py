"""Which item files changed since the last refresh, told by the operating system (inotify).

The daemon keeps a watcher on `items.path` so that a refresh reads the files that changed and
nothing else: its cost follows what changed, not the number of files. When the watcher cannot
vouch for what changed (not started yet, the folder missing, an error), `take()` returns None
and the refresh scans the whole folder, as `run --once` always does.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from watchfiles import Change, watch

log = logging.getLogger(__name__)


def _item_file(change: Change, path: str) -> bool:
    return path.endswith(".txt")


class ItemWatcher:
    """Collects the paths of item files created, changed or removed under a folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._changed: set[str] = set()
        self._trusted = False  # False until the watch runs, and again after any failure
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="item-watcher", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def take(self) -> list[str] | None:
        """The item files changed since the last call, spelled as a scan of `folder` spells
        them; None when only a full scan can tell."""
        with self._lock:
            changed, self._changed = self._changed, set()
            trusted = self._trusted
        if not trusted:
            return None
        return sorted(self._as_scanned(changed))

    def _as_scanned(self, paths: set[str]) -> Iterator[str]:
        # The OS reports resolved absolute paths; the ingest keeps the spelling of a scan.
        real = os.path.realpath(self.folder)
        for path in paths:
            relative = os.path.relpath(path, real)
            if not relative.startswith(os.pardir):
                yield os.path.join(str(self.folder), relative)

    def _watch(self) -> None:
        try:
            events = watch(
                self.folder,
                watch_filter=_item_file,
                stop_event=self._stop,
                yield_on_timeout=True,
                rust_timeout=1000,
                raise_interrupt=False,
                debounce=200,
            )
            for changes in events:  # the first comes within rust_timeout, once the watch is set
                with self._lock:
                    self._changed.update(path for _, path in changes)
                    self._trusted = True
                self._ready.set()
        except Exception as exc:  # the daemon goes on with full scans; say why once
            log.warning("not watching %s (%s); each refresh scans the whole folder", self.folder, exc)
        finally:
            with self._lock:
                self._trusted = False
            self._ready.set()
