"""The send run's workers: claim a batch of due subscribers, build and record their digests,
hand them to the transport, confirm each outcome; the ledger first, then the wire.

Any number of workers, here or on other machines, share one send run through the database
(`syndicator.db.runs`): each claims `BATCH` subscribers at a time under a lease, builds them,
sends them, and keeps its SMTP connections from batch to batch. Everything a worker does runs in
its event loop's thread, the database's statements included (only the heartbeat has a thread of
its own): it is busy on one core, and a second thread building the next batch made the loop
wait for the interpreter lock at every reply, 0.15 s more of the 2.5 s bench/rss2email.py takes
at 0 ms. More throughput is more workers (`--workers N`, or more machines).
For each subscriber of a batch: digests a previous run recorded but did not confirm go first,
with their original Message-ID and bytes; then the next digest is chosen (`DigestRun`,
`syndicator.digests.select`) and rendered. The batch's new digests are recorded in the ledger
as `pending` with their items, in one transaction; then each is taken under the claim and handed
to the transport, and its outcome confirmed on its own. Suppressed addresses receive nothing.

Whatever goes wrong while one subscriber's digest is built (an address the message cannot
carry, a template error...) is that subscriber's failure alone: recorded in the ledger with its
reason (`unbuilt`, its items kept for the next run), counted as failed (`syndicator.digests.tally`),
and the others go out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from threading import Event

from sqlalchemy.exc import DBAPIError

from syndicator.addresses import on_the_wire
from syndicator.config.frequencies import Frequency
from syndicator.config.subscribers import Subscriber
from syndicator.db.ledger import LedgerRow, NewDigest
from syndicator.db.runs import Claim, Heartbeat, Runs, SharedPace, retrying, retrying_here
from syndicator.digests.run import DigestRun
from syndicator.digests.tally import SendReport, tally
from syndicator.errors import SyndicatorError
from syndicator.mail.smtp import SmtpTransport, transport_for
from syndicator.mail.transports import Outgoing, Result, Transport

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
# Subscribers a worker claims at once: built, recorded (in one transaction), then delivered
# together. 100 rather than 50: half the claims, reads and confirmations of batches, 3 % at 0 ms
# (bench/rss2email.py); a third of what is due per live worker at most (`Runs.claim`).
BATCH = 100


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
    digest_run: DigestRun,
    batch: Sequence[Subscriber],
    *,
    suppressed: Collection[str],
    dry_run: bool = False,
    claim: str | None = None,
    halted: Callable[[], bool] = lambda: False,
) -> Built:
    """The digests of these subscribers (with those earlier runs left unconfirmed), recorded
    together unless `dry_run`, under `claim` (the token holding them); until `halted()` says stop."""
    built = Built()
    keys = [s.key for s in batch]
    unfinished = {} if dry_run else digest_run.ledger.unfinished_of(keys)
    latest = {} if dry_run else digest_run.ledger.lasts_of(keys)  # newer than this run's start?
    new: list[NewDigest] = []
    for subscriber in batch:
        if halted():
            break
        if subscriber.key in suppressed:
            continue
        built.pending += [_Pending(row, subscriber) for row in unfinished.get(subscriber.key, [])]
        known = digest_run.lasts.get(subscriber.key)
        if latest.get(subscriber.key, 0) > (known.id if known else 0):
            # Recorded by a worker that died after this one started: its window and items, so
            # that the next digest builds on it instead of colliding with it.
            last = digest_run.ledger.last(subscriber.key)
            if last is not None:
                digest_run.lasts[subscriber.key] = dataclasses.replace(last, message=None)
            digest_run.sent[subscriber.key] = digest_run.ledger.sent_items(subscriber.key)
        try:
            digest = digest_run.next_digest(subscriber)
            if digest is not None:
                built.subscribers.add(subscriber.key)
                if not dry_run:
                    new.append(digest_run.built(digest))
        except DBAPIError:
            raise  # the database's failure, not this subscriber's: the batch is built again
        except Exception as error:  # this subscriber's failure: recorded, the others still built
            detail = error.message if isinstance(error, SyndicatorError) else str(error)
            reason = f"digest not built: {type(error).__name__}: {detail}"
            log.info("%s: %s", subscriber.email, reason, exc_info=log.isEnabledFor(logging.DEBUG))
            built.subscribers.discard(subscriber.key)
            built.unbuilt[subscriber.key] = reason
            if not dry_run:
                digest_run.ledger.unbuilt(
                    subscriber=subscriber.key, frequency=subscriber.frequency, issued=digest_run.now,
                    error=reason,
                )  # fmt: skip
    if new:
        recorded = digest_run.record(new, claim=claim)
        built.lost = recorded.fenced  # the claim ran out: another worker has them
        built.subscribers -= recorded.fenced
        # recorded.already: a concurrent send (of another frequency's run) has this digest.
        by_key = {s.key: s for s in batch}
        built.pending += [_Pending(row, by_key[row.subscriber]) for row in recorded.rows]
    return built


async def _deliver(
    digest_run: DigestRun,
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
    wire: those not sent stay pending. These writes run in the event loop's thread
    (`retrying_here`), on one connection for the batch (`LedgerWrites`): one statement each,
    quicker than a hop to a thread."""
    ledger = digest_run.ledger
    writes = ledger.writes()  # one connection for the batch's writes, closed once it is sent
    by_name = {f"{p.row.id:08d}": p for p in built.pending}
    outcomes: dict[str, str] = {}
    details: dict[str, str] = {}

    async def take(message: Outgoing) -> bool:
        entry = by_name[message.name]
        if stop is not None and stop.is_set():
            outcomes[message.name] = "stopped"
            return False
        if entry.subscriber.key in suppressed:
            why = "address suppressed before delivery"
            await retrying_here(partial(writes.failed, entry.row, why, final=True), what="confirming")
            outcomes[message.name] = "suppressed"
            return False
        if not await retrying_here(partial(writes.take, entry.row, claim), what="taking a digest"):
            outcomes[message.name] = "busy"  # another worker has it now
            return False
        return True

    async def done(message: Outgoing, result: Result) -> None:
        entry = by_name[message.name]
        if result.outcome == "sent":
            confirm = partial(writes.sent, entry.row, datetime.now(UTC), claim)
        else:
            final = result.outcome != "temporary"
            confirm = partial(writes.failed, entry.row, result.detail, final=final, claim=claim)
            details[message.name] = result.detail
            if result.outcome == "bad_mailbox":
                bad = partial(
                    ledger.suppress, entry.subscriber.key, "invalid address", datetime.now(UTC), result.detail
                )
                await retrying_here(bad, what="suppressing an address")
        if not await retrying_here(confirm, what="confirming a digest"):
            log.warning("%s: lease ran out before the outcome was confirmed", entry.subscriber.email)
        outcomes[message.name] = result.outcome

    messages = [
        Outgoing(
            data=p.row.message or b"",
            sender=digest_run.envelope_sender(p.row.id, p.subscriber.key),
            recipient=on_the_wire(p.subscriber.email),  # the domain in IDNA
            message_id=p.row.message_id,
            name=name,
        )
        for name, p in by_name.items()
    ]
    with writes:
        await transport.send(messages, claim=take, done=done)
    return outcomes, details


def send_digests(
    digest_run: DigestRun,
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
    one worker of the send run (`syndicator.db.runs`): any number of workers, here or on other
    machines, share the run through the database.

    A plain loop: claim a batch of due subscribers, build (choose, render, record with its items)
    their digest_run, send them, confirm each outcome on its own, and again until no subscriber is
    due. Subscribers claimed by a worker that died are due again once its lease ran out, and
    taken by whoever is still working. When `stop` is set (the daemon got SIGTERM) the worker
    ends after the messages on the wire; the rest stays due for the next one. The report counts
    this worker's subscribers only."""
    if dry_run:
        return _dry_run(digest_run, frequency, progress)
    report = SendReport()
    lease = lease or digest_run.config.email.lease_seconds
    runs = Runs(digest_run.store, lease=lease)
    digest_run.ledger.lease = lease
    chosen = digest_run.subscribers(frequency)
    known = {s.key: s for s in digest_run.subscribers()}
    run, worker = retrying(
        partial(runs.join, frequency, [s.key for s in chosen], digest_run.now, run_id=run_id),
        what="joining the send run",
    )
    digest_run.now = run.issued  # every worker's digests carry the run's moment
    total = retrying(partial(runs.waiting, run), what="reading the send run")

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    finish = partial(runs.finish_if_done, run, digest_run.now)

    async def work(transport: Transport | None) -> None:
        kept = contextlib.AsyncExitStack()  # the SMTP connections, kept open from batch to batch
        done = 0
        try:
            with Heartbeat(runs, worker) as heart:
                while not stopped():
                    claim = await retrying_here(partial(runs.claim, run, BATCH), what="claiming")
                    if claim is None:
                        if await retrying_here(finish, what="finishing the send run"):
                            break
                        await asyncio.sleep(min(1.0, lease / 4))  # others hold the rest, till their lease
                        continue
                    heart.hold(claim.token)
                    try:
                        batch = await _build(digest_run, runs, claim, known=known, halted=stopped)
                        transport = await _send(
                            digest_run, runs, batch, transport=transport, kept=kept, report=report, stop=stop
                        )
                    finally:
                        heart.drop(claim.token)
                    done += len(claim.subscribers)
                    if progress:
                        progress(min(done, total), total)
        finally:
            await kept.aclose()
            with contextlib.suppress(Exception):  # its heartbeat stops anyway: it ends in one lease
                runs.leave(worker)

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
    digest_run: DigestRun,
    runs: Runs,
    claim: Claim,
    *,
    known: dict[str, Subscriber],
    halted: Callable[[], bool],
) -> _Batch:
    """The digests of a claimed batch, built and recorded until `halted()` says stop; the claim
    given back if that fails."""
    subscribers = [known[key] for key in claim.subscribers if key in known]
    gone = [key for key in claim.subscribers if key not in known]  # config changed
    try:
        suppressed = await retrying_here(digest_run.ledger.suppressed, what="reading suppressions")
        # Built again whole if the database goes away meanwhile: what was recorded is then
        # found unfinished, and what was not is chosen again.
        built = await retrying_here(
            partial(
                build_batch, digest_run, subscribers, suppressed=suppressed, claim=claim.token,
                halted=halted,
            ), what="building digests",
        )  # fmt: skip
    except BaseException:
        with contextlib.suppress(DBAPIError):  # else they are due again once the lease runs out
            runs.give_back(claim, claim.subscribers)  # due again, for any worker
        raise
    return _Batch(claim, subscribers, gone, suppressed, built)


async def _send(
    digest_run: DigestRun,
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
                transport = transport_for(digest_run.config)
            if isinstance(transport, SmtpTransport):
                if not getattr(kept, "_syndicator_open", False):
                    await kept.enter_async_context(transport.connections())
                    kept._syndicator_open = True  # type: ignore[attr-defined]
                if not isinstance(transport.pace, SharedPace) or transport.pace.runs is not runs:
                    transport.pace = SharedPace(runs, transport.rate_per_second)
            sent, details = await _deliver(
                digest_run, built, transport, claim.token, stop=stop, suppressed=suppressed
            )
    except BaseException:
        with contextlib.suppress(DBAPIError):  # else they are due again once the lease runs out
            runs.give_back(claim, claim.subscribers)  # due again, for any worker
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
        if subscriber.key in built.lost or "busy" in results.get(subscriber.key, ()):
            # Its claim ran out before its digest was taken: another worker holds it now, or
            # will claim it (this one included), and send what is left pending; not done here.
            continue
        if subscriber.key in built.unbuilt:
            results.setdefault(subscriber.key, []).append("unbuilt")
        got = results.get(subscriber.key, [])
        if "stopped" in got or (stop is not None and stop.is_set() and subscriber.key not in built.subscribers
                                and subscriber.key not in suppressed and not got):  # fmt: skip
            back.append(subscriber.key)
        outcomes[subscriber.key] = tally(
            report, subscriber, got, reasons.get(subscriber.key),
            suppressed=subscriber.key in suppressed, would_send=False,
        )  # fmt: skip
    await retrying_here(partial(runs.give_back, claim, back), what="giving back subscribers")
    finished = {k: v for k, v in outcomes.items() if k not in back}
    await retrying_here(partial(runs.done, claim, finished), what="confirming subscribers")
    return transport


def open_send_run(digest_run: DigestRun, frequency: Frequency | None) -> int:
    """The id of the send run that the workers `digest send --workers N` starts are to share,
    opened now (or the one already open), so that a worker that starts late joins it even if
    the others finished it, instead of opening a run of its own."""
    runs = Runs(digest_run.store, lease=digest_run.config.email.lease_seconds)
    keys = [s.key for s in digest_run.subscribers(frequency)]
    return retrying(partial(runs.open, frequency, keys, digest_run.now), what="opening the send run").id


def _dry_run(digest_run: DigestRun, frequency: Frequency | None, progress: Progress | None) -> SendReport:
    """What a send would do, recording and sending nothing."""
    report = SendReport()
    chosen = digest_run.subscribers(frequency)
    suppressed = digest_run.ledger.suppressed()
    for start in range(0, len(chosen), BATCH):
        batch = chosen[start : start + BATCH]
        built = build_batch(digest_run, batch, suppressed=suppressed, dry_run=True)
        for subscriber in batch:
            got = ["unbuilt"] if subscriber.key in built.unbuilt else []
            tally(
                report, subscriber, got, built.unbuilt.get(subscriber.key),
                suppressed=subscriber.key in suppressed, would_send=subscriber.key in built.subscribers,
            )  # fmt: skip
        if progress:
            progress(min(start + BATCH, len(chosen)), len(chosen))
    return report
