"""`schedule:` times an admin may mistype: each field checked where `check` looks, with its line
and a hint; weekday numbers read as cron reads them; a time that never comes is a warning; and a
daemon whose config.yaml is edited badly, for whatever reason, keeps running on the last good one."""

from __future__ import annotations

import logging
import re
import signal
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from syndicator.config.model import load_config
from syndicator.db.store import Store
from syndicator.service.daemon import Daemon
from syndicator.service.scheduler import WallClockCron

from .conftest import Run
from .test_daemon import daemon, logged, stop, wait_for, write_config

pytestmark = [  # the daemon helpers' aiosmtpd imports: see tests/test_daemon.py
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

PARIS = ZoneInfo("Europe/Paris")


def weekly_line(project: Path) -> int:
    """The line of `weekly:` under `schedule:` in the project's config.yaml."""
    lines = (project / "config.yaml").read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.startswith('  weekly: "'))


def set_weekly(project: Path, value: str) -> None:
    """Edit the weekly time of the project's config.yaml, as an admin would."""
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(re.sub(r'(?m)^  weekly: ".*"', f'  weekly: "{value}"', text), encoding="utf-8")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("30 7 * * lundi", "'lundi' is French; cron takes English weekday names: write 'mon' (or 1)"),
        ("30 7 * * Mer", "'Mer' is French; cron takes English weekday names: write 'wed' (or 3)"),
        ("99 7 * * *", "minute 99 is out of range 0-59"),
        ("30 25 * * *", "hour 25 is out of range 0-23"),
        ("30 7 32 * *", "day of the month 32 is out of range 1-31"),
        ("30 7 * 13 *", "month 13 is out of range 1-12"),
        ("30 7 * janvier *", "'janvier' is French; cron takes English month names: write 'jan' (or 1)"),
        ("*/0 * * * *", "minute '*/0': the step after '/' must be a number of 1 or more"),
        ("30 7 * * 5-1", "weekday range '5-1' goes backwards; write the smaller value first"),
        ("30 7 * mon", "'30 7 * mon' has 4 fields; a cron time has five"),
    ],
)
def test_check_names_the_line_and_the_field_of_a_bad_cron_time(
    run: Run, project: Path, value: str, says: str
) -> None:
    """Each cron time `check` used to pass (and the scheduler then died on) is refused at its
    line, saying which field is wrong and what to write, with a hint on the cron format."""
    set_weekly(project, value)
    result = run("check")
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0].startswith(f"config.yaml:{weekly_line(project)}: schedule.weekly: "), lines
    assert says in lines[0]
    assert lines[1].startswith("hint: a schedule: time is a cron line, minute hour day month weekday")
    assert "Traceback" not in result.err


def test_status_and_run_refuse_a_bad_cron_time_with_its_line_not_a_traceback(run: Run, project: Path) -> None:
    """`status` and `run --once` on a config whose weekly time says `lundi` exit 1 with the
    located message, as `check` does, instead of APScheduler's traceback."""
    set_weekly(project, "30 7 * * lundi")
    for command in (["status"], ["run", "--once"]):
        result = run(*command)
        assert result.code == 1, command
        assert result.err.startswith(f"config.yaml:{weekly_line(project)}: schedule.weekly: "), result.err
        assert "write 'mon'" in result.err and "Traceback" not in result.err


def test_a_time_that_never_comes_is_a_check_warning(run: Run, project: Path) -> None:
    """The 31st of February never comes: `check` warns at the line that the weekly digests would
    never go; the 29th of February comes every four years and is no warning."""
    set_weekly(project, "30 7 31 2 *")
    result = run("check")
    assert result.code == 1
    assert (
        f"config.yaml:{weekly_line(project)}: warning: schedule.weekly: '30 7 31 2 *' never comes "
        "(none of its months has such a day): the weekly digests would never be sent"
    ) in result.err.splitlines()
    set_weekly(project, "30 7 29 2 *")
    leap = run("check")
    assert leap.code == 0, leap.err


@pytest.mark.parametrize(
    ("expression", "weekdays"),
    [
        ("30 7 * * 1", {"Monday"}),
        ("30 7 * * 0", {"Sunday"}),
        ("30 7 * * 7", {"Sunday"}),
        ("30 7 * * 1-5", {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}),
        ("30 7 * * fri-sun", {"Friday", "Saturday", "Sunday"}),
        ("30 7 * * */2", {"Sunday", "Tuesday", "Thursday", "Saturday"}),
    ],
)
def test_weekday_numbers_mean_what_they_mean_in_crontab(expression: str, weekdays: set[str]) -> None:
    """Cron counts weekdays from Sunday = 0 (7 is Sunday too); APScheduler 3 from Monday = 0, so
    '1' fired on Tuesdays. The days a trigger fires over two weeks are the crontab's days."""
    cron = WallClockCron(expression, PARIS)
    fired: list[datetime] = []
    moment = datetime(2026, 12, 2, tzinfo=PARIS)  # a Wednesday
    while (fire := cron.get_next_fire_time(fired[-1] if fired else None, moment)) is not None:
        if fire >= datetime(2026, 12, 16, tzinfo=PARIS):
            break
        fired.append(fire)
    assert {f.strftime("%A") for f in fired} == weekdays
    assert all((f.hour, f.minute) == (7, 30) for f in fired)


# --- reload -----------------------------------------------------------------------------------


def test_a_daemon_whose_config_gets_a_bad_cron_time_keeps_running(tmp_path: Path) -> None:
    """A real `syndicator run`: config.yaml edited to `weekly: "30 7 * * lundi"` used to kill it
    within a second. Now the problem is logged with its line and hint, the daemon runs on with
    the last good config, and picks up the corrected file."""
    config_file = write_config(tmp_path)
    good = config_file.read_text(encoding="utf-8")
    with daemon(config_file) as process:
        wait_for(lambda: "job start:" in logged(config_file), "the start cycle")
        config_file.write_text(good + 'schedule:\n  weekly: "30 7 * * lundi"\n', encoding="utf-8")
        wait_for(lambda: "keeping the last good config" in logged(config_file), "the reload error", 20)
        text = logged(config_file)
        line = len(good.splitlines()) + 2
        assert f"config.yaml:{line}: schedule.weekly: '30 7 * * lundi': 'lundi' is French" in text
        assert "hint: a schedule: time is a cron line" in text
        time.sleep(2)  # the poll that used to end the process has come and gone
        assert process.poll() is None, logged(config_file)
        config_file.write_text(good + 'schedule:\n  weekly: "30 7 * * 1"\n', encoding="utf-8")
        wait_for(lambda: "config reloaded" in logged(config_file), "the reload of the fixed file", 20)
        assert stop(process, signal.SIGTERM) < 10
    assert process.returncode == 0


def test_a_reload_that_fails_for_an_unforeseen_reason_keeps_the_last_good_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not every bad file is a `ConfigError`: one nested thousands deep makes the YAML reader
    raise RecursionError. The reload logs why (with the traceback) and keeps the last good
    config and its job times; a later good edit is taken."""
    config_file = write_config(tmp_path, subscribers=2)
    config = load_config(config_file)
    with Store.open(config.database_url) as store:
        service = Daemon(config_file, config, store)
        weekly = service.scheduler.get_job("weekly").trigger
        good = config_file.read_text(encoding="utf-8")
        deep = "[" * 20_000 + "]" * 20_000
        config_file.write_text(good + f'schedule:\n  weekly: "30 7 * * 1"\nsite: {deep}\n', encoding="utf-8")
        with caplog.at_level(logging.INFO, logger="syndicator"):
            service.maybe_reload()
        assert service.config is config
        assert service.scheduler.get_job("weekly").trigger is weekly
        assert f"{config_file} could not be applied: keeping the last good config" in caplog.text
        assert "RecursionError" in caplog.text
        caplog.clear()
        config_file.write_text(good + 'schedule:\n  weekly: "45 8 * * 1"\n', encoding="utf-8")
        with caplog.at_level(logging.INFO, logger="syndicator"):
            service.maybe_reload()
        assert service.config.schedule.weekly == "45 8 * * 1"
        assert str(service.scheduler.get_job("weekly").trigger) == "cron[45 8 * * 1] in Europe/Paris"
        assert "config reloaded" in caplog.text


def test_an_unquoted_cron_time_starting_with_a_star_gets_a_hint_about_quotes(run: Run, project: Path) -> None:
    """`refresh: */10 * * * *` without quotes is a YAML alias, not text: the error names the line
    and the hint says to quote the time, not to look at the indentation."""
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('refresh: "*/10 * * * *"', "refresh: */10 * * * *"), encoding="utf-8")
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith("  refresh:"))
    result = run("check")
    assert result.code == 1
    assert result.err.splitlines() == [
        f"config.yaml:{line}: not valid YAML: found undefined alias '/10'",
        "hint: a value starting with '*', like a cron time, needs quotes: refresh: \"*/10 * * * *\"",
    ]
