"""One cycle of the service: ingest, then (as later steps land) feeds and due digests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from .config import Config, Frequency
from .delivery import Digests, SendReport, send_digests
from .feeds import FeedsReport, update_feeds
from .ingest import IngestReport, Progress, ingest
from .scheduler import JOB_OF, is_due, record_run
from .store import Store


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did."""

    ingest: IngestReport
    feeds: FeedsReport
    digests: dict[Frequency, SendReport]

    @property
    def ok(self) -> bool:
        return not self.ingest.errors


def run_cycle(
    config: Config, store: Store, *, now: datetime | None = None, progress: Progress | None = None
) -> CycleReport:
    """Run every step of a cycle once, in the order data flows: ingest, feeds, then the digests
    whose time has come since they last ran (immediate ones at every cycle)."""
    now = now or datetime.now(UTC)
    ingested = ingest(store, [config.items_path], now=now, progress=progress)
    feeds = update_feeds(store, config)
    sent: dict[Frequency, SendReport] = {}
    due = [f for f, job in JOB_OF.items() if is_due(config, store, job, now)]
    if due:
        digests = Digests(store, config, now=now)
        for frequency in due:
            sent[frequency] = send_digests(digests, frequency=frequency)
            if not sent[frequency].failed:
                record_run(store, JOB_OF[frequency], now)
    return CycleReport(ingest=ingested, feeds=feeds, digests=sent)
