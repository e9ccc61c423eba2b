"""One cycle of the service: ingest, feeds, the bounce mailbox, then the digests whose time has come.

`run --once` runs one cycle; the daemon runs one at each time of its schedule. Whichever job
fires, the cycle sends every frequency that is due (see scheduler.py), so a daily time missed
while the machine slept is caught up by the next refresh, once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from threading import Event

from syndicator.bounces.mailbox import MailboxUnavailable
from syndicator.bounces.reading import BounceReport, check_bounces
from syndicator.config.model import Config, Frequency
from syndicator.config.subscribers import from_config
from syndicator.db.ledger import Ledger
from syndicator.db.store import Store
from syndicator.db.tokens import secret_keys
from syndicator.digests.send import Digests, SendReport, send_digests
from syndicator.feeds.build import FeedsReport, update_feeds
from syndicator.ingest.reading import IngestReport, Progress, ingest
from syndicator.privacy.retention import PurgeReport, purge
from syndicator.service.scheduler import JOB_OF, is_due, record_result, record_run

log = logging.getLogger("syndicator.cycle")

_IMMEDIATE_KEY = "immediate.fingerprint"


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did."""

    ingest: IngestReport
    feeds: FeedsReport
    digests: dict[Frequency, SendReport]
    bounces: BounceReport | None = None  # None: no bounce mailbox configured, or unreadable
    bounce_error: str | None = None  # why the bounce mailbox could not be read
    purged: PurgeReport = field(default_factory=PurgeReport)

    @property
    def ok(self) -> bool:
        failed = any(r.failed or r.stopped for r in self.digests.values())
        return not self.ingest.errors and not failed and self.bounce_error is None

    def summary(self) -> str:
        """One line with the figures, for the daemon's log."""
        parts = [f"items {self.ingest.summary()}", f"feeds {self.feeds.summary()}"]
        if self.bounces is not None:
            parts.append(f"bounces {self.bounces.summary()}")
        if self.bounce_error is not None:
            parts.append(f"bounces: {self.bounce_error}")
        parts += [f"digests {frequency}: {report.summary()}" for frequency, report in self.digests.items()]
        if self.purged.summary():
            parts.append(f"retention: {self.purged.summary()}")
        return "; ".join(parts)


def _immediate_fingerprint(config: Config, store: Store) -> str:
    """What immediate digests depend on: the items, and who subscribes to them with what.
    While it stays the same and nothing waits in the ledger, there is nothing to send."""
    subscribers = [s for s in from_config(config) if s.frequency == "immediate"]
    seen = f"{store.change_stamp()}|{subscribers!r}|{store.choices_stamp()}"
    return hashlib.sha256(seen.encode()).hexdigest()


def _bounces(config: Config, store: Store, now: datetime) -> tuple[BounceReport | None, str | None]:
    """Read the bounce mailbox when one is configured; an unreadable one is reported, and the
    cycle goes on."""
    if config.email.bounces is None:
        return None, None
    try:
        return check_bounces(store, config, secret_keys(store), now), None
    except MailboxUnavailable as error:
        log.error("%s", error)
        return None, str(error)


def run_cycle(
    config: Config,
    store: Store,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
    changed: Sequence[str] | None = None,
    stop: Event | None = None,
) -> CycleReport:
    """Run every step of a cycle once, in the order data flows: ingest, feeds, then the digests
    whose time has come since they last ran (immediate ones at every cycle).

    `changed` names the item files that changed since the last cycle (the daemon's watcher);
    None scans the whole `items.path`. Once `stop` is set, no further digest is started."""
    now = now or datetime.now(UTC)
    max_size, zone = config.items.max_size, config.site.zone
    if changed is None:
        ingested = ingest(
            store, [config.items_path], now=now, progress=progress, max_size=max_size, zone=zone
        )
    else:
        present = [path for path in changed if os.path.isfile(path)]  # removed files keep their items
        ingested = IngestReport()
        if present:
            ingested = ingest(store, present, now=now, progress=progress, max_size=max_size, zone=zone)
    feeds = update_feeds(store, config)
    # Before the digests: an address that bounced or complained gets none of them.
    bounces, bounce_error = _bounces(config, store, now)
    sent: dict[Frequency, SendReport] = {}
    due = [f for f, job in JOB_OF.items() if is_due(config, store, job, now)]
    if "immediate" in due:
        fingerprint = _immediate_fingerprint(config, store)
        if store.get_state(_IMMEDIATE_KEY) == fingerprint and not Ledger(store).unfinished_counts():
            due.remove("immediate")  # nothing new since the last one: skip building anything
    if due:
        digests = Digests(store, config, now=now)
        for frequency in due:
            if stop is not None and stop.is_set():
                break
            report = send_digests(digests, frequency=frequency, stop=stop)
            sent[frequency] = report
            if report.stopped:
                continue  # stopped half-way: still due, the next start resumes it
            # A completed run counts even with failures: they stay in the ledger, and running
            # the job again before its next time would mail the others a second digest.
            if frequency != "immediate":
                record_run(store, JOB_OF[frequency], now)
                record_result(store, JOB_OF[frequency], report.summary(), ok=not report.failed)
            else:
                store.set_state(_IMMEDIATE_KEY, _immediate_fingerprint(config, store))
    # The retention periods, at every refresh: the caller holds the runner's lock.
    cycle = CycleReport(
        ingest=ingested, feeds=feeds, digests=sent, bounces=bounces, bounce_error=bounce_error,
        purged=purge(config, store, now),
    )  # fmt: skip
    if not (sent.get("immediate") and sent["immediate"].stopped):
        record_run(store, "refresh", now)
        record_result(store, "refresh", cycle.summary(), ok=cycle.ok)
    return cycle
