"""The single-runner lock: one `syndicator run` (or `run --once`) per store at a time.

The lock is a row of the store's `state` table, so it works the same on a SQLite file and on a
PostgreSQL server shared by several machines. It names its holder (pid, host, since) and is
refreshed by a heartbeat. A lock whose holder is gone is taken over: on the same host when
that process no longer exists (checked with its pid and start time, so a reused pid does not
keep a dead lock alive), on another host when the heartbeat is older than `STALE`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

from .errors import SyndicatorError
from .store import Store

log = logging.getLogger(__name__)

KEY = "runner.lock"
HEARTBEAT = timedelta(seconds=30)
STALE = timedelta(minutes=5)  # another host's lock with no heartbeat for this long is dead


class LockHeld(SyndicatorError):
    """Another runner holds the store."""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds the lock, as stored."""

    pid: int
    host: str
    started: str  # the process's start time as the kernel counts it ("" where unknown)
    since: str  # ISO time the lock was taken
    beat: str  # ISO time of the last heartbeat
    command: str

    def describe(self) -> str:
        since = datetime.fromisoformat(self.since).astimezone()
        return f"pid {self.pid} on {self.host}, since {since:%Y-%m-%d %H:%M:%S %Z} ({self.command})"


def _process_start(pid: int) -> str:
    """The start time of a process in clock ticks since boot (Linux), "" where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # The command name (field 2) may hold spaces: count fields after its closing ")".
            return stat.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return ""


def _gone(holder: Holder, now: datetime) -> bool:
    """Whether the holder of a lock no longer runs."""
    if holder.host != socket.gethostname():
        return now - datetime.fromisoformat(holder.beat) > STALE
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # a process of another user has that pid: alive, unless its start time says not
    return bool(holder.started) and _process_start(holder.pid) != holder.started


class RunnerLock:
    """Hold the store's runner lock while in a `with` block, with a heartbeat thread."""

    def __init__(self, store: Store, command: str) -> None:
        self.store, self.command = store, command
        self._value: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holder(self) -> Holder | None:
        value = self.store.get_state(KEY)
        return _read(value) if value else None

    def acquire(self) -> None:
        """Take the lock, or raise `LockHeld` naming the holder."""
        now = datetime.now(UTC)
        pid = os.getpid()
        mine = Holder(
            pid, socket.gethostname(), _process_start(pid), now.isoformat(), now.isoformat(), self.command
        )
        value = json.dumps(asdict(mine))
        for _ in range(3):  # a lost race with another starter is retried, then reported
            current = self.store.get_state(KEY)
            holder = _read(current) if current else None
            if holder is not None and not _gone(holder, now):
                raise LockHeld(
                    f"another syndicator runs on this store: {holder.describe()}",
                    hint="stop it first, or wait for it to finish (see the README: one runner)",
                )
            if holder is not None:
                log.warning("taking over the lock of a runner that is gone: %s", holder.describe())
            if self.store.swap_state(KEY, current, value):
                self._value = value
                return
        raise LockHeld("another syndicator is starting on this store at the same moment")

    def release(self) -> None:
        if self._value is not None:
            self.store.swap_state(KEY, self._value, None)
            self._value = None

    def beat(self) -> None:
        """Refresh the heartbeat; a lock taken over meanwhile is logged and left alone."""
        if self._value is None:
            return
        data = json.loads(self._value)
        data["beat"] = datetime.now(UTC).isoformat()
        value = json.dumps(data)
        if self.store.swap_state(KEY, self._value, value):
            self._value = value
        else:
            log.error("the runner lock was taken by another process; this one keeps running")

    def _beating(self) -> None:
        while not self._stop.wait(HEARTBEAT.total_seconds()):
            try:
                self.beat()
            except Exception:  # a database hiccup must not kill the heartbeat; the next one retries
                log.exception("runner lock heartbeat failed")

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
        return Holder(**json.loads(value))
    except (ValueError, TypeError):
        return None  # unreadable: treated as no lock
