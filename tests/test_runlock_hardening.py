"""The runner lock is one the operating system frees when its holder dies (a `flock` next to a
SQLite database; a session advisory lock on PostgreSQL): what the holder row says of its host
and pid decides nothing. Real processes, killed with SIGKILL, on a real SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from syndicator.db.store import Store
from syndicator.service.runlock import LockHeld, RunnerLock

from . import databases

HOLD = textwrap.dedent(
    """
    import json, sys, time
    from syndicator.service.runlock import KEY, RunnerLock
    from syndicator.db.store import Store

    store = Store.open(sys.argv[1])
    lock = RunnerLock(store, "run")
    lock.acquire()
    # The row as a runner in a container would leave it: a pid this host does not have, and
    # another host name.
    row = {"pid": 999999999, "host": sys.argv[2], "since": "2026-01-01T00:00:00+00:00", "command": "run"}
    store.set_state(KEY, json.dumps(row))
    print("held", flush=True)
    time.sleep(600)
    """
)


def holder(url: str, host: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, url, host], stdout=subprocess.PIPE, text=True
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_live_runner_keeps_its_lock_whatever_its_row_says_of_its_pid(tmp_path: Path) -> None:
    """A runner whose row names a pid this host does not have (a container sharing the host
    name): it is alive, so a second runner is refused."""
    url = databases.database_for(tmp_path, "store.db")
    Store.open(url).close()
    process = holder(url, os.uname().nodename)
    try:
        with Store.open(url) as store, pytest.raises(LockHeld, match="another syndicator runs"):
            RunnerLock(store, "run --once").acquire()
    finally:
        process.kill()
        process.communicate()


def test_a_runner_killed_with_sigkill_frees_the_lock_at_once(tmp_path: Path) -> None:
    """A runner whose row names another host, killed with SIGKILL: the next runner takes the
    lock at once (on PostgreSQL, as soon as the server has ended the dead session), with no
    stale period to wait."""
    url = databases.database_for(tmp_path, "store.db")
    Store.open(url).close()
    process = holder(url, "another-machine")
    with Store.open(url) as store:
        assert RunnerLock(store, "status").holder() is not None
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
        # PostgreSQL ends the dead client's session (and its advisory lock) a moment later.
        deadline = time.monotonic() + 5
        while RunnerLock(store, "status").holder() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert RunnerLock(store, "status").holder() is None
        lock = RunnerLock(store, "run --once")
        lock.acquire()
        lock.release()


@pytest.mark.sqlite_only
def test_a_runner_whose_lock_file_is_removed_is_told_it_lost_the_lock(tmp_path: Path) -> None:
    """The lock file deleted under a runner (an admin cleaning up): it no longer holds the lock,
    and its heartbeat says so (the daemon then stops its jobs)."""
    url = databases.database_for(tmp_path, "store.db")
    with Store.open(url) as store:
        lock = RunnerLock(store, "run")
        lock.acquire()
        assert lock.held()
        (tmp_path / "store.db.runner-lock").unlink()
        assert not lock.held()
        lock.release()
