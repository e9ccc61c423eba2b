"""The delivery ledger: every digest is recorded, with its items, before it is delivered.

States: `pending` (recorded, not yet handed to a transport) → `sending` (claimed by a run) →
`sent` | `failed`. The unique (subscriber, item) pair keeps an item from going to anyone twice.
A run claims a row before delivering it; a row left `sending` by a run that died (same host and
its process gone, or its claim older than the lease) is claimed again and delivered with the
same Message-ID and bytes. The message bytes are kept until the digest is sent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .schema import digest_items, digests, suppressions
from .store import Store

LEASE = timedelta(minutes=15)  # a claim older than this is taken over whatever its host
RUN_ID = f"{socket.gethostname()}:{os.getpid()}:{datetime.now(UTC).timestamp():.0f}"


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One digest as the ledger holds it."""

    id: int
    subscriber: str
    frequency: str
    since: datetime | None
    issued: datetime
    message_id: str
    state: str
    message: bytes | None
    attempts: int
    error: str | None
    sent_at: datetime | None


def _row(row: object) -> LedgerRow:
    return LedgerRow(*(getattr(row, name) for name in LedgerRow.__dataclass_fields__))


def _alive(claimed_by: str | None) -> bool:
    """Whether the run that claimed a row may still be delivering it."""
    if not claimed_by:
        return False
    host, _, rest = claimed_by.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's run: only the lease can tell
    if claimed_by == RUN_ID:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AlreadyRecorded(Exception):
    """Another run recorded a digest holding some of these items for this subscriber first."""


class Ledger:
    """Digests, what they hold, and the suppression list, in the store's database."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    # --- reading --------------------------------------------------------------------------

    def last(self, subscriber: str) -> LedgerRow | None:
        """The subscriber's latest digest, whatever its state."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(*digests.c)
                .where(digests.c.subscriber == subscriber)
                .order_by(digests.c.id.desc())
                .limit(1)
            ).first()
        return _row(row) if row else None

    def lasts(self) -> dict[str, LedgerRow]:
        """Every subscriber's latest digest."""
        latest = select(func.max(digests.c.id)).group_by(digests.c.subscriber).scalar_subquery()
        with self.engine.connect() as connection:
            rows = connection.execute(select(*digests.c).where(digests.c.id.in_(latest)))
            return {row.subscriber: _row(row) for row in rows}

    def sent_items(self, subscriber: str) -> set[int]:
        """The ids of every item already in one of the subscriber's digests."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(digest_items.c.item_id).where(digest_items.c.subscriber == subscriber)
            )
            return {row.item_id for row in rows}

    def sent_by_subscriber(self) -> dict[str, set[int]]:
        """For every subscriber, the ids of the items already in one of their digests."""
        found: dict[str, set[int]] = {}
        with self.engine.connect() as connection:
            for row in connection.execute(select(digest_items.c.subscriber, digest_items.c.item_id)):
                found.setdefault(row.subscriber, set()).add(row.item_id)
        return found

    def sent_on(self, subscriber: str, item_id: int) -> LedgerRow | None:
        """The digest that carried this item to this subscriber, if any."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(*digests.c)
                .join(digest_items, digest_items.c.digest_id == digests.c.id)
                .where(digest_items.c.subscriber == subscriber, digest_items.c.item_id == item_id)
            ).first()
        return _row(row) if row else None

    def unfinished(self, subscriber: str) -> list[LedgerRow]:
        """The subscriber's digests recorded but not confirmed sent or failed, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(*digests.c)
                .where(digests.c.subscriber == subscriber, digests.c.state.in_(("pending", "sending")))
                .order_by(digests.c.id)
            )
            return [_row(row) for row in rows]

    def unfinished_counts(self) -> dict[str, int]:
        """For each subscriber with some, how many digests are recorded but not yet confirmed."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(digests.c.subscriber, func.count())
                .where(digests.c.state.in_(("pending", "sending")))
                .group_by(digests.c.subscriber)
            )
            return {str(subscriber): int(count) for subscriber, count in rows}

    def counts(self) -> dict[str, int]:
        """How many digests are in each state."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(digests.c.state, func.count()).group_by(digests.c.state))
            return {str(state): int(count) for state, count in rows}

    # --- writing --------------------------------------------------------------------------

    def record(
        self,
        *,
        subscriber: str,
        frequency: str,
        since: datetime | None,
        issued: datetime,
        item_ids: Iterable[int],
        message: Callable[[int], tuple[str, bytes]],
    ) -> LedgerRow:
        """Record a digest and its items as `pending`, in one transaction. `message(row id)`
        gives its Message-ID and bytes, so both derive from the row and never change.

        Raises `AlreadyRecorded` when a concurrent run got there first (the unique pair of
        subscriber and item says so); nothing is then written."""
        try:
            with self.engine.begin() as connection:
                values = {
                    "subscriber": subscriber,
                    "frequency": frequency,
                    "since": since,
                    "issued": issued,
                    "message_id": f"<unset-{subscriber}-{issued.timestamp()}>",
                    "state": "pending",
                    "attempts": 0,
                }
                inserted = connection.execute(insert(digests).values(**values)).inserted_primary_key
                digest_id = int(inserted[0]) if inserted else 0
                connection.execute(
                    insert(digest_items),
                    [{"digest_id": digest_id, "subscriber": subscriber, "item_id": i} for i in item_ids],
                )
                message_id, data = message(int(digest_id))
                connection.execute(
                    update(digests)
                    .where(digests.c.id == digest_id)
                    .values(message_id=message_id, message=data)
                )
                row = connection.execute(select(*digests.c).where(digests.c.id == digest_id)).one()
        except IntegrityError:
            raise AlreadyRecorded(subscriber) from None
        return _row(row)

    def claim(self, row: LedgerRow, now: datetime) -> bool:
        """Take a digest for delivery; False when it is done or another living run has it.

        Optimistic: the update only applies if the row is still as it was read, so of two runs
        racing for one row exactly one wins."""
        with self.engine.begin() as connection:
            current = connection.execute(
                select(digests.c.state, digests.c.claimed_by, digests.c.claimed_at).where(
                    digests.c.id == row.id
                )
            ).one()
            if current.state == "sending":
                fresh = current.claimed_at is not None and now - current.claimed_at < LEASE
                if _alive(current.claimed_by) and fresh:
                    return False
            elif current.state != "pending":
                return False
            same_claim = (
                digests.c.claimed_by.is_(None)
                if current.claimed_by is None
                else digests.c.claimed_by == current.claimed_by
            )
            result = connection.execute(
                update(digests)
                .where(digests.c.id == row.id, digests.c.state == current.state, same_claim)
                .values(state="sending", claimed_by=RUN_ID, claimed_at=now, attempts=digests.c.attempts + 1)
            )
            return bool(result.rowcount)

    def sent(self, row: LedgerRow, now: datetime) -> None:
        """The transport accepted the digest: done, and its bytes are no longer kept."""
        with self.engine.begin() as connection:
            connection.execute(
                update(digests)
                .where(digests.c.id == row.id)
                .values(state="sent", sent_at=now, message=None, error=None)
            )

    def failed(self, row: LedgerRow, error: str, *, final: bool) -> None:
        """Delivery failed: for good (`failed`), or to be tried again by a later run (`pending`)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(digests)
                .where(digests.c.id == row.id)
                .values(state="failed" if final else "pending", error=error[:2000], claimed_by=None)
            )

    # --- suppression list -------------------------------------------------------------------

    def suppress(self, subscriber: str, reason: str, now: datetime, detail: str | None = None) -> None:
        """Add an address to the suppression list (idempotent: the first reason stays)."""
        with self.engine.begin() as connection:
            if connection.execute(
                select(suppressions.c.subscriber).where(suppressions.c.subscriber == subscriber)
            ).first():
                return
            connection.execute(
                insert(suppressions).values(subscriber=subscriber, reason=reason, detail=detail, since=now)
            )

    def unsuppress(self, subscriber: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(suppressions).where(suppressions.c.subscriber == subscriber))

    def suppressed(self) -> dict[str, tuple[str, datetime]]:
        """Every suppressed address with its reason and since when."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(suppressions.c.subscriber, suppressions.c.reason, suppressions.c.since)
            )
            return {row.subscriber: (row.reason, row.since) for row in rows}
