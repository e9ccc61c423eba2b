"""The retention periods of `privacy.retention` (RGPD article 5(1)(e)), applied.

Run by every refresh of the daemon (and `run --once`) and by `syndicator purge`, always under
the runner's lock (syndicator/service/runlock.py). What goes:

- sign-up requests, confirmed or not, `signup_requests_days` after they were made (the
  requests that serve no more go earlier, syndicator/db/signups.py); requests for one's
  data by email (syndicator/web/export.py) after a day;
- the web choices and proof of consent of an address suppressed (unsubscribed, bounced) for
  `consent_years`: the subscription ended that long ago;
- suppressions older than `suppressions_years` are kept only as the keyed hash of their address
  (syndicator/db/pseudonyms.py): still never mailed, no longer readable;
- digests issued more than `ledger_months` ago become counts per month, frequency and state
  (`ledger_counts`), their rows and items deleted; never before the longest look-back of a
  digest (the ledger is what keeps an item from going twice), and never a digest not yet
  delivered or failed for good, nor a send run not finished (a running send needs them);
- finished send runs as old, with their claims;
- what the bounce mailbox said (`bounce_events`: failures, complaints, reactivations) as old,
  and never within `email.bounces.soft_days`, over which soft failures are counted. A
  complaint's suppression stays: only its report goes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, func, select, update

from syndicator.config.model import Config
from syndicator.db.ledger import UNBUILT, Suppressions
from syndicator.db.pseudonyms import Pseudonyms, is_pseudonym
from syndicator.db.schema import (
    bounce_events,
    digest_items,
    digests,
    export_requests,
    ledger_counts,
    send_claims,
    send_runs,
    send_workers,
    signup_requests,
    subscriber_choices,
    suppressions,
)
from syndicator.db.signups import purge as purge_requests
from syndicator.db.store import Store
from syndicator.i18n import N_

FINISHED = ("sent", "failed", UNBUILT)
DAY = timedelta(days=1)
_BATCH = 500


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What one purge removed."""

    signup_requests: int = 0
    consents: int = 0
    suppressions_hashed: int = 0
    digests: int = 0
    digest_items: int = 0
    send_runs: int = 0
    bounce_events: int = 0

    def lines(self) -> list[str]:
        """What was removed, one line each, for `purge` to print."""
        return [
            N_("{count} sign-up and export requests deleted", count=self.signup_requests),
            N_("{count} web choices and consent proofs deleted (subscription ended)", count=self.consents),
            N_("{count} suppressed addresses kept only as a keyed hash", count=self.suppressions_hashed),
            N_(
                "{count} digests ({items} items) aggregated into monthly counts and deleted",
                count=self.digests,
                items=self.digest_items,
            ),
            N_("{count} finished send runs deleted, with their claims", count=self.send_runs),
            N_("{count} bounce and complaint reports deleted", count=self.bounce_events),
        ]

    def summary(self) -> str:
        return ", ".join(line for line in self.lines() if not line.startswith("0 "))


def months_before(moment: datetime, months: int) -> datetime:
    """The same day `months` calendar months earlier (the month's last day when it is shorter)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    for day in range(moment.day, 0, -1):
        try:
            return moment.replace(year=year, month=month + 1, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable: every month has a first day")


def ledger_cutoff(config: Config, now: datetime) -> datetime:
    """Digests issued before this go: `ledger_months` ago, and never within a digest's look-back."""
    widest = max(config.email.lookback_days.model_dump().values())
    return min(months_before(now, config.privacy.retention.ledger_months), now - timedelta(days=widest + 1))


def purge(config: Config, store: Store, now: datetime | None = None) -> PurgeReport:
    """Apply the retention periods now; the caller holds the runner's lock."""
    now = now or datetime.now(UTC)
    retention = config.privacy.retention
    requests = purge_requests(store, now)
    with store.engine.begin() as connection:
        # Requests for one's data by email are counted for a day, for the rate limits only.
        requests += connection.execute(
            delete(export_requests).where(export_requests.c.created < now - DAY)
        ).rowcount
        requests += connection.execute(
            delete(signup_requests).where(
                signup_requests.c.created < now - timedelta(days=retention.signup_requests_days)
            )
        ).rowcount
    consents, hashed = _suppressed(store, now, retention.consent_years, retention.suppressions_years)
    aggregated, carried = _aggregate(store, ledger_cutoff(config, now))
    runs = _old_runs(store, ledger_cutoff(config, now))
    counted = config.email.bounces.soft_days if config.email.bounces else 0
    reports = min(ledger_cutoff(config, now), now - timedelta(days=counted + 1))
    with store.engine.begin() as connection:
        bounces = connection.execute(delete(bounce_events).where(bounce_events.c.received < reports)).rowcount
    return PurgeReport(requests, consents, hashed, aggregated, carried, runs, bounces)


def _years_before(now: datetime, years: int) -> datetime:
    return months_before(now, 12 * years)


def _suppressed(store: Store, now: datetime, consent_years: int, suppression_years: int) -> tuple[int, int]:
    """Consent proofs of subscriptions ended long ago deleted; old suppressions hashed."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            select(suppressions.c.subscriber, suppressions.c.reason, suppressions.c.since)
        ).all()
        chosen = list(connection.execute(select(subscriber_choices.c.subscriber)).scalars())
    ended = Suppressions.of(store, {row.subscriber: row.since for row in rows})
    consent_limit = _years_before(now, consent_years)
    gone = [key for key in chosen if key in ended and ended[key] < consent_limit]
    suppression_limit = _years_before(now, suppression_years)
    old = [row for row in rows if not is_pseudonym(row.subscriber) and row.since < suppression_limit]
    if not gone and not old:
        return 0, 0  # the usual refresh: nothing to write, so no write lock taken
    pseudonyms = Pseudonyms.of_store(store)
    with store.writing() as connection:
        consents = 0
        for start in range(0, len(gone), _BATCH):
            consents += connection.execute(
                delete(subscriber_choices).where(
                    subscriber_choices.c.subscriber.in_(gone[start : start + _BATCH])
                )
            ).rowcount
        for row in old:
            hashed = pseudonyms.current(row.subscriber)
            exists = connection.execute(
                select(suppressions.c.subscriber).where(suppressions.c.subscriber == hashed)
            )
            if exists.first() is None:
                connection.execute(
                    update(suppressions)
                    .where(suppressions.c.subscriber == row.subscriber)
                    .values(subscriber=hashed, detail=None, diagnostic=None)  # both may quote it
                )
            else:
                connection.execute(delete(suppressions).where(suppressions.c.subscriber == row.subscriber))
    return consents, len(old)


def _aggregate(store: Store, cutoff: datetime) -> tuple[int, int]:
    """Digests finished and issued before `cutoff` turned into monthly counts; (digests, items)."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            select(digests.c.id, digests.c.issued, digests.c.frequency, digests.c.state).where(
                digests.c.issued < cutoff, digests.c.state.in_(FINISHED)
            )
        ).all()
        counts: dict[int, int] = {}
        ids = [row.id for row in rows]
        for start in range(0, len(ids), _BATCH):  # only the digests that go: the ledger may be large
            found = connection.execute(
                select(digest_items.c.digest_id, func.count())
                .where(digest_items.c.digest_id.in_(ids[start : start + _BATCH]))
                .group_by(digest_items.c.digest_id)
            )
            counts.update({int(digest_id): int(count) for digest_id, count in found})
    if not rows:
        return 0, 0
    tally: Counter[tuple[str, str, str]] = Counter()
    carried: Counter[tuple[str, str, str]] = Counter()
    for row in rows:
        group = (f"{row.issued.astimezone(UTC):%Y-%m}", row.frequency, row.state)
        tally[group] += 1
        carried[group] += counts.get(row.id, 0)
    items_column = ledger_counts.c["items"]  # `.c.items` is the collection's own method
    with store.writing() as connection:
        for (month, frequency, state), count in sorted(tally.items()):
            same = and_(
                ledger_counts.c.month == month,
                ledger_counts.c.frequency == frequency,
                ledger_counts.c.state == state,
            )
            added = carried[(month, frequency, state)]
            if connection.execute(select(ledger_counts.c.month).where(same)).first() is None:
                connection.execute(
                    ledger_counts.insert().values(
                        month=month, frequency=frequency, state=state, digests=count, items=added
                    )
                )
            else:
                connection.execute(
                    update(ledger_counts)
                    .where(same)
                    .values(
                        {
                            ledger_counts.c.digests: ledger_counts.c.digests + count,
                            items_column: items_column + added,
                        }
                    )
                )
        for start in range(0, len(ids), _BATCH):
            part = ids[start : start + _BATCH]
            connection.execute(delete(digest_items).where(digest_items.c.digest_id.in_(part)))
            connection.execute(delete(digests).where(digests.c.id.in_(part), digests.c.state.in_(FINISHED)))
    return len(ids), sum(carried.values())


def _old_runs(store: Store, cutoff: datetime) -> int:
    """Send runs finished before `cutoff`, with their claims and workers."""
    with store.writing() as connection:
        ids = list(
            connection.execute(
                select(send_runs.c.id).where(send_runs.c.finished.is_not(None), send_runs.c.finished < cutoff)
            ).scalars()
        )
        for start in range(0, len(ids), _BATCH):
            part = ids[start : start + _BATCH]
            connection.execute(delete(send_claims).where(send_claims.c.run_id.in_(part)))
            connection.execute(delete(send_workers).where(send_workers.c.run_id.in_(part)))
            connection.execute(delete(send_runs).where(send_runs.c.id.in_(part)))
    return len(ids)
