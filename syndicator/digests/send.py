"""Building and delivering digests: the ledger first, then the transport, one subscriber at a time.

For each subscriber considered: digests a previous run recorded but did not confirm go first,
with their original Message-ID and bytes; then the next digest is chosen (syndicator/digest.py),
rendered, recorded in the ledger as `pending` with its items, claimed, and handed to the
transport. Suppressed addresses receive nothing.

Whatever goes wrong while one subscriber's digest is built (an address the message cannot
carry, a template error...) is that subscriber's failure alone: recorded in the ledger with its
reason (`unbuilt`, its items kept for the next run), counted as failed, and the others go out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, partial
from threading import Event

from jinja2 import Environment
from sqlalchemy.exc import DBAPIError

from syndicator.addresses import on_the_wire
from syndicator.config.model import Config, Frequency
from syndicator.config.subscribers import Subscriber
from syndicator.db.choices import effective_subscribers
from syndicator.db.ledger import AlreadyRecorded, Ledger, LedgerRow
from syndicator.db.runs import Claim, Fenced, Heartbeat, Runs, SharedPace, retrying
from syndicator.db.store import Store
from syndicator.db.tokens import Signer, secret_keys
from syndicator.digests.render import render_digest
from syndicator.digests.select import Candidate, Digest, DigestLinks, Pool, build_digest, newest_first
from syndicator.errors import SyndicatorError
from syndicator.i18n import N_
from syndicator.mail.dkim import DkimKey, load_key, sign
from syndicator.mail.messages import Envelope, RenderedEmail, address, digest_bytes, message_id
from syndicator.mail.smtp import SmtpTransport
from syndicator.mail.transports import OutboxTransport, Outgoing, Result, Transport
from syndicator.mail.verp import make_token, verp_address
from syndicator.parsing.items import NewsItem
from syndicator.privacy.notice import notice
from syndicator.taxonomy.matching import Interests, MatchIndex, matches, verdicts
from syndicator.taxonomy.territoires import Hierarchy
from syndicator.templating import environment

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
BATCH = 50  # subscribers a worker claims at once: built, recorded, then delivered together


@dataclass(slots=True)
class SendReport:
    """What one send did, one outcome per subscriber considered."""

    sent: int = 0
    empty: int = 0
    failed: int = 0  # of which `temporary` are left pending for the next run
    suppressed: int = 0
    temporary: int = 0
    stopped: int = 0  # left pending because the run was asked to stop (SIGTERM)
    errors: list[str] = field(default_factory=list)  # "address: reason", one per failed subscriber

    @property
    def considered(self) -> int:
        return self.sent + self.empty + self.failed + self.suppressed + self.stopped

    def summary(self) -> str:
        failed = N_("failed {failed}", failed=self.failed)
        if self.failed:
            failed = N_(
                "failed {failed} ({temporary} temporary, {permanent} permanent)",
                failed=self.failed, temporary=self.temporary, permanent=self.failed - self.temporary,
            )  # fmt: skip
        stopped = N_(", stopped before sending {stopped}", stopped=self.stopped) if self.stopped else ""
        return N_(
            "sent {sent}, empty {empty}, {failed}, suppressed {suppressed}{stopped}",
            sent=self.sent, empty=self.empty, failed=failed, suppressed=self.suppressed, stopped=stopped,
        )  # fmt: skip


def dkim_key(config: Config) -> DkimKey | None:
    """The DKIM key `email.dkim` names, loaded and checked; None when signing is off."""
    settings = config.email.dkim
    if settings is None:
        return None
    domain = settings.domain or address(config.email.from_).domain
    return load_key(config.resolve(settings.key), settings.selector, domain)


def transport_for(config: Config) -> Transport:
    """The transport `email.transport` names."""
    if config.email.transport == "smtp":
        return SmtpTransport.from_config(config)
    return OutboxTransport(config.resolve(config.email.outbox))


class Digests:
    """Everything one run needs to build digests: the store's items, the ledger, the links."""

    def __init__(
        self, store: Store, config: Config, *, now: datetime, env: Environment | None = None
    ) -> None:
        self.store, self.config, self.now = store, config, now
        self.ledger = Ledger(store)
        self.env = env or environment(config.templates_path, config.site.zone)
        self.privacy = notice(config)
        self.hierarchy, _ = Hierarchy.load(config.territoires)
        self.keys = keys = secret_keys(store)
        self.unsubscribe, self.preferences = Signer(keys, "unsubscribe"), Signer(keys, "preferences")
        widest = max(config.email.lookback_days.model_dump().values())
        oldest = now - timedelta(days=widest + 1)
        stamps = [s for s in store.item_stamps() if (s.published or s.first_seen.date()) >= oldest.date()]
        loaded = store.items_by_id(s.id for s in stamps)
        # Newest first once and for all: every digest keeps this order.
        self.candidates = newest_first(
            (Candidate(s.id, loaded[s.id], s.first_seen) for s in stamps), config.site.zone
        )
        self.ids = {c.item.url: c.id for c in self.candidates}
        self.index = MatchIndex([c.item for c in self.candidates], self.hierarchy)
        self.lasts = self.ledger.lasts()
        # Only what can still be chosen (a day wider, whatever the zone of the dates): the
        # ledger holds every item ever sent to anyone.
        self.sent = self.ledger.sent_by_subscriber(oldest.date() - timedelta(days=1))
        self.dkim = dkim_key(config)
        # config.yaml's, with their own choices made on the web, and the web sign-ups
        self.everyone = effective_subscribers(config, store)

    def subscribers(self, frequency: Frequency | None = None) -> list[Subscriber]:
        return [s for s in self.everyone if frequency is None or s.frequency == frequency]

    def subscriber(self, email: str) -> Subscriber | None:
        wanted = email.strip().lower()
        return next((s for s in self.subscribers() if s.key == wanted), None)

    def interests(self, subscriber: Subscriber) -> Interests:
        return Interests.of(subscriber.thematiques, subscriber.territoires, subscriber.types, self.hierarchy)

    @cached_property
    def pool(self) -> Pool:
        """The candidates laid out for choosing, once per run."""
        return Pool(self.candidates, self.config.site.zone)

    def next_digest(self, subscriber: Subscriber) -> Digest | None:
        """The digest this subscriber would get now; None when nothing new matches."""
        last = self.lasts.get(subscriber.key)
        chosen = self.pool.choose(
            self.index.matching(self.interests(subscriber)),
            sent=self.sent.get(subscriber.key, set()),
            since=last.issued if last else None,
            now=self.now,
            lookback_days=self.config.email.lookback_days.days(subscriber.frequency),
        )
        return build_digest(
            subscriber, self.pool.items_at(chosen), since=last.issued if last else None,
            issued=self.now, max_items=self.config.email.max_items,
        )  # fmt: skip

    def sample_digest(self, subscriber: Subscriber, *, chunk: int = 500) -> Digest | None:
        """The latest stored items that match the subscriber's interests, sent already or old,
        up to email.max_items, as a digest (newest first); None when no item matches at all.
        For `digest preview` when nothing is new: what their digest looks like."""
        interests, wanted = self.interests(subscriber), self.config.email.max_items
        zone = self.config.site.zone
        stamps = sorted(
            self.store.item_stamps(),
            key=lambda s: (s.published or s.first_seen.astimezone(zone).date(), s.first_seen, s.url),
            reverse=True,
        )
        chosen: list[NewsItem] = []
        for start in range(0, len(stamps), chunk):  # newest first, loaded only as far as needed
            part = stamps[start : start + chunk]
            loaded = self.store.items_by_id(s.id for s in part)
            chosen += [loaded[s.id] for s in part if matches(interests, loaded[s.id], self.hierarchy)]
            if len(chosen) >= wanted:
                break
        return build_digest(subscriber, chosen[:wanted], since=None, issued=self.now, max_items=wanted)

    def links(self, subscriber: Subscriber) -> DigestLinks:
        web = self.config.web.base_url.rstrip("/")
        return DigestLinks(
            feeds_index=self.config.site.feeds_url.rstrip("/") + "/index.html",
            unsubscribe=f"{web}/unsubscribe/{self.unsubscribe.sign(subscriber.key)}",
            preferences=f"{web}/preferences/{self.preferences.sign(subscriber.key)}",
        )

    def envelope_sender(self, digest_id: int, subscriber: str) -> str:
        """The MAIL FROM of a digest: with `email.bounces.address`, its VERP address (verp.py)."""
        bounces = self.config.email.bounces
        if bounces is None or bounces.address is None:
            return self.config.email.from_
        return verp_address(bounces.address, make_token(self.keys, digest_id, subscriber))

    def render(self, digest: Digest) -> RenderedEmail:
        return render_digest(self.env, digest, self.links(digest.subscriber), self.config.site, self.privacy)

    def message(
        self, digest: Digest, rendered: RenderedEmail, digest_id: int, *, unsubscribe: str | None = None
    ) -> tuple[str, bytes]:
        """The Message-ID and bytes of a digest recorded under `digest_id` (`unsubscribe`: its
        link, when the caller has it already)."""
        subscriber = digest.subscriber
        mid = message_id(digest_id, subscriber.key, self.config.email.from_)
        envelope = Envelope(
            sender=self.config.email.from_,
            recipient=subscriber.email,
            recipient_name=subscriber.name,
            message_id=mid,
            date=digest.issued.astimezone(self.config.site.zone),  # the Date header in local time
            list_name=self.config.site.title,
            unsubscribe_url=unsubscribe or self.links(subscriber).unsubscribe,
        )
        data = digest_bytes(rendered, envelope)  # the bytes of emails.build_message, made quicker
        # Signed here, so the ledger keeps the signed bytes and a re-send after a crash is the
        # very same message.
        return mid, sign(data, self.dkim) if self.dkim else data

    def record(self, digest: Digest, *, claim: str | None = None) -> LedgerRow:
        """Write the digest and its items to the ledger as `pending` (refused with `Fenced` when
        `claim`, the token holding its subscriber, ran out)."""
        links = self.links(digest.subscriber)  # signed once for both the body and the headers
        rendered = render_digest(self.env, digest, links, self.config.site, self.privacy)
        item_ids = [self.ids[item.url] for item in digest.items]
        row = self.ledger.record(
            subscriber=digest.subscriber.key,
            frequency=digest.subscriber.frequency,
            since=digest.since,
            issued=digest.issued,
            item_ids=item_ids,
            message=lambda digest_id: self.message(
                digest, rendered, digest_id, unsubscribe=links.unsubscribe
            ),
            claim=claim,
        )
        # A later digest of this run would build on this one: nothing first seen before its
        # issue, which rules out its items without keeping their ids (10,000 digests of 600
        # items would be 6 million of them). Its bytes are not kept either.
        self.lasts[row.subscriber] = dataclasses.replace(row, message=None)
        return row


@dataclass(slots=True)
class _Pending:
    """A recorded digest waiting for the transport, and whose subscriber it is."""

    row: LedgerRow
    subscriber: Subscriber


@dataclass(slots=True)
class Built:
    """A batch built: the digests to deliver (those recorded now, and those earlier runs left
    unconfirmed) and the subscribers who have a new digest."""

    pending: list[_Pending] = field(default_factory=list)
    subscribers: set[str] = field(default_factory=set)
    unbuilt: dict[str, str] = field(default_factory=dict)  # the reason, by subscriber key
    lost: set[str] = field(default_factory=set)  # fenced: the claim ran out, another worker has them


def build_batch(
    digests: Digests,
    batch: Sequence[Subscriber],
    *,
    suppressed: Collection[str],
    dry_run: bool = False,
    claim: str | None = None,
    halted: Callable[[], bool] = lambda: False,
) -> Built:
    """The digests of these subscribers (with those earlier runs left unconfirmed), recorded
    unless `dry_run`, under `claim` (the token holding them); until `halted()` says stop."""
    built = Built()
    keys = [s.key for s in batch]
    unfinished = {} if dry_run else digests.ledger.unfinished_of(keys)
    latest = {} if dry_run else digests.ledger.lasts_of(keys)  # newer than this run's start?
    for subscriber in batch:
        if halted():
            break
        if subscriber.key in suppressed:
            continue
        built.pending += [_Pending(row, subscriber) for row in unfinished.get(subscriber.key, [])]
        known = digests.lasts.get(subscriber.key)
        if latest.get(subscriber.key, 0) > (known.id if known else 0):
            # Recorded by a worker that died after this one started: its window and items, so
            # that the next digest builds on it instead of colliding with it.
            last = digests.ledger.last(subscriber.key)
            if last is not None:
                digests.lasts[subscriber.key] = dataclasses.replace(last, message=None)
            digests.sent[subscriber.key] = digests.ledger.sent_items(subscriber.key)
        try:
            _build_one(digests, subscriber, built, dry_run=dry_run, claim=claim)
        except Fenced:
            built.lost.add(subscriber.key)
        except DBAPIError:
            raise  # the database's failure, not this subscriber's: the batch is built again
        except Exception as error:  # this subscriber's failure: recorded, the others still built
            detail = error.message if isinstance(error, SyndicatorError) else str(error)
            reason = f"digest not built: {type(error).__name__}: {detail}"
            log.info("%s: %s", subscriber.email, reason, exc_info=log.isEnabledFor(logging.DEBUG))
            built.unbuilt[subscriber.key] = reason
            if not dry_run:
                digests.ledger.unbuilt(
                    subscriber=subscriber.key, frequency=subscriber.frequency, issued=digests.now,
                    error=reason,
                )  # fmt: skip
    return built


def _build_one(
    digests: Digests, subscriber: Subscriber, built: Built, *, dry_run: bool, claim: str | None
) -> None:
    """The subscriber's next digest, if any, recorded unless `dry_run`, noted in `built`."""
    digest = digests.next_digest(subscriber)
    if digest is None:
        return
    if dry_run:
        built.subscribers.add(subscriber.key)
        return
    # AlreadyRecorded: a concurrent send (of another frequency's run) has this digest.
    with contextlib.suppress(AlreadyRecorded):
        row = digests.record(digest, claim=claim)
        built.pending.append(_Pending(row, subscriber))
    built.subscribers.add(subscriber.key)


async def _deliver(
    digests: Digests,
    built: Built,
    transport: Transport,
    claim: str,
    *,
    stop: Event | None,
    suppressed: Collection[str],
) -> tuple[dict[str, str], dict[str, str]]:
    """Hand the batch's digests to the transport, each taken under `claim` just before it goes
    on the wire and confirmed on its own once the transport says how it went; the outcome and
    (for failures) the reason per message name. Once `stop` is set nothing more goes on the
    wire: those not sent stay pending."""
    ledger = digests.ledger
    by_name = {f"{p.row.id:08d}": p for p in built.pending}
    outcomes: dict[str, str] = {}
    details: dict[str, str] = {}

    async def take(message: Outgoing) -> bool:
        entry = by_name[message.name]
        if stop is not None and stop.is_set():
            outcomes[message.name] = "stopped"
            return False
        if entry.subscriber.key in suppressed:
            await asyncio.to_thread(
                ledger.failed, entry.row, "address suppressed before delivery", final=True
            )
            outcomes[message.name] = "suppressed"
            return False
        if not await asyncio.to_thread(
            retrying, partial(ledger.take, entry.row, claim), what="taking a digest"
        ):
            outcomes[message.name] = "busy"  # another worker has it now
            return False
        return True

    async def done(message: Outgoing, result: Result) -> None:
        entry = by_name[message.name]
        if result.outcome == "sent":
            confirm = partial(ledger.sent, entry.row, datetime.now(UTC), claim)
        else:
            final = result.outcome != "temporary"
            confirm = partial(ledger.failed, entry.row, result.detail, final=final, claim=claim)
            details[message.name] = result.detail
            if result.outcome == "bad_mailbox":
                bad = partial(
                    ledger.suppress, entry.subscriber.key, "invalid address", datetime.now(UTC), result.detail
                )
                await asyncio.to_thread(retrying, bad, what="suppressing an address")
        if not await asyncio.to_thread(retrying, confirm, what="confirming a digest"):
            log.warning("%s: lease ran out before the outcome was confirmed", entry.subscriber.email)
        outcomes[message.name] = result.outcome

    messages = [
        Outgoing(
            data=p.row.message or b"",
            sender=digests.envelope_sender(p.row.id, p.subscriber.key),
            recipient=on_the_wire(p.subscriber.email),  # the domain in IDNA
            message_id=p.row.message_id,
            name=name,
        )
        for name, p in by_name.items()
    ]
    await transport.send(messages, claim=take, done=done)
    return outcomes, details


def send_digests(
    digests: Digests,
    *,
    frequency: Frequency | None = None,
    dry_run: bool = False,
    transport: Transport | None = None,
    progress: Progress | None = None,
    stop: Event | None = None,
    lease: float | None = None,
    run_id: int | None = None,
) -> SendReport:
    """Build and deliver now the digests of the subscribers of `frequency` (default: all), as
    one worker of the send run (syndicator/runs.py): any number of workers, here or on other
    machines, share the run through the database.

    A plain loop: claim a batch of due subscribers, build (choose, render, record with its items)
    their digests, send them, confirm each outcome on its own, and again until no subscriber is
    due. Subscribers claimed by a worker that died are due again once its lease ran out, and
    taken by whoever is still working. When `stop` is set (the daemon got SIGTERM) the worker
    ends after the messages on the wire; the rest stays due for the next one. The report counts
    this worker's subscribers only."""
    if dry_run:
        return _dry_run(digests, frequency, progress)
    report = SendReport()
    lease = lease or digests.config.email.lease_seconds
    runs = Runs(digests.store, lease=lease)
    digests.ledger.lease = lease
    chosen = digests.subscribers(frequency)
    known = {s.key: s for s in digests.subscribers()}
    run, worker = retrying(
        partial(runs.join, frequency, [s.key for s in chosen], digests.now, run_id=run_id),
        what="joining the send run",
    )
    digests.now = run.issued  # every worker's digests carry the run's moment
    total = retrying(partial(runs.waiting, run), what="reading the send run")

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    async def claimed_and_built(heart: Heartbeat) -> _Batch | None:
        claim = await asyncio.to_thread(retrying, partial(runs.claim, run, BATCH), what="claiming")
        if claim is None:
            return None
        heart.hold(claim.token)
        try:
            return await _build(digests, runs, claim, known=known, stop=stop)
        except BaseException:
            heart.drop(claim.token)
            raise

    finish = partial(runs.finish_if_done, run, digests.now)

    async def work(transport: Transport | None) -> None:
        kept = contextlib.AsyncExitStack()  # the SMTP connections, kept open from batch to batch
        done = 0
        ahead: asyncio.Task[_Batch | None] | None = None
        try:
            with Heartbeat(runs, worker) as heart:
                try:
                    while not stopped():
                        batch = await (ahead or claimed_and_built(heart))
                        ahead = None
                        if batch is None:
                            if await asyncio.to_thread(retrying, finish, what="finishing the send run"):
                                break
                            await asyncio.sleep(min(1.0, lease / 4))  # others hold the rest, till their lease
                            continue
                        # The next batch is claimed and built while this one is on the wire, so
                        # that one worker's connections do not wait for it: the SQLite target
                        # of bench/smtp.py (no lower throughput than a single process had).
                        ahead = asyncio.create_task(claimed_and_built(heart))
                        try:
                            transport = await _send(
                                digests, runs, batch, transport=transport, kept=kept, report=report, stop=stop
                            )
                        finally:
                            heart.drop(batch.claim.token)
                        done += len(batch.claim.subscribers)
                        if progress:
                            progress(min(done, total), total)
                finally:
                    if ahead is not None:  # stopped or failed: the batch built ahead is due again
                        await _give_back(runs, heart, ahead)
        finally:
            await kept.aclose()
            with contextlib.suppress(Exception):  # its heartbeat stops anyway: it ends in one lease
                await asyncio.to_thread(runs.leave, worker)

    asyncio.run(work(transport))
    if progress:
        progress(total, total)
    return report


@dataclass(slots=True)
class _Batch:
    """A claimed batch, built: its subscribers still configured, those gone, and the suppression
    list it was built with."""

    claim: Claim
    subscribers: list[Subscriber]
    gone: list[str]
    suppressed: Collection[str]
    built: Built


async def _build(
    digests: Digests, runs: Runs, claim: Claim, *, known: dict[str, Subscriber], stop: Event | None
) -> _Batch:
    """The digests of a claimed batch, built and recorded; the claim given back if that fails."""
    subscribers = [known[key] for key in claim.subscribers if key in known]
    gone = [key for key in claim.subscribers if key not in known]  # config changed
    try:
        suppressed = await asyncio.to_thread(retrying, digests.ledger.suppressed, what="reading suppressions")
        # Built again whole if the database goes away meanwhile: what was recorded is then
        # found unfinished, and what was not is chosen again.
        built = await asyncio.to_thread(
            retrying, partial(
                build_batch, digests, subscribers, suppressed=suppressed, claim=claim.token,
                halted=lambda: stop is not None and stop.is_set(),
            ), what="building digests",
        )  # fmt: skip
    except BaseException:
        with contextlib.suppress(DBAPIError):  # else they are due again once the lease runs out
            await asyncio.to_thread(runs.give_back, claim, claim.subscribers)  # due again, for any worker
        raise
    return _Batch(claim, subscribers, gone, suppressed, built)


async def _give_back(runs: Runs, heart: Heartbeat, ahead: asyncio.Task[_Batch | None]) -> None:
    """A batch claimed and built ahead, not sent: its subscribers due again (what was recorded
    for them is found unfinished and sent by whoever takes them)."""
    try:
        batch = await ahead
    except BaseException:
        return  # its own failure gave it back
    if batch is not None:
        heart.drop(batch.claim.token)
        with contextlib.suppress(DBAPIError):  # else they are due again once the lease runs out
            await asyncio.to_thread(runs.give_back, batch.claim, batch.claim.subscribers)


async def _send(
    digests: Digests,
    runs: Runs,
    batch: _Batch,
    *,
    transport: Transport | None,
    kept: contextlib.AsyncExitStack,
    report: SendReport,
    stop: Event | None,
) -> Transport | None:
    """One built batch: sent, each subscriber's outcome counted and confirmed; the transport
    (opened if it was not)."""
    claim, built, suppressed = batch.claim, batch.built, batch.suppressed
    outcomes: dict[str, str] = dict.fromkeys(batch.gone, "gone")
    try:
        sent: dict[str, str] = {}
        details: dict[str, str] = {}
        if built.pending:
            if transport is None:
                transport = transport_for(digests.config)
            if isinstance(transport, SmtpTransport):
                if not getattr(kept, "_syndicator_open", False):
                    await kept.enter_async_context(transport.connections())
                    kept._syndicator_open = True  # type: ignore[attr-defined]
                if not isinstance(transport.pace, SharedPace) or transport.pace.runs is not runs:
                    transport.pace = SharedPace(
                        runs, transport.rate_per_second, block=transport.max_connections
                    )
            sent, details = await _deliver(
                digests, built, transport, claim.token, stop=stop, suppressed=suppressed
            )
    except BaseException:
        with contextlib.suppress(DBAPIError):  # else they are due again once the lease runs out
            await asyncio.to_thread(runs.give_back, claim, claim.subscribers)  # due again, for any worker
        raise
    results: dict[str, list[str]] = {}
    reasons = dict(built.unbuilt)
    for entry in built.pending:
        name = f"{entry.row.id:08d}"
        results.setdefault(entry.subscriber.key, []).append(sent.get(name, "stopped"))
        if name in details:
            reasons.setdefault(entry.subscriber.key, details[name])
    back: list[str] = []
    for subscriber in batch.subscribers:
        if subscriber.key in built.lost:
            continue  # another worker holds it now, and reports it
        if subscriber.key in built.unbuilt:
            results.setdefault(subscriber.key, []).append("unbuilt")
        got = results.get(subscriber.key, [])
        if "stopped" in got or (stop is not None and stop.is_set() and subscriber.key not in built.subscribers
                                and subscriber.key not in suppressed and not got):  # fmt: skip
            back.append(subscriber.key)
        outcomes[subscriber.key] = _tally(
            report, subscriber, got, reasons.get(subscriber.key),
            suppressed=subscriber.key in suppressed, would_send=False,
        )  # fmt: skip
    await asyncio.to_thread(retrying, partial(runs.give_back, claim, back), what="giving back subscribers")
    finished = {k: v for k, v in outcomes.items() if k not in back}
    await asyncio.to_thread(retrying, partial(runs.done, claim, finished), what="confirming subscribers")
    return transport


def open_send_run(digests: Digests, frequency: Frequency | None) -> int:
    """The id of the send run that the workers `digest send --workers N` starts are to share,
    opened now (or the one already open), so that a worker that starts late joins it even if
    the others finished it, instead of opening a run of its own."""
    runs = Runs(digests.store, lease=digests.config.email.lease_seconds)
    keys = [s.key for s in digests.subscribers(frequency)]
    return retrying(partial(runs.open, frequency, keys, digests.now), what="opening the send run").id


def _dry_run(digests: Digests, frequency: Frequency | None, progress: Progress | None) -> SendReport:
    """What a send would do, recording and sending nothing."""
    report = SendReport()
    chosen = digests.subscribers(frequency)
    suppressed = digests.ledger.suppressed()
    for start in range(0, len(chosen), BATCH):
        batch = chosen[start : start + BATCH]
        built = build_batch(digests, batch, suppressed=suppressed, dry_run=True)
        for subscriber in batch:
            got = ["unbuilt"] if subscriber.key in built.unbuilt else []
            _tally(
                report, subscriber, got, built.unbuilt.get(subscriber.key),
                suppressed=subscriber.key in suppressed, would_send=subscriber.key in built.subscribers,
            )  # fmt: skip
        if progress:
            progress(min(start + BATCH, len(chosen)), len(chosen))
    return report


def _tally(report: SendReport, subscriber: Subscriber, results: list[str], reason: str | None, *,
           suppressed: bool, would_send: bool) -> str:  # fmt: skip
    """One outcome per subscriber, so that the parts of the summary add up; that outcome."""
    if suppressed or "suppressed" in results:
        report.suppressed += 1
        return "suppressed"
    if "stopped" in results:
        report.stopped += 1
        return "stopped"
    if {"bad_mailbox", "failed", "temporary", "unbuilt"} & set(results):
        report.failed += 1
        report.temporary += "temporary" in results and not {"failed", "bad_mailbox", "unbuilt"} & set(results)
        report.errors.append(f"{subscriber.email}: {reason or 'delivery failed'}")
        return "failed"
    if "sent" in results or would_send:
        report.sent += 1
        return "sent"
    if "busy" in results:
        return "busy"
    report.empty += 1
    return "empty"


def explain(digests: Digests, subscriber: Subscriber, url: str) -> tuple[bool, list[str]]:
    """Whether an item goes to a subscriber's next digest, and each rule's say, in plain words.

    Raises `SyndicatorError` when the store has no item of that URL (with the stored URL it
    looks like, if one differs only by scheme, `www.`, case or a trailing slash)."""
    candidate = next((c for c in digests.candidates if c.item.url == url), None)
    if candidate is None:
        stamps = digests.store.item_stamps()
        stamp = next((s for s in stamps if s.url == url), None)
        if stamp is None:
            alike = [s.url for s in stamps if _url_key(s.url) == _url_key(url)]
            raise SyndicatorError(
                N_("no item with the URL {url} in the store", url=url),
                hint=N_("did you mean {url}?", url=alike[0]) if alike else N_(
                    "run 'syndicator ingest' first; 'syndicator parse FILE' shows an item's URL"
                ),
            )  # fmt: skip
        candidate = Candidate(stamp.id, digests.store.items_by_id([stamp.id])[stamp.id], stamp.first_seen)
    item, ok = candidate.item, True
    lines: list[str] = []
    zone = digests.config.site.zone  # every day and time below is the site's
    for verdict in verdicts(digests.interests(subscriber), item, digests.hierarchy):
        reason = verdict.reason
        lines.append(
            N_("passes: {reason}", reason=reason) if verdict.passed else N_("stops:  {reason}", reason=reason)
        )
        ok = ok and verdict.passed
    suppressed = digests.ledger.suppressed().get(subscriber.key)
    if suppressed:
        ok = False
        reason, since = suppressed
        since = since.astimezone(zone)
        lines.append(N_(
            "stops:  the address is on the suppression list ({reason}, since {since:%Y-%m-%d})",
            reason=reason, since=since,
        ))  # fmt: skip
    sent = digests.ledger.sent_on(subscriber.key, candidate.id)
    if sent is not None:
        ok = False
        lines.append(N_(
            "stops:  already in digest {id} of {issued:%Y-%m-%d %H:%M} ({state})",
            id=sent.message_id, issued=sent.issued.astimezone(zone), state=sent.state,
        ))  # fmt: skip
    else:
        last = digests.lasts.get(subscriber.key)
        if last is not None and candidate.first_seen <= last.issued:
            ok = False
            lines.append(N_(
                "stops:  first seen {seen:%Y-%m-%d %H:%M}, before the last digest ({last:%Y-%m-%d %H:%M})",
                seen=candidate.first_seen.astimezone(zone), last=last.issued.astimezone(zone),
            ))  # fmt: skip
        lookback = digests.config.email.lookback_days.days(subscriber.frequency)
        day = item.published or candidate.first_seen.astimezone(zone).date()
        oldest = digests.now.astimezone(zone).date() - timedelta(days=lookback)
        if day < oldest:
            ok = False
            lines.append(N_(
                "stops:  published {day:%Y-%m-%d}, outside the {frequency} look-back of {days} days",
                day=day, frequency=subscriber.frequency, days=lookback,
            ))  # fmt: skip
        else:
            lines.append(N_(
                "passes: published {day:%Y-%m-%d}, within the {days}-day look-back", day=day, days=lookback
            ))  # fmt: skip
    return ok, lines


def _url_key(url: str) -> str:
    """A URL as an admin may mistype it: no scheme, no `www.`, no trailing slash, any case."""
    rest = url.strip().lower().partition("://")[2] or url.strip().lower()
    return rest.removeprefix("www.").rstrip("/")
