"""One cycle of the service: ingest, then (as later steps land) feeds and due digests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .config import Config
from .feeds import FeedsReport, update_feeds
from .ingest import IngestReport, Progress, ingest
from .store import Store


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did."""

    ingest: IngestReport
    feeds: FeedsReport

    @property
    def ok(self) -> bool:
        return not self.ingest.errors


def run_cycle(
    config: Config, store: Store, *, now: datetime | None = None, progress: Progress | None = None
) -> CycleReport:
    """Run every step of a cycle once, in the order data flows."""
    ingested = ingest(store, [config.items_path], now=now, progress=progress)
    return CycleReport(ingest=ingested, feeds=update_feeds(store, config))
