"""When jobs are due: the cron times of `schedule:` against the last completed run of each job.

The time each job last completed is kept in the store, so a digest time that passed while
nothing ran (process down, machine asleep) is caught up once, however many periods passed.

Cron times are wall-clock times in the site's time zone. APScheduler 3's own `CronTrigger`
gets daylight-saving days wrong with zoneinfo zones (measured with 3.11.3: on the autumn
change `30 2 * * *` fires at 02:30+02:00, then 02:30+01:00 over and over, and `*/30` steps
back in time), so `WallClockCron` does the arithmetic on naive wall-clock times, where no
hour is missing or doubled, and places each time on the real time line itself: a time that
does not exist (spring forward, 02:00–03:00) fires once, when the clocks reach 03:00; a time
that exists twice (fall back) fires once, the first time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from syndicator.config.crontab import cron_fields
from syndicator.config.frequencies import Frequency
from syndicator.config.model import Config
from syndicator.db.store import Store

_SEARCH_LIMIT = 10_000  # wall times tried before giving up: a cron never needs nearly as many


class WallClockCron(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """A crontab line whose times are wall-clock times in `zone`, each fired at most once."""

    __slots__ = ("_naive", "expression", "zone")

    def __init__(self, expression: str, zone: tzinfo) -> None:
        self.expression, self.zone = expression, zone
        # UTC has no daylight saving: the naive cron arithmetic runs on it as on a plain clock.
        # cron_fields, not CronTrigger.from_crontab, which reads weekday 1 as Tuesday.
        self._naive = CronTrigger(**cron_fields(expression), timezone=UTC)

    def instant(self, wall: datetime) -> datetime:
        """The real time at which the clocks in `zone` show `wall` (naive), the first time they
        do; for a time skipped by a change of clocks, the moment the clocks jump past it."""
        moment = wall.replace(tzinfo=self.zone, fold=0)
        while moment.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) != wall:
            wall = (wall + timedelta(minutes=1)).replace(second=0, microsecond=0)
            moment = wall.replace(tzinfo=self.zone, fold=0)
        return moment

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        after = now if previous_fire_time is None else max(now, previous_fire_time + timedelta(seconds=1))
        # Start an hour of wall time early: around a change of clocks, the wall time shown at
        # `after` may be an hour past a time that is still to come on the real time line.
        wall = after.astimezone(self.zone).replace(tzinfo=None) - timedelta(hours=1)
        for _ in range(_SEARCH_LIMIT):
            fire = self._naive.get_next_fire_time(None, wall.replace(tzinfo=UTC))
            if fire is None:
                return None
            wall = fire.replace(tzinfo=None)
            moment = self.instant(wall)
            if moment >= after and (previous_fire_time is None or moment > previous_fire_time):
                return moment
            wall += timedelta(seconds=1)
        return None

    def __str__(self) -> str:
        return f"cron[{self.expression}] in {self.zone}"

    def __repr__(self) -> str:
        return f"WallClockCron({self.expression!r}, {self.zone!r})"


Job = Literal["refresh", "daily", "weekly", "monthly"]
JOBS: tuple[Job, ...] = ("refresh", "daily", "weekly", "monthly")
JOB_OF: dict[Frequency, Job] = {
    "immediate": "refresh",
    "daily": "daily",
    "weekly": "weekly",
    "monthly": "monthly",
}


def trigger(config: Config, job: Job) -> WallClockCron:
    """The cron trigger of a job, in the site's time zone."""
    return WallClockCron(getattr(config.schedule, job), ZoneInfo(config.site.timezone))


def last_run(store: Store, job: Job) -> datetime | None:
    value = store.get_state(f"job.{job}.last")
    return datetime.fromisoformat(value) if value else None


def record_run(store: Store, job: Job, when: datetime) -> None:
    """Remember that `job` completed at `when`."""
    store.set_state(f"job.{job}.last", when.isoformat())


def record_result(store: Store, job: Job, summary: str, *, ok: bool) -> None:
    """Remember what the job's last run did, for `status`."""
    store.set_state(f"job.{job}.result", json.dumps({"ok": ok, "summary": summary}))


def last_result(store: Store, job: Job) -> tuple[bool, str] | None:
    """Whether the job's last run went well, and its figures; None before any run."""
    value = store.get_state(f"job.{job}.result")
    if not value:
        return None
    data = json.loads(value)
    return bool(data["ok"]), str(data["summary"])


def is_due(config: Config, store: Store, job: Job, now: datetime) -> bool:
    """True when a time of the job's schedule passed since it last completed (or it never ran)."""
    last = last_run(store, job)
    if last is None:
        return True
    fire = trigger(config, job).get_next_fire_time(None, last + timedelta(seconds=1))
    return fire is not None and fire <= now


def next_run(config: Config, job: Job, now: datetime) -> datetime | None:
    """The next time the job's schedule names after `now`."""
    fire: datetime | None = trigger(config, job).get_next_fire_time(None, now + timedelta(seconds=1))
    return fire
