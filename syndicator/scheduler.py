"""When jobs are due: the cron times of `schedule:` against the last completed run of each job.

The time each job last completed is kept in the store, so a digest time that passed while
nothing ran (process down, machine asleep) is caught up once, however many periods passed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from .config import Config, Frequency
from .store import Store

Job = Literal["refresh", "daily", "weekly", "monthly"]
JOBS: tuple[Job, ...] = ("refresh", "daily", "weekly", "monthly")
JOB_OF: dict[Frequency, Job] = {
    "immediate": "refresh",
    "daily": "daily",
    "weekly": "weekly",
    "monthly": "monthly",
}


def trigger(config: Config, job: Job) -> CronTrigger:
    """The cron trigger of a job, in the site's time zone."""
    return CronTrigger.from_crontab(getattr(config.schedule, job), timezone=ZoneInfo(config.site.timezone))


def last_run(store: Store, job: Job) -> datetime | None:
    value = store.get_state(f"job.{job}.last")
    return datetime.fromisoformat(value) if value else None


def record_run(store: Store, job: Job, when: datetime) -> None:
    """Remember that `job` completed at `when`."""
    store.set_state(f"job.{job}.last", when.isoformat())


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
