"""The single-runner lock: one `syndicator run` (or `run --once`) per store at a time.

The lock is one the operating system or the database server frees when its holder dies, so
liveness is never guessed from a host name, a process id or a clock:

- on PostgreSQL, a session advisory lock held by a connection kept for it: the server frees it
  when the process dies or the connection drops;
- on SQLite, an exclusive `flock` on a file next to the database (`<database>.runner-lock`):
  the kernel frees it when the process dies.

Who holds it (pid, host, since, command) is written to the store's `state` table for `status`
and for the message a second runner prints; that row is information, never the lock. A
heartbeat checks that the lock is still held (the connection alive, the lock file still the one
locked); a runner that lost it is told (`on_lost`) and stops its jobs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from types import TracebackType
from typing import IO

from sqlalchemy import Connection, text

from syndicator.db.store import Store
from syndicator.errors import SyndicatorError

log = logging.getLogger(__name__)

KEY = "runner.lock"
HEARTBEAT = timedelta(seconds=10)
WAIT_STEP = 0.5  # seconds between tries of a runner waiting for the lock
ADVISORY_KEY = 0x53594E44  # "SYND": the PostgreSQL advisory lock of the runner
_LOCAL: set[str] = set()  # in-memory stores locked by this process (no file to lock)
_LOCAL_GUARD = threading.Lock()


class LockHeld(SyndicatorError):
    """Another runner holds the store."""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the lock, as stored for people to read."""

    pid: int
    host: str
    since: str  # ISO time the lock was taken
    command: str

    def describe(self, zone: tzinfo | None = None) -> str:
        """Who and since when, in `zone` (the site's; the machine's own when None), zone named."""
        since = datetime.fromisoformat(self.since).astimezone(zone)
        return f"pid {self.pid} on {self.host}, since {since:%Y-%m-%d %H:%M:%S %Z} ({self.command})"


class RunnerLock:
    """Hold the store's runner lock while in a `with` block, with a heartbeat thread."""

    def __init__(
        self,
        store: Store,
        command: str,
        *,
        on_lost: Callable[[], None] | None = None,
        wait: float = 0.0,
        on_wait: Callable[[Holder | None], None] | None = None,
        zone: tzinfo | None = None,
    ) -> None:
        """`wait`: seconds to wait for a lock another runner holds before `LockHeld` (0: do not
        wait); `on_wait` is told once, with the holder, when waiting starts; `zone`: the site's,
        that the refusal gives the holder's start in (the machine's own when None)."""
        self.store, self.command, self.on_lost, self.zone = store, command, on_lost, zone
        self.wait, self.on_wait = wait, on_wait
        self._file: IO[bytes] | None = None
        self._connection: Connection | None = None
        self._local: str | None = None
        self._value: str | None = None  # the holder row this runner wrote
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def _path(self) -> Path | None:
        """The lock file of a SQLite file database; None otherwise."""
        url = self.store.engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return Path(f"{url.database}.runner-lock")

    def holder(self) -> Holder | None:
        """Who holds the lock now; None when nobody does."""
        if self._try_take():
            self._drop()
            return None
        value = self.store.get_state(KEY)
        return _read(value) if value else Holder(0, "?", datetime.now(UTC).isoformat(), "unknown")

    def acquire(self) -> None:
        """Take the lock, waiting up to `wait` seconds for its holder, or raise `LockHeld` naming
        the holder."""
        deadline = time.monotonic() + self.wait
        told = False
        while not (taken := self._try_take()) and time.monotonic() < deadline:
            if not told and self.on_wait is not None:
                value = self.store.get_state(KEY)
                self.on_wait(_read(value) if value else None)
                told = True
            time.sleep(min(WAIT_STEP, max(deadline - time.monotonic(), 0.0)))
        if not taken:
            value = self.store.get_state(KEY)
            holder = _read(value) if value else None
            raise LockHeld(
                "another syndicator runs on this store"
                + (f": {holder.describe(self.zone)}" if holder else ""),
                hint="stop it first, or wait for it to finish (see docs/deploying.md: one runner per store)",
            )
        previous = self.store.get_state(KEY)
        gone = _read(previous) if previous else None
        if gone is not None:
            log.warning("taking over the lock of a runner that is gone: %s", gone.describe(self.zone))
        mine = Holder(os.getpid(), socket.gethostname(), datetime.now(UTC).isoformat(), self.command)
        self._value = json.dumps(asdict(mine))
        self.store.set_state(KEY, self._value)

    def release(self) -> None:
        if self._file is None and self._connection is None and self._local is None:
            return
        with contextlib.suppress(Exception):  # the lock goes anyway; the row is only information
            self.store.swap_state(KEY, self._value, None)
        self._drop()

    def held(self) -> bool:
        """Whether this runner still holds the lock."""
        if self._file is not None:
            path = self._path()
            try:
                return path is not None and os.stat(path).st_ino == os.fstat(self._file.fileno()).st_ino
            except OSError:
                return False
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT 1"))
            except Exception:
                return False
            return True
        return self._local is not None

    def _try_take(self) -> bool:
        path = self._path()
        if path is not None:
            handle = open(path, "a+b")  # noqa: SIM115 -- kept open while the lock is held
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return False
            self._file = handle
            return True
        if self.store.engine.dialect.name == "postgresql":
            connection = self.store.engine.connect()
            taken = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY}
            ).scalar()
            connection.commit()
            if not taken:
                connection.close()
                return False
            self._connection = connection
            return True
        key = self.store.engine.url.render_as_string()
        with _LOCAL_GUARD:
            if key in _LOCAL:
                return False
            _LOCAL.add(key)
        self._local = key
        return True

    def _drop(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file frees the flock
            self._file = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
                self._connection.commit()
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
        if self._local is not None:
            with _LOCAL_GUARD:
                _LOCAL.discard(self._local)
            self._local = None

    def _beating(self) -> None:
        while not self._stop.wait(HEARTBEAT.total_seconds()):
            if not self.held():
                self.lost = True
                log.error("the runner lock was lost (database connection or lock file gone): stopping")
                if self.on_lost is not None:
                    self.on_lost()
                return

    def __enter__(self) -> RunnerLock:
        self.acquire()
        self._thread = threading.Thread(target=self._beating, name="runner-lock", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.release()


def _read(value: str) -> Holder | None:
    try:
        data = json.loads(value)
        return Holder(int(data["pid"]), str(data["host"]), str(data["since"]), str(data["command"]))
    except (ValueError, TypeError, KeyError):
        return None  # unreadable: treated as no holder named
