"""The daemon: catch-up after downtime, daylight-saving days, one runner per store, reload with
the last good config kept, clean stops. Real `syndicator run` processes where the behaviour is
about processes; a clock stepped by the test where it is about time."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syndicator.config.model import load_config
from syndicator.db.ledger import Ledger
from syndicator.db.store import Store
from syndicator.ingest.reading import ingest
from syndicator.service.daemon import Daemon
from syndicator.service.runlock import LockHeld, RunnerLock
from syndicator.service.scheduler import WallClockCron, is_due, last_result, last_run, record_run

from .conftest import Run
from .databases import use_database
from .smtp_server import SlowHandler, message_ids, smtp_server
from .support import ITEMS, item_text

pytestmark = [  # the aiosmtpd thread's late socket closes: see tests/test_delivery_smtp.py
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

PARIS = "Europe/Paris"


def write_config(root: Path, *, subscribers: int = 3, frequency: str = "daily", smtp_port: int | None = None,
                 extra: str = "") -> Path:  # fmt: skip
    """A project folder with the sample items and `subscribers` subscribers of `frequency`."""
    if not (root / "items").exists():
        shutil.copytree(ITEMS, root / "items")
    transport = (
        f"  transport: smtp\n  smtp: {{host: 127.0.0.1, port: {smtp_port}, starttls: false, timeout: 10}}\n"
        if smtp_port
        else "  transport: outbox\n  outbox: outbox/\n"
    )
    people = "".join(f"  - email: s{n}@example.org\n    frequency: {frequency}\n" for n in range(subscribers))
    path = root / "config.yaml"
    path.write_text(
        "email:\n"
        "  from: 'IREV <lettre@example.org>'\n"
        f"{transport}"
        "  max_connections: 1\n"
        "  rate_per_second: 1000\n"
        "  lookback_days: {daily: 4000, weekly: 4000, monthly: 4000}\n"
        f"{extra}"
        f"subscribers:\n{people}",
        encoding="utf-8",
    )
    return use_database(path)


def start(config: Path, *args: str) -> subprocess.Popen[str]:
    """`syndicator run` as a real process; its log goes to run.log beside the config."""
    log = (config.parent / "run.log").open("a", encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "syndicator", "run", "--config", str(config), *args],
        stdout=log, stderr=log, text=True, cwd=config.parent,
    )  # fmt: skip


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def logged(config: Path) -> str:
    path = config.parent / "run.log"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> float:
    """Send `sig` and wait; the seconds the process took to exit."""
    began = time.monotonic()
    process.send_signal(sig)
    process.wait(timeout=30)
    return time.monotonic() - began


@contextmanager
def daemon(config: Path) -> Iterator[subprocess.Popen[str]]:
    process = start(config)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def outbox_recipients(root: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    for eml in (root / "outbox").glob("*.eml"):
        for line in eml.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("To: "):
                found[line.removeprefix("To: ").strip()] += 1
                break
    return found


# --- time -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [("2026-03-29", "2026-03-29T03:00:00+02:00"), ("2026-10-25", "2026-10-25T02:30:00+02:00")],
)
def test_a_job_at_0230_fires_once_on_the_days_the_clocks_change(day: str, expected: str) -> None:
    """Spring forward (02:30 does not exist: once, at 03:00) and fall back (02:30 comes twice:
    once, the first time); the trigger never steps back nor repeats, and never hangs."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(PARIS)
    cron = WallClockCron("30 2 * * *", zone)
    now = datetime.fromisoformat(day).replace(tzinfo=zone) - timedelta(days=2)
    fires: list[datetime] = []
    previous = None
    while len(fires) < 6:  # as APScheduler asks: the previous fire time, and now
        fire = cron.get_next_fire_time(previous, now)
        assert fire is not None
        assert previous is None or fire > previous
        fires.append(fire)
        previous, now = fire, fire
    on_day = [f.isoformat() for f in fires if f.astimezone(zone).date().isoformat() == day]
    assert on_day == [expected]
    days = [f.astimezone(zone).date() for f in fires]
    assert len(set(days)) == len(days), "one fire a day"


@pytest.mark.parametrize("day", ["2026-03-29", "2026-10-25"])
def test_the_daily_digest_runs_once_a_day_across_a_change_of_clocks(tmp_path: Path, day: str) -> None:
    """A clock stepped minute by minute over two days around the change: the 02:30 job is due,
    runs (recorded in the store) and is due again only the next day — no double run."""
    from zoneinfo import ZoneInfo

    config_file = write_config(tmp_path, extra="schedule: {daily: '30 2 * * *'}\n")
    config = load_config(config_file)
    zone = ZoneInfo(PARIS)
    now = datetime.fromisoformat(day).replace(tzinfo=zone) - timedelta(days=1)
    runs: list[datetime] = []
    with Store.open(config.database_url) as store:
        record_run(store, "daily", now)
        for _ in range(3 * 24 * 60):
            now += timedelta(minutes=1)
            if is_due(config, store, "daily", now):
                record_run(store, "daily", now)
                runs.append(now)
    assert [r.astimezone(zone).date().isoformat() for r in runs] == [
        (datetime.fromisoformat(day) + timedelta(days=d)).date().isoformat() for d in (-1, 0, 1)
    ]
    on_the_day = runs[1].astimezone(zone).isoformat()
    assert on_the_day == (
        "2026-03-29T03:00:00+02:00" if day.endswith("03-29") else "2026-10-25T02:30:00+02:00"
    )


# --- catch-up ---------------------------------------------------------------------------------


def test_downtime_across_several_daily_times_gives_one_digest_per_subscriber(tmp_path: Path) -> None:
    """The daemon was down for three daily times: at start it sends one digest per subscriber,
    not three, and records the run so that the next is tomorrow's."""
    config_file = write_config(tmp_path, subscribers=3, frequency="daily")
    config = load_config(config_file)
    three_days_ago = datetime.now(UTC) - timedelta(days=3, hours=1)
    with Store.open(config.database_url) as store:
        assert ingest(store, [config.items_path], now=three_days_ago - timedelta(days=1)).errors == []
        record_run(store, "daily", three_days_ago)
    (tmp_path / "items" / "new.txt").write_text(item_text("https://www.irev.fr/actualites/nouvelle"))
    with daemon(config_file) as process:
        wait_for(lambda: "job start:" in logged(config_file), "the start cycle")
        assert stop(process) < 10
        assert process.returncode == 0, logged(config_file)
    assert outbox_recipients(tmp_path) == {f"s{n}@example.org": 1 for n in range(3)}
    assert "digests daily: sent 3" in logged(config_file)
    with Store.open(config.database_url) as store:
        last = last_run(store, "daily")
        assert last is not None
        assert datetime.now(UTC) - last < timedelta(minutes=5)
        assert not is_due(config, store, "daily", datetime.now(UTC))


# --- one runner -------------------------------------------------------------------------------


def test_a_second_runner_refuses_naming_the_first_and_run_once_refuses_too(tmp_path: Path, run: Run) -> None:
    """Two `syndicator run` on one store: the second exits 1 naming the holder's pid and host;
    `run --once` refuses the same way while the daemon runs."""
    config_file = write_config(tmp_path)
    with daemon(config_file) as first:
        wait_for(lambda: "job start:" in logged(config_file), "the first daemon's start cycle")
        second = subprocess.run(
            [sys.executable, "-m", "syndicator", "run", "--config", str(config_file)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert second.returncode == 1
        assert f"another syndicator runs on this store: pid {first.pid} on " in second.stderr
        once = run("run", "--once", "--config", str(config_file))
        assert once.code == 1
        assert f"pid {first.pid}" in once.err
        status = run("status", "--config", str(config_file))
        assert f"runner: pid {first.pid} on" in status.out
        assert stop(first) < 10
    assert first.returncode == 0
    assert "runner: none" in run("status", "--config", str(config_file)).out


def test_a_lock_left_by_a_killed_runner_is_taken_over(tmp_path: Path) -> None:
    """kill -9 leaves the lock in the store; the next `run` sees its holder is gone and starts."""
    config_file = write_config(tmp_path)
    with daemon(config_file) as first:
        wait_for(lambda: "job start:" in logged(config_file), "the first daemon's start cycle")
        first.kill()
        first.wait()
    with daemon(config_file) as second:
        wait_for(lambda: logged(config_file).count("job start:") == 2, "the second daemon's start cycle")
        assert "taking over the lock of a runner that is gone: pid" in logged(config_file)
        assert stop(second) < 10
    assert second.returncode == 0


def test_the_lock_of_a_live_process_is_not_taken(tmp_path: Path) -> None:
    """Within one store, a lock held by a live process stops a second taker."""
    config = load_config(write_config(tmp_path))
    with (
        Store.open(config.database_url) as store,
        RunnerLock(store, "run"),
        pytest.raises(LockHeld, match=f"pid {os.getpid()}"),
    ):
        RunnerLock(store, "run --once").acquire()
    with Store.open(config.database_url) as store:
        assert RunnerLock(store, "status").holder() is None


# --- reload -----------------------------------------------------------------------------------


def test_a_config_broken_on_disk_is_logged_and_the_old_one_keeps_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad edit of config.yaml while running: its problems are logged as file:line, and the
    next cycle still runs with the last good config (its subscribers, its outbox)."""
    config_file = write_config(tmp_path, subscribers=2)
    config = load_config(config_file)
    with Store.open(config.database_url) as store:
        service = Daemon(config_file, config, store)
        good = config_file.read_text(encoding="utf-8")
        config_file.write_text(good.replace("frequency: daily", "frequency: sometimes"), encoding="utf-8")
        with caplog.at_level(logging.INFO, logger="syndicator"):
            service.maybe_reload()
            assert service.config is config
            line = 1 + next(n for n, row in enumerate(good.splitlines()) if "frequency: daily" in row)
            assert f"{config_file}:{line}: subscriber #1 (s0@example.org), frequency: " in caplog.text
            assert "keeping the last good config" in caplog.text
            service.run_job("refresh")
        assert outbox_recipients(tmp_path) == {"s0@example.org": 1, "s1@example.org": 1}
        config_file.write_text(good.replace("s1@", "s9@"), encoding="utf-8")
        with caplog.at_level(logging.INFO, logger="syndicator"):
            service.maybe_reload()
        assert [s.email for s in service.config.subscribers] == ["s0@example.org", "s9@example.org"]
        assert "config reloaded" in caplog.text


def test_a_failed_cycle_loses_no_change_the_watcher_saw(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cycle that fails after taking the watcher's list (here the feeds folder is a file) is
    logged, and the next cycle scans every file rather than trusting a list it no longer has;
    the new item's feeds are written then."""
    config_file = write_config(tmp_path)
    config = load_config(config_file)
    with Store.open(config.database_url) as store:
        service = Daemon(config_file, config, store)
        service.watcher.start()
        try:
            service.run_job("start")
            (tmp_path / "items" / "zz_new.txt").write_text(item_text("https://www.irev.fr/actualites/vue"))
            time.sleep(1.5)  # the watcher's debounce and poll
            (tmp_path / "blocker").write_text("not a folder")
            feeds = config.feeds.model_copy(update={"output": Path("blocker")})
            service.config = config.model_copy(update={"feeds": feeds})
            with caplog.at_level(logging.INFO, logger="syndicator"):
                service.run_job("refresh")
            assert "job refresh failed" in caplog.text
            service.config = config
            service.run_job("refresh")
        finally:
            service.watcher.stop()
        result = last_result(store, "refresh")
        assert result is not None
        assert result[1].startswith("items 0 new, 0 updated, 28 unchanged, 0 errors; feeds 3 written"), result


def test_sighup_with_a_broken_config_keeps_the_daemon_running(tmp_path: Path) -> None:
    """A real daemon: a broken config.yaml (seen on disk, or on SIGHUP) is logged with its line;
    the daemon keeps running and picks up the fixed file."""
    config_file = write_config(tmp_path)
    good = config_file.read_text(encoding="utf-8")
    with daemon(config_file) as process:
        wait_for(lambda: "job start:" in logged(config_file), "the start cycle")
        config_file.write_text(good + "  - email: not-an-address\n", encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the last good config" in logged(config_file), "the reload error")
        line = len(good.splitlines()) + 1
        assert f"config.yaml:{line}: subscriber #4 (not-an-address), email: " in logged(config_file)
        assert process.poll() is None
        config_file.write_text(good + "  - email: s7@example.org\n", encoding="utf-8")
        wait_for(lambda: "config reloaded" in logged(config_file), "the reload of the fixed file")
        assert "4 subscribers" in logged(config_file)
        assert stop(process) < 10
    assert process.returncode == 0


# --- clean stop -------------------------------------------------------------------------------


def test_sigterm_mid_send_then_restart_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    """SIGTERM while digests go out: the message on the wire finishes, the process exits 0
    within 10 s, and the restart delivers the rest — each subscriber exactly one digest."""
    subscribers = 20
    handler = SlowHandler(0.2)
    with smtp_server(handler) as port:
        config_file = write_config(tmp_path, subscribers=subscribers, smtp_port=port)
        with daemon(config_file) as first:
            wait_for(lambda: len(handler.accepted) >= 3, "a few deliveries", timeout=90)
            assert stop(first) < 10
            assert first.returncode == 0, logged(config_file)
        delivered = len(handler.accepted)
        assert delivered < subscribers, "stopped mid-send"
        assert "stopped before sending" in logged(config_file)
        handler.delay = 0.0
        with daemon(config_file) as second:
            wait_for(lambda: len(handler.accepted) >= subscribers, "the rest", timeout=90)
            wait_for(lambda: logged(config_file).count("job start:") == 2, "the second start cycle")
            assert stop(second) < 10
        assert second.returncode == 0
    per_recipient = Counter(recipient for recipient, _ in message_ids(handler))
    assert per_recipient == {f"s{n}@example.org": 1 for n in range(subscribers)}
    config = load_config(config_file)
    with Store.open(config.database_url) as store:
        assert Ledger(store).counts().get("sent") == subscribers


def test_sigint_stops_cleanly_too(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) is a clean stop like SIGTERM: exit 0, the lock released."""
    config_file = write_config(tmp_path)
    with daemon(config_file) as process:
        wait_for(lambda: "job start:" in logged(config_file), "the start cycle")
        assert stop(process, signal.SIGINT) < 10
    assert process.returncode == 0
    assert "syndicator stopped" in logged(config_file)


def test_status_shows_each_jobs_last_run_result_and_next_run(tmp_path: Path, run: Run) -> None:
    """After a cycle, `status` gives per job its last run, its result and its next time."""
    config_file = write_config(tmp_path)
    assert run("run", "--once", "--config", str(config_file)).code == 0
    out = run("status", "--config", str(config_file)).out
    assert "job daily: last run " in out
    assert "(ok: sent 3, empty 0, failed 0, suppressed 0); next " in out
    assert "job weekly: last run " in out
    assert "items: 27, terms: " in out
    assert "subscribers: 3" in out
    assert "deliveries: 0 pending, 0 failed, 3 sent; 0 suppressed addresses" in out
