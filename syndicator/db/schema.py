"""The database schema: every table, and the migrations that bring a database to it.

`schema_version` holds the number of migrations applied. Opening a store applies the missing
ones in order, in one transaction (syndicator/db/store.py): DDL included, on SQLite as on
PostgreSQL, so a migration that fails half-way leaves the database at its old version.
Datetimes are stored as naive UTC and come back aware, in UTC: the site's zone
(`site.timezone`) is applied where a local day or time is shown or counted, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
)
from sqlalchemy.types import TypeDecorator


class AwareDateTime(TypeDecorator[datetime]):
    """An aware datetime, kept as naive UTC in the database and returned aware, in UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

terms = Table(
    "terms",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("vocabulary", String(20), nullable=False),
    Column("key", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("url", Text),
    # The file name of the term's feeds, given once and kept: feed readers hold its URL.
    Column("slug", String(200)),
    UniqueConstraint("vocabulary", "key"),
    UniqueConstraint("vocabulary", "slug"),
)

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("url", Text, nullable=False, unique=True),
    Column("file", Text, nullable=False),
    Column("file_key", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("type_id", ForeignKey("terms.id")),
    Column("published", Date, index=True),
    Column("modified", AwareDateTime),
    Column("event_start", AwareDateTime),
    Column("event_end", AwareDateTime),
    Column("summary", Text, nullable=False),
    Column("body_html", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("first_seen", AwareDateTime, nullable=False, index=True),
    Column("last_changed", AwareDateTime, nullable=False, index=True),
)

item_terms = Table(
    "item_terms",
    metadata,
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("term_id", ForeignKey("terms.id"), primary_key=True, index=True),
    Column("position", Integer, nullable=False),
)

attachments = Table(
    "attachments",
    metadata,
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("url", Text, nullable=False),
    Column("size_bytes", BigInteger),
    Column("mime_type", String(200)),
)

files = Table(
    "files",
    metadata,
    Column("path", Text, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("url", Text),
)


feed_files = Table(
    "feed_files",
    metadata,
    Column("path", String(500), primary_key=True),  # relative to feeds.output
    Column("signature", String(64), nullable=False),  # of what the file was built from
)

state = Table(
    "state",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)


# The delivery ledger: a row per digest, written before it is delivered.
digests = Table(
    "digests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber", String(320), nullable=False, index=True),  # the address, lower-case
    Column("frequency", String(20), nullable=False),
    Column("since", AwareDateTime),  # the window: items first seen after this (None: the first)
    Column("issued", AwareDateTime, nullable=False),
    Column("message_id", String(300), nullable=False, unique=True),
    Column("state", String(10), nullable=False, index=True),  # pending, sending, sent, failed
    Column("message", LargeBinary),  # the bytes to deliver; dropped once sent
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("claimed_by", String(200)),  # the claim token of the worker delivering it
    Column("claimed_at", AwareDateTime),
    Column("sent_at", AwareDateTime),
)

# What each subscriber has been sent: the unique pair is what keeps an item from going twice.
digest_items = Table(
    "digest_items",
    metadata,
    Column("digest_id", ForeignKey("digests.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("subscriber", String(320), nullable=False),
    Column("item_id", ForeignKey("items.id"), nullable=False),
    UniqueConstraint("subscriber", "item_id"),
)

# Addresses that must receive nothing: unsubscribed, or rejected as invalid by the mail server.
suppressions = Table(
    "suppressions",
    metadata,
    Column("subscriber", String(320), primary_key=True),
    Column("reason", String(50), nullable=False),
    Column("detail", Text),
    Column("since", AwareDateTime, nullable=False),
    Column("status", String(20)),  # a bounce's enhanced status code (5.1.1), when it has one
    Column("diagnostic", Text),  # what the remote server said, from the delivery report
)


# A subscriber's own choices, made on the web: they win over config.yaml for that address.
# A row for an address config.yaml does not list is a subscriber who signed up on the web;
# the consent columns keep the proof of their double opt-in. Lists are JSON arrays of names.
subscriber_choices = Table(
    "subscriber_choices",
    metadata,
    Column("subscriber", String(320), primary_key=True),  # the address, lower-case
    Column("email", String(320), nullable=False),  # as the subscriber typed it
    Column("name", String(300)),
    Column("frequency", String(20), nullable=False),
    Column("thematiques", Text, nullable=False, default="[]"),
    Column("territoires", Text, nullable=False, default="[]"),
    Column("types", Text, nullable=False, default="[]"),
    Column("updated", AwareDateTime, nullable=False),
    Column("consent_at", AwareDateTime),  # when the confirmation link was followed
    Column("consent_ip", String(64)),  # the address the sign-up form came from
    Column("consent_wording", String(50)),  # version of the consent text they agreed to
    Column("consent_notice", String(40)),  # version of the privacy notice shown beside it
)

# Sign-ups waiting for their confirmation link to be followed; they expire unconfirmed.
signup_requests = Table(
    "signup_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber", String(320), nullable=False, index=True),
    Column("email", String(320), nullable=False),
    Column("name", String(300)),
    Column("frequency", String(20), nullable=False),
    Column("thematiques", Text, nullable=False, default="[]"),
    Column("territoires", Text, nullable=False, default="[]"),
    Column("types", Text, nullable=False, default="[]"),
    Column("ip", String(64), nullable=False, index=True),
    Column("consent_wording", String(50), nullable=False),
    Column("consent_notice", String(40)),  # version of the privacy notice shown
    Column("created", AwareDateTime, nullable=False, index=True),
    Column("expires", AwareDateTime, nullable=False),
    Column("confirmed", AwareDateTime),
)


# A send shared by any number of workers (syndicator/db/runs.py): a row per run, numbered per
# frequency ("all" for every one), so that workers started together join the same one; a row per
# subscriber due in it, claimed by one worker at a time under a lease. Lease times are seconds
# since the epoch on the database server's clock, never a worker's.
send_runs = Table(
    "send_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("frequency", String(20), nullable=False),  # a frequency, or "all"
    Column("number", Integer, nullable=False),  # 1, 2, 3... per frequency
    Column("issued", AwareDateTime, nullable=False),  # the moment every digest of the run carries
    Column("finished", AwareDateTime),
    UniqueConstraint("frequency", "number"),
)

send_claims = Table(
    "send_claims",
    metadata,
    Column("run_id", ForeignKey("send_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("subscriber", String(320), primary_key=True),
    Column("state", String(10), nullable=False, index=True),  # due, claimed, done
    Column("token", String(64), index=True),  # the claim that holds it (random, per batch)
    Column("expires", Float),  # the claim's lease, on the database's clock
    Column("outcome", String(20)),  # sent, empty, failed, suppressed, ... once done
)

send_workers = Table(
    "send_workers",
    metadata,
    Column("token", String(64), primary_key=True),  # random, per worker
    Column("run_id", ForeignKey("send_runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(300), nullable=False),  # what `status` shows: host and pid, for people
    Column("expires", Float, nullable=False),  # alive while its heartbeat keeps this ahead
)


_V1_TABLES = (
    *("schema_version", "terms", "items", "item_terms", "attachments", "files", "feed_files"),
    *("state", "digests", "digest_items", "suppressions"),
)


def _v1_initial(connection: Connection) -> None:
    metadata.create_all(connection, tables=[metadata.tables[name] for name in _V1_TABLES])


def _v2_web_choices(connection: Connection) -> None:
    metadata.create_all(connection, tables=[subscriber_choices, signup_requests])


# Columns that held bounded strings up to version 2: a URL, path or term name longer than the
# bound made PostgreSQL refuse the row. They are kept whole now.
_WIDENED = {"items": ("url",), "terms": ("key", "name"), "files": ("path", "url")}


def _v3_unbounded_texts(connection: Connection) -> None:
    if connection.dialect.name != "postgresql":
        return  # SQLite never enforced the bounds: its columns already keep any length
    for table, columns in _WIDENED.items():
        for column in columns:
            connection.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE TEXT")


# The pace of every worker's messages together (`email.rate_per_second`): the moment, on the
# database's clock, from which the next message may leave.
send_pace = Table(
    "send_pace",
    metadata,
    Column("key", String(20), primary_key=True),
    Column("next_at", Float, nullable=False),
)


def _v4_send_runs(connection: Connection) -> None:
    metadata.create_all(connection, tables=[send_runs, send_claims, send_workers, send_pace])
    connection.execute(send_pace.insert().values(key="smtp", next_at=0.0))  # workers only update it


# What the bounce mailbox said about each address (syndicator/bounces/reading.py): a row per hard or
# soft failure and per complaint, and one when an admin lifted a bounce (`reactivated`), from
# which soft failures count again. `digest_id` is the digest it is about, when known.
bounce_events = Table(
    "bounce_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber", String(320), nullable=False, index=True),  # the mailbox, lower-case
    Column("kind", String(20), nullable=False),  # hard, soft, complaint, reactivated
    Column("status", String(20)),
    Column("diagnostic", Text),
    Column("digest_id", Integer, index=True),  # no foreign key: the digest's row may be purged
    Column("received", AwareDateTime, nullable=False, index=True),
)


def _v5_bounces(connection: Connection) -> None:
    metadata.create_all(connection, tables=[bounce_events])
    present = {column["name"] for column in inspect(connection).get_columns("suppressions")}
    for name, kind in (("status", "VARCHAR(20)"), ("diagnostic", "TEXT")):
        if name not in present:  # a database made at version 1 by this code has them already
            connection.exec_driver_sql(f"ALTER TABLE suppressions ADD COLUMN {name} {kind}")


# What the ledger keeps of digests older than `privacy.retention.ledger_months`: counts per
# month, frequency and state, with no address (syndicator/privacy/retention.py).
ledger_counts = Table(
    "ledger_counts",
    metadata,
    Column("month", String(7), primary_key=True),  # YYYY-MM of `issued`, in UTC
    Column("frequency", String(20), primary_key=True),
    Column("state", String(10), primary_key=True),
    Column("digests", Integer, nullable=False),
    Column("items", Integer, nullable=False),
)

# A subscriber's requests for the email holding their data (syndicator/web/export.py): counted
# for the rate limits, deleted after a day.
export_requests = Table(
    "export_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber", String(320), nullable=False),  # the address's mailbox
    Column("ip", String(64), nullable=False),
    Column("created", AwareDateTime, nullable=False, index=True),
)

# The columns the privacy-notice migration adds; a database made by the earlier migrations
# from today's tables already has them.
_NOTICE_COLUMNS = {"subscriber_choices": "consent_notice", "signup_requests": "consent_notice"}


def _v6_privacy(connection: Connection) -> None:
    inspector = inspect(connection)
    for table, column in _NOTICE_COLUMNS.items():
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            connection.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} VARCHAR(40)")
    metadata.create_all(connection, tables=[ledger_counts, export_requests])


Migration = Callable[[Connection], None]
"""One step of the schema, given the connection of the transaction that applies them all."""

# Append-only: a released migration is never edited, a new one is added at the end.
MIGRATIONS: Sequence[Migration] = (
    _v1_initial,
    _v2_web_choices,
    _v3_unbounded_texts,
    _v4_send_runs,
    _v5_bounces,
    _v6_privacy,
)
