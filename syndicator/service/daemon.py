"""`syndicator run`: the scheduler in the foreground, until SIGTERM or SIGINT.

APScheduler 3 fires the jobs of `schedule:` on one worker thread, so cycles never overlap. Each
firing runs a cycle (cycle.py): ingest what the watcher saw change, feeds, then every frequency
whose time has come since it last completed — which is also how missed times are caught up,
at start and after the machine slept. The main thread only waits: for a signal, and for
config.yaml to change, which it reloads, keeping the last good config when the new one is bad
or cannot be applied, for whatever reason.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from syndicator.config.model import Config, load_config
from syndicator.db.store import Store
from syndicator.errors import SyndicatorError
from syndicator.service.cycle import run_cycle
from syndicator.service.runlock import RunnerLock
from syndicator.service.scheduler import JOBS, Job, trigger
from syndicator.service.watching import ItemWatcher

log = logging.getLogger("syndicator.daemon")

FULL_SCAN_EVERY = timedelta(hours=24)  # a safety net under the watcher (missed events)
CONFIG_POLL = 1.0  # seconds between looks at config.yaml


@dataclass(frozen=True, slots=True)
class _FileStamp:
    inode: int
    mtime_ns: int
    size: int


def _stamp(path: Path) -> _FileStamp | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return _FileStamp(info.st_ino, info.st_mtime_ns, info.st_size)


def _blank(path: Path) -> bool:
    """Whether the file holds nothing but blank lines and comments (False when it cannot be
    read: loading it then says why)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


class Daemon:
    """The long-running service over one config file and its store."""

    def __init__(self, config_path: Path, config: Config, store: Store) -> None:
        self.config_path, self.config, self.store = config_path, config, store
        self.stop = threading.Event()
        self._reload = threading.Event()
        self._config_stamp = _stamp(config_path)
        self._last_full: float | None = None
        self.watcher = ItemWatcher(config.items_path)
        self._signal: int | None = None
        self.scheduler = BackgroundScheduler(
            timezone=ZoneInfo(config.site.timezone),
            executors={"default": ThreadPoolExecutor(1)},  # one cycle at a time
            # A time missed (asleep, busy) runs once when the scheduler sees it, however late:
            # APScheduler's default grace of 1 s would drop it silently.
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
        )
        for job in JOBS:
            self.scheduler.add_job(self.run_job, trigger(config, job), args=[job], id=job, name=job)

    # --- signals ---------------------------------------------------------------------------

    # Handlers only set flags: logging from a signal handler can deadlock on the log's lock.
    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self._signal = signum
        self.stop.set()

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self._reload.set()

    # --- jobs ------------------------------------------------------------------------------

    def _changed_files(self) -> list[str] | None:
        """What the refresh must read: the watcher's list, or None for a full scan (the first
        cycle, once a day, and whenever the watcher cannot vouch for its list)."""
        changed = self.watcher.take()
        now = time.monotonic()
        if self._last_full is None or now - self._last_full > FULL_SCAN_EVERY.total_seconds():
            changed = None
        if changed is None:
            self._last_full = now
        return changed

    def run_job(self, job: Job | str) -> None:
        """One cycle, logged on one line; errors are logged and the daemon goes on."""
        if self.stop.is_set():
            return
        started = time.monotonic()
        config = self.config  # the cycle keeps the config it started with, whatever reloads
        try:
            report = run_cycle(config, self.store, changed=self._changed_files(), stop=self.stop)
        except Exception as exc:  # a bug or a bad input must not end the service
            if isinstance(exc, SyndicatorError):
                for problem in exc.problems():
                    log.error("job %s failed: %s", job, problem)
            else:
                log.exception("job %s failed", job)
            # The watcher's list was taken: the next cycle scans everything, so no change is lost.
            self._last_full = None
            return
        for problem in [*report.ingest.errors, *report.ingest.warnings]:
            log.warning("%s", problem)
        level = logging.INFO if report.ok else logging.WARNING
        log.log(level, "job %s: %s (%.2f s)", job, report.summary(), time.monotonic() - started)

    # --- config ----------------------------------------------------------------------------

    def maybe_reload(self) -> None:
        """Reload config.yaml if it changed on disk or SIGHUP asked. Whatever goes wrong while
        reading or applying the new file (problems in it, logged as `file:line: message`, or
        anything unforeseen, logged with its traceback), the last good config stays in use,
        its jobs on their times, and the daemon runs on."""
        stamp = _stamp(self.config_path)
        if not self._reload.is_set() and stamp == self._config_stamp:
            return
        self._reload.clear()
        self._config_stamp = stamp  # a bad file is reported once, not every second
        try:
            if _blank(self.config_path):
                # Caught mid-save (`>` or an editor truncating before writing), or emptied by
                # mistake: taking it would drop every subscriber and every setting at once.
                log.error(
                    "%s is empty (being saved?): keeping the last good config; "
                    "an empty config is never taken while the daemon runs, restart it to use one",
                    self.config_path,
                )
                return
            fresh = load_config(self.config_path)
            self._apply(fresh)
        except SyndicatorError as exc:
            for problem in exc.problems():
                log.error("%s", problem)
            if exc.hint:
                log.error("hint: %s", exc.hint)
            log.error("%s is not valid: keeping the last good config", self.config_path)
            return
        except Exception:  # a reload must never end the service; the file is the admin's to fix
            log.exception("%s could not be applied: keeping the last good config", self.config_path)
            return
        log.info("config reloaded from %s: %d subscribers", self.config_path, len(fresh.subscribers))

    def _apply(self, fresh: Config) -> None:
        """Make `fresh` the config in use. Everything that can fail is built first; if
        rescheduling fails midway, the jobs already moved go back to their old times."""
        old = self.config
        zone_changed = old.site.timezone != fresh.site.timezone
        triggers = {
            job: trigger(fresh, job)
            for job in JOBS
            if zone_changed or getattr(old.schedule, job) != getattr(fresh.schedule, job)
        }
        watcher = ItemWatcher(fresh.items_path) if fresh.items_path != old.items_path else None
        moved: list[Job] = []
        try:
            for job, new_trigger in triggers.items():
                self.scheduler.reschedule_job(job, trigger=new_trigger)
                moved.append(job)
        except Exception:
            for job in moved:
                self.scheduler.reschedule_job(job, trigger=trigger(old, job))
            raise
        self.config = fresh
        if watcher is not None:
            self.watcher.stop()
            self.watcher = watcher
            self.watcher.start()
            self._last_full = None
        if fresh.database_url != old.database_url:
            log.warning("database changed in %s: restart syndicator to use it", self.config_path)

    # --- the loop --------------------------------------------------------------------------

    def serve(self) -> int:
        """Run until SIGTERM or SIGINT; 0 on a clean stop. Raises `LockHeld` when another
        runner holds the store."""
        zone = self.config.site.zone  # the refusal's times are the site's
        with RunnerLock(self.store, "run", on_lost=self.stop.set, zone=zone):  # lost: the jobs stop
            signal.signal(signal.SIGTERM, self._on_stop)
            signal.signal(signal.SIGINT, self._on_stop)
            signal.signal(signal.SIGHUP, self._on_hup)
            self.watcher.start()
            # At start: a refresh now, which also sends whatever came due while we were down.
            self.scheduler.add_job(self.run_job, args=["start"], id="start", name="start")
            self.scheduler.start()
            log.info("syndicator running (pid %d), config %s", os.getpid(), self.config_path)
            try:
                while not self.stop.wait(CONFIG_POLL):
                    self.maybe_reload()
                name = signal.strsignal(self._signal) if self._signal else "stop"
                log.info("%s: finishing the message on the wire, then stopping", name)
            finally:
                self.scheduler.shutdown(wait=True)  # the running cycle ends after the message on the wire
                self.watcher.stop()
        log.info("syndicator stopped at %s", datetime.now(UTC).isoformat(timespec="seconds"))
        return 0
