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
import itertools
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from threading import Event

from jinja2 import Environment

from .addresses import on_the_wire
from .builder import BuildingProcess
from .choices import effective_subscribers
from .config import Config, Frequency
from .digest import Candidate, Digest, DigestLinks, Pool, RenderedDigest, build_digest, newest_first
from .dkim import DkimKey, load_key, sign
from .emails import Envelope, address, digest_bytes, message_id
from .errors import SyndicatorError
from .french_dates import PARIS
from .items import NewsItem
from .ledger import AlreadyRecorded, GroupedWrites, Ledger, LedgerRow
from .mailer import OutboxTransport, Outgoing, Result, Transport
from .render import render_digest
from .smtp import SmtpTransport
from .store import Store
from .subscribers import Subscriber
from .taxonomy import Interests, MatchIndex, matches, verdicts
from .templating import environment
from .territoires import Hierarchy
from .tokens import Signer, secret_keys

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
log = logging.getLogger(__name__)
BATCH = 200  # digests built, recorded, then delivered together
FIRST_BATCH = 25  # the first batches are smaller (25, 50, 100, …): the first messages leave sooner


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
        failed = f"failed {self.failed}"
        if self.failed:
            failed += f" ({self.temporary} temporary, {self.failed - self.temporary} permanent)"
        stopped = f", stopped before sending {self.stopped}" if self.stopped else ""
        return f"sent {self.sent}, empty {self.empty}, {failed}, suppressed {self.suppressed}{stopped}"


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
        self.env = env or environment(config.templates_path)
        self.hierarchy, _ = Hierarchy.load(config.territoires)
        keys = secret_keys(store)
        self.unsubscribe, self.preferences = Signer(keys, "unsubscribe"), Signer(keys, "preferences")
        widest = max(config.email.lookback_days.model_dump().values())
        oldest = now - timedelta(days=widest + 1)
        stamps = [s for s in store.item_stamps() if (s.published or s.first_seen.date()) >= oldest.date()]
        loaded = store.items_by_id(s.id for s in stamps)
        # Newest first once and for all: every digest keeps this order.
        self.candidates = newest_first(Candidate(s.id, loaded[s.id], s.first_seen) for s in stamps)
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
        return Pool(self.candidates)

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
        stamps = sorted(
            self.store.item_stamps(),
            key=lambda s: (s.published or s.first_seen.astimezone(PARIS).date(), s.first_seen, s.url),
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

    def render(self, digest: Digest) -> RenderedDigest:
        return render_digest(self.env, digest, self.links(digest.subscriber), self.config.site)

    def message(
        self, digest: Digest, rendered: RenderedDigest, digest_id: int, *, unsubscribe: str | None = None
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
            date=digest.issued,
            list_name=self.config.site.title,
            unsubscribe_url=unsubscribe or self.links(subscriber).unsubscribe,
        )
        data = digest_bytes(rendered, envelope)  # the bytes of emails.build_message, made quicker
        # Signed here, so the ledger keeps the signed bytes and a re-send after a crash is the
        # very same message.
        return mid, sign(data, self.dkim) if self.dkim else data

    def record(self, digest: Digest) -> LedgerRow:
        """Write the digest and its items to the ledger as `pending`."""
        links = self.links(digest.subscriber)  # signed once for both the body and the headers
        rendered = render_digest(self.env, digest, links, self.config.site)
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
class _Claimed:
    """A batch's recorded digests, claimed in the ledger and ready for the transport."""

    by_name: dict[str, _Pending]  # by message name
    taken: set[int]  # the ledger rows this run claimed
    suppressed: Collection[str]  # the suppressed addresses when it was claimed


async def _claim_batch(digests: Digests, pending: Sequence[_Pending]) -> _Claimed:
    """Claim the batch in the ledger at once, in one transaction, before any of it is sent (those
    whose address is suppressed aside)."""
    ledger = digests.ledger
    suppressed = await asyncio.to_thread(ledger.suppressed)
    rows = [p.row for p in pending if p.subscriber.key not in suppressed]
    taken = await asyncio.to_thread(ledger.claim_all, rows, datetime.now(UTC))
    return _Claimed({f"{p.row.id:08d}": p for p in pending}, taken, suppressed)


async def _release(digests: Digests, claimed: _Claimed, handed: Collection[str] = ()) -> None:
    """Give back what the batch claimed and did not hand to the transport: pending again."""
    unsent = [
        p.row for name, p in claimed.by_name.items() if p.row.id in claimed.taken and name not in handed
    ]
    if unsent:
        await asyncio.to_thread(digests.ledger.release, unsent)


async def _deliver_all(
    digests: Digests,
    claimed: _Claimed,
    transport: Transport,
    stop: Event | None = None,
    details: dict[str, str] | None = None,
) -> dict[str, str]:
    """Hand every claimed digest to the transport; the outcome per message name (and in
    `details`, why, for those that failed). Once `stop` is set, nothing more goes on the wire:
    the messages on it finish, the others stay pending.

    A digest claimed and not handed to the transport is given back at the end (pending again).
    Each confirmation is written once its message is accepted, the confirmations of messages
    accepted at the same moment in one transaction (`GroupedWrites`)."""
    by_name, taken, suppressed = claimed.by_name, claimed.taken, claimed.suppressed
    details = {} if details is None else details
    outcomes: dict[str, str] = {}
    writes = GroupedWrites(digests.ledger)
    handed: set[str] = set()  # claimed and given to the transport

    async def claim(message: Outgoing) -> bool:
        entry = by_name[message.name]
        if stop is not None and stop.is_set():
            outcomes[message.name] = "stopped"
            return False
        if entry.subscriber.key in suppressed:
            await writes.failed(entry.row, "address suppressed before delivery", final=True)
            outcomes[message.name] = "suppressed"
            return False
        if entry.row.id not in taken:
            outcomes[message.name] = "busy"
            return False
        handed.add(message.name)
        return True

    async def done(message: Outgoing, result: Result) -> None:
        entry = by_name[message.name]
        if result.outcome == "sent":
            await writes.sent(entry.row, datetime.now(UTC))
        else:
            final = result.outcome != "temporary"
            await writes.failed(entry.row, result.detail, final=final)
            details[message.name] = result.detail
            if result.outcome == "bad_mailbox":
                await writes.suppress(
                    entry.subscriber.key, "invalid address", datetime.now(UTC), result.detail
                )
        outcomes[message.name] = result.outcome

    messages = [
        Outgoing(
            data=p.row.message or b"",
            sender=digests.config.email.from_,
            recipient=on_the_wire(p.subscriber.email),  # the domain in IDNA
            message_id=p.row.message_id,
            name=name,
        )
        for name, p in by_name.items()
    ]
    try:
        await transport.send(messages, claim=claim, done=done)
    finally:
        await _release(digests, claimed, handed)
    return outcomes


@dataclass(slots=True)
class Built:
    """A batch built: the digests to deliver (those recorded now, and those earlier runs left
    unconfirmed), the subscribers who have a new digest, and which rows were recorded now."""

    pending: list[_Pending] = field(default_factory=list)
    subscribers: set[str] = field(default_factory=set)
    recorded: set[int] = field(default_factory=set)  # the ledger rows recorded now
    unbuilt: dict[str, str] = field(default_factory=dict)  # the reason, by subscriber key


def build_batch(
    digests: Digests,
    batch: Sequence[Subscriber],
    *,
    suppressed: Collection[str],
    waiting: Collection[str],
    dry_run: bool = False,
    halted: Callable[[], bool] = lambda: False,
    progress: Callable[[int], None] | None = None,
) -> Built:
    """The digests of these subscribers, recorded unless `dry_run`; until `halted()` says stop.
    `waiting`: the subscribers with digests recorded and not confirmed; `progress(n)`: n done."""
    built = Built()
    for count, subscriber in enumerate(batch):
        if halted():
            break
        if progress:
            progress(count)
        if subscriber.key in suppressed:
            continue
        if not dry_run and subscriber.key in waiting:
            built.pending += [_Pending(row, subscriber) for row in digests.ledger.unfinished(subscriber.key)]
        try:
            _build_one(digests, subscriber, built, dry_run=dry_run)
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


def _build_one(digests: Digests, subscriber: Subscriber, built: Built, *, dry_run: bool) -> None:
    """The subscriber's next digest, if any, recorded unless `dry_run`, noted in `built`."""
    digest = digests.next_digest(subscriber)
    if digest is None:
        return
    if dry_run:
        built.subscribers.add(subscriber.key)
        return
    # AlreadyRecorded: a concurrent run has this digest and delivers it.
    with contextlib.suppress(AlreadyRecorded):
        row = digests.record(digest)
        built.pending.append(_Pending(row, subscriber))
        built.recorded.add(row.id)
    built.subscribers.add(subscriber.key)


@dataclass(slots=True)
class _Building:
    """Who builds a run's batches besides this process: a worker process (being started), if any."""

    worker: BuildingProcess | None = None
    starting: asyncio.Future[None] | None = None  # the worker's start

    async def aclose(self) -> None:
        """Wait for the worker's end (halted by then)."""
        if self.starting is not None:
            await asyncio.wait([self.starting])
            if not self.starting.cancelled():
                self.starting.exception()  # raised where it was awaited, if it was
        if self.worker is not None:
            await asyncio.to_thread(self.worker.close)


@dataclass(slots=True)
class _Ready:
    """A batch built and claimed, waiting for its turn with the transport."""

    built: Built
    claimed: _Claimed | None  # None: nothing to send


def send_digests(
    digests: Digests,
    *,
    frequency: Frequency | None = None,
    dry_run: bool = False,
    transport: Transport | None = None,
    progress: Progress | None = None,
    stop: Event | None = None,
) -> SendReport:
    """Build and deliver now the digests of the subscribers of `frequency` (default: all).

    In batches (25, 50, 100, then 200 subscribers), so that the messages waiting for the
    transport never pile up in memory: each digest of a batch is built and recorded (with those
    earlier runs left unconfirmed), then the transport delivers them all, the batch claimed in
    the ledger before any goes on the wire. Meanwhile the next batch is built and claimed: by a
    worker process when there are several batches (syndicator/builder.py; this process builds
    the small first ones while it starts), else by a thread of this one. SMTP connections stay
    open from one batch to the next. When `stop` is set (the daemon got SIGTERM) the run ends
    after the messages on the wire; what it did not send stays in the ledger for the next run.
    The worker makes its own `Digests` from the store and config: a custom `env`
    given to this one is not used there."""
    report = SendReport()
    chosen: Sequence[Subscriber] = digests.subscribers(frequency)
    suppressed = digests.ledger.suppressed()
    waiting = digests.ledger.unfinished_counts()  # one query, not one per subscriber
    starts = _batch_starts(len(chosen))
    batches = [chosen[start:end] for start, end in itertools.pairwise([*starts, len(chosen)])]
    halt = Event()  # delivery failed: build no more

    def halted() -> bool:
        return halt.is_set() or (stop is not None and stop.is_set())

    def build(number: int) -> Built:
        def done(count: int) -> None:
            if progress:
                progress(starts[number] + count, len(chosen))

        return build_batch(
            digests, batches[number], suppressed=suppressed, waiting=waiting, dry_run=dry_run,
            halted=halted, progress=done,
        )  # fmt: skip

    async def fetch(number: int, building: _Building) -> _Ready:
        """Batch `number` built (by the worker, or here while it starts, or by a thread) and,
        unless a dry run, claimed."""
        worker = building.worker
        if worker is None or worker.take_first(number):
            built = await asyncio.to_thread(build, number)  # recorded by this process's `Digests`
        elif halted():
            built = Built()  # the worker builds no more either
        else:
            assert building.starting is not None
            await building.starting
            built = await worker.batch(number)
            for entry in built.pending:  # as record() does in this process
                if entry.row.id in built.recorded:
                    digests.lasts[entry.row.subscriber] = dataclasses.replace(entry.row, message=None)
            if progress:
                progress(starts[number], len(chosen))
        claimed = await _claim_batch(digests, built.pending) if built.pending else None
        return _Ready(built, claimed)

    async def deliver(transport: Transport | None) -> None:
        building = _Building()
        if len(batches) > 1 and not dry_run and _on_disk(digests.store):
            worker = building.worker = BuildingProcess(
                digests, batches, suppressed=suppressed, waiting=waiting, stop=stop
            )
            writing = digests.ledger.share_turns(worker.turns)
            building.starting = asyncio.ensure_future(asyncio.to_thread(worker.start))
        kept, keeping = contextlib.AsyncExitStack(), False  # the SMTP connections, kept open
        # The next batch is fetched and claimed while this one is sent: no pause between them.
        upcoming: asyncio.Future[_Ready] | None = None
        try:
            for number, batch in enumerate(batches):
                ready = await (upcoming or fetch(number, building))
                more = number + 1 < len(batches)
                upcoming = asyncio.ensure_future(fetch(number + 1, building)) if more else None
                built, outcomes = ready.built, {}
                details: dict[str, str] = {}
                if ready.claimed is not None:
                    if transport is None:
                        transport = transport_for(digests.config)
                    if isinstance(transport, SmtpTransport) and not keeping:
                        await kept.enter_async_context(transport.connections())  # for every batch
                        keeping = True
                    outcomes = await _deliver_all(digests, ready.claimed, transport, stop, details)
                results: dict[str, list[str]] = {}
                reasons = dict(built.unbuilt)
                for entry in built.pending:
                    name = f"{entry.row.id:08d}"
                    results.setdefault(entry.subscriber.key, []).append(outcomes.get(name, "busy"))
                    if name in details:
                        reasons.setdefault(entry.subscriber.key, details[name])
                for subscriber in batch:
                    would_send = dry_run and subscriber.key in built.subscribers
                    if subscriber.key in built.unbuilt:
                        results.setdefault(subscriber.key, []).append("unbuilt")
                    _tally(report, subscriber, results.get(subscriber.key, []), reasons.get(subscriber.key),
                           suppressed=subscriber.key in suppressed, would_send=would_send)  # fmt: skip
        finally:
            halt.set()  # the batch being built ends at its next digest, and is left pending
            if upcoming is not None:  # fetched, not delivered: what it claimed is given back
                await asyncio.wait([upcoming])
                fetched = not upcoming.cancelled() and upcoming.exception() is None
                if fetched and (claimed := upcoming.result().claimed) is not None:
                    await _release(digests, claimed)
            await kept.aclose()
            await building.aclose()
            if building.worker is not None:
                digests.ledger.share_turns(writing)

    asyncio.run(deliver(transport))
    if progress:
        progress(len(chosen), len(chosen))
    return report


def _batch_starts(count: int) -> list[int]:
    """Where each batch of `count` subscribers starts: FIRST_BATCH, then twice as many each time,
    up to BATCH."""
    starts, size, start = [], min(FIRST_BATCH, BATCH), 0
    while start < count:
        starts.append(start)
        start, size = start + size, min(size * 2, BATCH)
    return starts


def _on_disk(store: Store) -> bool:
    """Whether another process opening the store's URL gets the same database."""
    return store.engine.url.database not in (None, "", ":memory:")


def _tally(report: SendReport, subscriber: Subscriber, results: list[str], reason: str | None, *,
           suppressed: bool, would_send: bool) -> None:  # fmt: skip
    """One outcome per subscriber, so that the parts of the summary add up."""
    if suppressed or "suppressed" in results:
        report.suppressed += 1
    elif "stopped" in results:
        report.stopped += 1
    elif {"bad_mailbox", "failed", "temporary", "unbuilt"} & set(results):
        report.failed += 1
        report.temporary += "temporary" in results and not {"failed", "bad_mailbox", "unbuilt"} & set(results)
        report.errors.append(f"{subscriber.email}: {reason or 'delivery failed'}")
    elif "sent" in results or would_send:
        report.sent += 1
    else:
        report.empty += 1


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
                f"no item with the URL {url} in the store",
                hint=f"did you mean {alike[0]}?" if alike else (
                    "run 'syndicator ingest' first; 'syndicator parse FILE' shows an item's URL"
                ),
            )  # fmt: skip
        candidate = Candidate(stamp.id, digests.store.items_by_id([stamp.id])[stamp.id], stamp.first_seen)
    item, lines, ok = candidate.item, [], True
    for verdict in verdicts(digests.interests(subscriber), item, digests.hierarchy):
        lines.append(("passes: " if verdict.passed else "stops:  ") + verdict.reason)
        ok = ok and verdict.passed
    suppressed = digests.ledger.suppressed().get(subscriber.key)
    if suppressed:
        ok = False
        reason, since = suppressed
        lines.append(f"stops:  the address is on the suppression list ({reason}, since {since:%Y-%m-%d})")
    sent = digests.ledger.sent_on(subscriber.key, candidate.id)
    if sent is not None:
        ok = False
        lines.append(
            f"stops:  already in digest {sent.message_id} of {sent.issued:%Y-%m-%d %H:%M} ({sent.state})"
        )
    else:
        last = digests.lasts.get(subscriber.key)
        if last is not None and candidate.first_seen <= last.issued:
            ok = False
            lines.append(
                f"stops:  first seen {candidate.first_seen:%Y-%m-%d %H:%M}, before the last digest "
                f"({last.issued:%Y-%m-%d %H:%M})"
            )
        lookback = digests.config.email.lookback_days.days(subscriber.frequency)
        day = item.published or candidate.first_seen.date()
        oldest = digests.now.astimezone(PARIS).date() - timedelta(days=lookback)
        if day < oldest:
            ok = False
            window = f"the {subscriber.frequency} look-back of {lookback} days"
            lines.append(f"stops:  published {day:%Y-%m-%d}, outside {window}")
        else:
            lines.append(f"passes: published {day:%Y-%m-%d}, within the {lookback}-day look-back")
    return ok, lines


def _url_key(url: str) -> str:
    """A URL as an admin may mistype it: no scheme, no `www.`, no trailing slash, any case."""
    rest = url.strip().lower().partition("://")[2] or url.strip().lower()
    return rest.removeprefix("www.").rstrip("/")
