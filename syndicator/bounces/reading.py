"""Reading the bounce mailbox: each message read (bounces/parse.py), tied to a subscriber, and
the rules applied; then moved to `processed`, or to `unrecognised` for a person. Never deleted.

Who a report is about, in this order:
1. the VERP token of the envelope sender it came back to (verp.py), when it opens: it names
   the digest, and so the subscriber;
2. the report's recipient (`Original-Recipient`, then `Final-Recipient`, or what the detectors
   found), when syndicator sent a digest to that address within `soft_days`;
3. the returned message's `Message-ID`, when it is that of a digest sent within `soft_days`.
A report without a valid token cannot suppress someone syndicator did not mail lately: a forged
bounce naming any address does nothing. A report about nobody is `unrecognised`.

The rules: a hard failure (5.x.x) suppresses at once; soft ones (4.x.x) are counted and
`soft_limit` of them within `soft_days` suppress; a complaint suppresses at once, for good.
Auto-replies and challenge-responses are `ignored`. Each suppression keeps its reason, status
and diagnostic.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from syndicator.addresses import mailbox
from syndicator.bounces.imap import ImapMailbox
from syndicator.bounces.mailbox import BounceMailbox, MailboxMessage, MailboxUnavailable, MaildirMailbox
from syndicator.bounces.parse import Failure, Reading, read_message
from syndicator.config.model import BouncesConfig, Config
from syndicator.db.bounces import COMPLAINT, HARD, SOFT, BounceRecords
from syndicator.db.store import Store
from syndicator.errors import Problem
from syndicator.i18n import N_
from syndicator.mail.verp import find_token, token_opens

log = logging.getLogger("syndicator.bounces")


@dataclass(slots=True)
class BounceReport:
    """What one reading of the bounce mailbox did."""

    hard: int = 0
    soft: int = 0
    complaints: int = 0
    ignored: int = 0
    unrecognised: int = 0
    suppressed: list[str] = field(default_factory=list)  # the addresses suppressed by this reading
    notes: list[str] = field(default_factory=list)  # `key: why`, for each message left for a person
    warnings: list[str] = field(default_factory=list)  # about the mailbox itself

    def summary(self) -> str:
        return N_(
            "{hard} hard, {soft} soft, {complaints} complaints, {ignored} ignored, "
            "{unrecognised} unrecognised",
            hard=self.hard, soft=self.soft, complaints=self.complaints, ignored=self.ignored,
            unrecognised=self.unrecognised,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Match:
    subscriber: str
    failure: Failure
    digest_id: int | None
    how: str  # "VERP token", "recipient", "Message-ID"


def open_mailbox(config: Config) -> BounceMailbox:
    """The bounce mailbox `email.bounces` names (`config.email.bounces` must be set): its IMAP
    folder when `imap` is set, else its Maildir."""
    settings = config.email.bounces
    assert settings is not None
    if settings.imap is not None:
        imap = settings.imap
        if imap.ca_file is not None:  # relative to the config file's folder, like every path
            imap = imap.model_copy(update={"ca_file": config.resolve(imap.ca_file)})
        return ImapMailbox(imap, max_bytes=settings.max_bytes)
    return MaildirMailbox(config.resolve(settings.maildir), max_bytes=settings.max_bytes)


def mailbox_name(config: Config) -> str:
    """The bounce mailbox as messages name it: the Maildir's path, or imap://host/folder."""
    settings = config.email.bounces
    assert settings is not None
    if settings.imap is not None:
        return f"imap://{settings.imap.host}/{settings.imap.folder}"
    return str(config.resolve(settings.maildir))


def _identify(
    reading: Reading, records: BounceRecords, settings: BouncesConfig, keys: Sequence[str], now: datetime
) -> tuple[list[_Match], str]:
    """The subscribers the report is about, and, when none, why."""
    worst = next(f for f in reading.failures if f.kind == reading.kind)
    since = now - timedelta(days=settings.soft_days)
    note = ""
    if settings.address:
        token = next((t for text in reading.envelope if (t := find_token(text, settings.address))), None)
        if token is not None:
            subscriber = records.digest_subscriber(token.digest_id)
            if subscriber is not None and token_opens(keys, token, subscriber):
                mine = [
                    f for f in reading.failures if f.recipient and mailbox(f.recipient) == mailbox(subscriber)
                ]
                return [_Match(subscriber, mine[0] if mine else worst, token.digest_id, "VERP token")], ""
            note = f"a VERP token that does not open (d{token.digest_id}); "
            log.warning("bounce with a VERP token that does not open: digest %s", token.digest_id)
    found: dict[str, _Match] = {}
    for failure in reading.failures:
        if failure.recipient is None:
            continue
        sent = records.sent_since(failure.recipient, since)
        if sent is not None and sent[1] not in found:
            found[sent[1]] = _Match(sent[1], failure, sent[0], "recipient")
    if len(found) > 1:  # each digest goes to one address: a report about several is made up
        return [], f"names {len(found)} subscribers without a VERP token: {', '.join(sorted(found))}"
    if found:
        return list(found.values()), ""
    for message_id in reading.message_ids:
        digest = records.digest_with_message_id(message_id, since)
        if digest is not None:
            return [_Match(digest[1], worst, digest[0], "Message-ID")], ""
    named = ", ".join(sorted({f.recipient for f in reading.failures if f.recipient})) or "no recipient"
    return [], f"{note}names {named}, to which no digest was sent in the last {settings.soft_days} days"


def _apply(match: _Match, kind: str, records: BounceRecords, settings: BouncesConfig, now: datetime) -> bool:
    """Record the event and apply the rules; True when the address was suppressed now."""
    failure = match.failure
    records.record(
        match.subscriber, kind, now, status=failure.status, diagnostic=failure.diagnostic,
        digest_id=match.digest_id,
    )  # fmt: skip
    if kind == "complaint":
        return records.suppress(match.subscriber, COMPLAINT, now, status=None, diagnostic=failure.diagnostic)
    if kind == "hard":
        return records.suppress(
            match.subscriber, HARD, now, status=failure.status, diagnostic=failure.diagnostic
        )
    count = records.soft_count(match.subscriber, now - timedelta(days=settings.soft_days))
    if count < settings.soft_limit:
        return False
    diagnostic = f"{count} soft failures in {settings.soft_days} days; last: {failure.diagnostic or '?'}"
    return records.suppress(match.subscriber, SOFT, now, status=failure.status, diagnostic=diagnostic)


def _one(
    message: MailboxMessage,
    *,
    records: BounceRecords,
    settings: BouncesConfig,
    keys: Sequence[str],
    now: datetime,
    report: BounceReport,
) -> str:
    """Handle one message; the folder it goes to."""
    if message.raw is None:
        report.unrecognised += 1
        report.notes.append(
            f"{message.key}: {message.size} bytes, larger than email.bounces.max_bytes "
            f"({settings.max_bytes}): not read"
        )
        return "unrecognised"
    reading = read_message(message.raw)
    if reading.kind == "ignored":
        report.ignored += 1
        log.info("bounce mailbox %s: ignored: %s", message.key, reading.why)
        return "processed"
    if reading.kind == "unrecognised":
        report.unrecognised += 1
        report.notes.append(f"{message.key}: {reading.why}")
        return "unrecognised"
    matches, why = _identify(reading, records, settings, keys, now)
    if not matches:
        report.unrecognised += 1
        report.notes.append(f"{message.key}: {reading.format}, {reading.kind}: {why}")
        return "unrecognised"
    for match in matches:
        if _apply(match, match.failure.kind, records, settings, now):
            report.suppressed.append(match.subscriber)
        log.info(
            "bounce mailbox %s: %s for %s (by %s): %s",
            message.key, reading.kind, match.subscriber, match.how,
            match.failure.diagnostic or match.failure.status,
        )  # fmt: skip
    if reading.kind == "hard":
        report.hard += 1
    elif reading.kind == "soft":
        report.soft += 1
    else:
        report.complaints += 1
    return "processed"


def read_bounces(
    store: Store, settings: BouncesConfig, mailbox_: BounceMailbox, keys: Sequence[str], now: datetime
) -> BounceReport:
    """Read every message of the mailbox's inbox once, apply the rules, and move each message
    to `processed` or `unrecognised`. A message is moved only after what it said is recorded:
    a crash in between reads it again next time (soft failures count once per digest)."""
    records = BounceRecords(store)
    report = BounceReport()
    with mailbox_ as box:
        for message in box.messages():
            folder = _one(message, records=records, settings=settings, keys=keys, now=now, report=report)
            try:
                box.move(message.key, "unrecognised" if folder == "unrecognised" else "processed")
            except FileNotFoundError:
                log.info("bounce mailbox %s: moved meanwhile by another reader", message.key)
            except OSError as error:
                report.notes.append(f"{message.key}: could not be moved to {folder}: {error}")
    for note in report.notes:
        log.warning("bounce mailbox %s", note)
    return report


def _no_maildir_yet(path: Path) -> str:
    return N_(
        "{path}: warning: no Maildir there yet, nothing to read (Postfix and Dovecot make it with "
        "the first message they deliver; if none is on its way, check email.bounces.maildir)",
        path=path,
    )


def check_bounces(store: Store, config: Config, keys: Sequence[str], now: datetime) -> BounceReport:
    """Read the configured bounce mailbox once; `MailboxUnavailable` when it cannot be read.

    A Maildir that does not exist yet is empty, with a warning: mail servers make it when they
    deliver the first message. One that exists and is not a Maildir is unavailable."""
    settings = config.email.bounces
    assert settings is not None
    if settings.imap is not None:  # MailboxUnavailable says which server and why
        return read_bounces(store, settings, open_mailbox(config), keys, now)
    path = config.resolve(settings.maildir)
    if not os.path.lexists(path):
        report = BounceReport(warnings=[_no_maildir_yet(path)])
        log.warning("%s", report.warnings[0])
        return report
    mailbox_ = open_mailbox(config)
    try:
        return read_bounces(store, settings, mailbox_, keys, now)
    except OSError as error:
        if isinstance(error, MailboxUnavailable):
            raise
        raise MailboxUnavailable(
            f"the bounce mailbox cannot be read: {error}",
            path=str(path),
            hint="check that the Maildir exists and that this user may read and write it",
        ) from error


def bounce_problems(config: Config) -> list[Problem]:
    """For `check`: a bounce Maildir that is not one (an error), or not there yet (a warning)."""
    settings = config.email.bounces
    if settings is None:
        return []
    if settings.imap is not None:  # the server is not contacted; its login must be there
        line = config.line_of(["email", "bounces", "imap"])
        unset = [
            name
            for name in (settings.imap.username_env, settings.imap.password_env)
            if not os.environ.get(name)
        ]
        return [
            Problem(
                config.source, line, f"email.bounces.imap: ${name} is not set in this environment", "warning"
            )
            for name in unset
        ]
    path = config.resolve(settings.maildir)
    line = config.line_of(["email", "bounces", "maildir"]) or config.line_of(["email", "bounces"])
    if not os.path.lexists(path):
        return [Problem(config.source, line, _no_maildir_yet(path).split(": warning: ", 1)[1], "warning")]
    try:
        with MaildirMailbox(path):
            return []
    except MailboxUnavailable as error:
        return [Problem(config.source, line, f"email.bounces.maildir {path}: {error.message}")]
