"""Every SQL statement about bounces: the events the bounce mailbox reported, the suppressions
they make, what was sent to whom (to tell a real bounce from a forged one), and the rates of
hard bounces and complaints per send run.

Reasons on the suppression list: `hard bounce`, `soft bounces` (too many within `soft_days`),
`complaint`, beside `invalid address` (refused in the SMTP dialogue) and `unsubscribed`. A
complaint replaces any other reason: it is never lifted by an admin, only by the person's own
new confirmed sign-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, insert, select, update

from syndicator.addresses import as_typed, mailbox
from syndicator.db.ledger import Suppressions
from syndicator.db.schema import bounce_events, digests, suppressions
from syndicator.db.store import Store

HARD, SOFT, COMPLAINT, REACTIVATED = "hard bounce", "soft bounces", "complaint", "reactivated"
BOUNCED = frozenset({HARD, SOFT, "invalid address"})  # what `subscribers reactivate` may lift


@dataclass(frozen=True, slots=True)
class Suppression:
    """Why an address receives nothing."""

    reason: str
    since: datetime
    status: str | None
    diagnostic: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class RunRate:
    """The digests of one send, and how many of their addresses bounced hard or complained."""

    frequency: str
    issued: datetime
    sent: int
    hard: int
    complaints: int


class BounceRecords:
    """Bounce events and bounce suppressions, in the store's database."""

    def __init__(self, store: Store) -> None:
        self.store, self.engine = store, store.engine

    # --- what was sent ------------------------------------------------------------------------

    def digest_subscriber(self, digest_id: int) -> str | None:
        """Whose digest that is, if the ledger has it."""
        with self.engine.connect() as connection:
            found = connection.execute(select(digests.c.subscriber).where(digests.c.id == digest_id)).first()
        return found.subscriber if found else None

    def sent_since(self, address: str, since: datetime) -> tuple[int, str] | None:
        """The latest digest (id, subscriber as the ledger files it) handed to the mail server
        for that address since then, if any; the address in any of its forms (a report gives the
        domain in IDNA, config.yaml may spell it in Unicode)."""
        forms = sorted({address.strip().lower(), mailbox(address), as_typed(mailbox(address)).lower()})
        with self.engine.connect() as connection:
            found = connection.execute(
                select(digests.c.id, digests.c.subscriber)
                .where(digests.c.subscriber.in_(forms), digests.c.state == "sent", digests.c.sent_at >= since)
                .order_by(digests.c.id.desc())
                .limit(1)
            ).first()
        return (found.id, found.subscriber) if found else None

    def digest_with_message_id(self, message_id: str, since: datetime) -> tuple[int, str] | None:
        """The digest (id, subscriber) sent since then with that Message-ID, if any."""
        with self.engine.connect() as connection:
            found = connection.execute(
                select(digests.c.id, digests.c.subscriber).where(
                    digests.c.message_id == message_id, digests.c.state == "sent", digests.c.sent_at >= since
                )
            ).first()
        return (found.id, found.subscriber) if found else None

    # --- events and suppressions --------------------------------------------------------------

    def record(
        self,
        subscriber: str,
        kind: str,
        now: datetime,
        *,
        status: str | None = None,
        diagnostic: str | None = None,
        digest_id: int | None = None,
    ) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                insert(bounce_events).values(
                    subscriber=subscriber, kind=kind, status=status, diagnostic=diagnostic,
                    digest_id=digest_id, received=now,
                )
            )  # fmt: skip

    def soft_count(self, subscriber: str, since: datetime) -> int:
        """Soft failures of that address since then (and since it was last reactivated); several
        reports about one digest (a delay warning, then the failure) count once."""
        with self.engine.connect() as connection:
            lifted = connection.execute(
                select(func.max(bounce_events.c.received)).where(
                    bounce_events.c.subscriber == subscriber, bounce_events.c.kind == REACTIVATED
                )
            ).scalar()
            start = max(since, lifted) if lifted else since
            rows = connection.execute(
                select(bounce_events.c.digest_id).where(
                    bounce_events.c.subscriber == subscriber,
                    bounce_events.c.kind == "soft",
                    bounce_events.c.received > start,
                )
            ).all()
        return len({row.digest_id for row in rows if row.digest_id is not None}) + sum(
            1 for row in rows if row.digest_id is None
        )

    def suppress(
        self, subscriber: str, reason: str, now: datetime, *, status: str | None, diagnostic: str | None
    ) -> bool:
        """Put the address on the suppression list for this reason; True when that changed
        anything. An existing entry stays, except that a complaint replaces any other reason."""
        values = {"reason": reason, "status": status, "diagnostic": diagnostic, "since": now, "detail": None}
        with self.engine.begin() as connection:
            current = connection.execute(
                select(suppressions.c.reason).where(suppressions.c.subscriber == subscriber)
            ).first()
            if current is None:
                connection.execute(insert(suppressions).values(subscriber=subscriber, **values))
                return True
            if reason == COMPLAINT and current.reason != COMPLAINT:
                connection.execute(
                    update(suppressions).where(suppressions.c.subscriber == subscriber).values(**values)
                )
                return True
        return False

    def suppression(self, subscriber: str) -> Suppression | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(*suppressions.c).where(suppressions.c.subscriber == subscriber)
            ).first()
        return Suppression(row.reason, row.since, row.status, row.diagnostic, row.detail) if row else None

    def suppressions(self) -> Suppressions[Suppression]:
        """The suppression list with each entry whole, looked up as the send looks it up."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(*suppressions.c)).all()
        entries = {
            r.subscriber: Suppression(r.reason, r.since, r.status, r.diagnostic, r.detail) for r in rows
        }
        return Suppressions.of(self.store, entries)

    def reactivate(self, subscriber: str, now: datetime) -> None:
        """Lift a bounce suppression, and count soft failures from now on only."""
        with self.engine.begin() as connection:
            connection.execute(
                delete(suppressions).where(
                    suppressions.c.subscriber == subscriber, suppressions.c.reason.in_(sorted(BOUNCED))
                )
            )
            connection.execute(
                insert(bounce_events).values(subscriber=subscriber, kind=REACTIVATED, received=now)
            )

    # --- rates --------------------------------------------------------------------------------

    def run_rates(self, runs: int = 5) -> list[RunRate]:
        """The last `runs` sends (digests of one frequency issued at one moment), newest first,
        with the addresses among them that bounced hard or complained about them."""
        sent = digests.c.state == "sent"
        with self.engine.connect() as connection:
            latest = connection.execute(
                select(digests.c.frequency, digests.c.issued, func.count().label("sent"))
                .where(sent)
                .group_by(digests.c.frequency, digests.c.issued)
                .order_by(digests.c.issued.desc())
                .limit(runs)
            ).all()
            rates = []
            for row in latest:
                of_run = and_(
                    bounce_events.c.digest_id == digests.c.id,
                    digests.c.frequency == row.frequency,
                    digests.c.issued == row.issued,
                )
                rows = connection.execute(
                    select(bounce_events.c.kind, func.count(func.distinct(bounce_events.c.subscriber)))
                    .select_from(bounce_events.join(digests, of_run))
                    .where(bounce_events.c.kind.in_(["hard", "complaint"]))
                    .group_by(bounce_events.c.kind)
                ).all()
                counts = {kind: int(count) for kind, count in rows}
                rates.append(
                    RunRate(
                        row.frequency, row.issued, row.sent, counts.get("hard", 0), counts.get("complaint", 0)
                    )
                )
        return rates


def state_of(reason: str) -> str:
    """An address's state, in `subscribers list`'s words, from its suppression reason."""
    if reason == "unsubscribed":
        return "unsubscribed"
    if reason == COMPLAINT:
        return "complained"
    return "bounced" if reason in BOUNCED else "suppressed"


def why(entry: Suppression) -> str:
    """The reason of a suppression with the report's status and diagnostic, on one line."""
    parts = [entry.reason]
    if entry.status:
        parts.append(entry.status)
    text = entry.diagnostic or entry.detail
    if text:
        parts.append(text if len(text) <= 120 else text[:119] + "…")
    return ", ".join(parts)


def describe(entry: Suppression) -> str:
    """The state and why, as `subscribers list` shows it: `bounced (hard bounce, 5.1.1, …)`,
    `unsubscribed (web page)`."""
    state = state_of(entry.reason)
    text = why(entry)
    if entry.reason == state:  # `unsubscribed (unsubscribed, …)` says it twice
        text = text.removeprefix(entry.reason).removeprefix(", ")
    return f"{state} ({text})" if text else state
