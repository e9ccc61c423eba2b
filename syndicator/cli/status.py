"""`syndicator status`: the jobs' last and next runs, deliveries pending, failed and suppressed,
and the bounce rates; it reads the store and changes nothing."""

from __future__ import annotations

import argparse
from zoneinfo import ZoneInfo

from syndicator.cli.common import (
    local_time,
    open_store,
    utc_now,
)
from syndicator.config.model import load_config
from syndicator.db.bounces import BounceRecords
from syndicator.db.ledger import UNBUILT, Ledger
from syndicator.db.runs import Runs
from syndicator.db.store import Store
from syndicator.i18n import _
from syndicator.service.runlock import RunnerLock
from syndicator.service.scheduler import JOBS, last_result, last_run, next_run

# Above these, mailbox providers throttle or block the sender for every subscriber (Gmail's and
# Yahoo's bulk-sender rules ask for a spam rate under 0.3 %): `status` warns.
HARD_BOUNCE_WARNING, COMPLAINT_WARNING = 0.02, 0.001
FAILURES_SHOWN = 50  # a template error can fail every subscriber's digest


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now, zone = utc_now(), ZoneInfo(config.site.timezone)
    with open_store(config) as store:
        ledger = Ledger(store)
        counts, suppressed, failures = ledger.counts(), ledger.suppressed(), ledger.failures()
        items, terms = store.count_items(), len(store.terms())
        holder = RunnerLock(store, "status").holder()
        print(_("items: {items}, terms: {terms}, subscribers: {subscribers}").format(
            items=items, terms=terms, subscribers=len(config.subscribers)
        ))  # fmt: skip
        print(_("times in {zone}").format(zone=config.site.timezone))
        print(
            _("runner: {holder}").format(holder=holder.describe(zone))
            if holder
            else _("runner: none (no 'syndicator run' holds the store)")
        )
        runs = Runs(store)
        for run, tally in runs.open_runs():  # sends under way, shared by their workers
            totals = ", ".join(f"{count} {state}" for state, count in sorted(tally.items()))
            workers = [name for __, name in runs.live_workers(run.id)]
            print(
                _("send run {frequency} #{number} of {when}: {totals}; live workers: {workers}").format(
                    frequency=run.frequency, number=run.number, when=local_time(run.issued, zone),
                    totals=totals, workers=", ".join(workers) or _("none"),
                )
            )  # fmt: skip
        for job in JOBS:
            last, upcoming, result = last_run(store, job), next_run(config, job, now), last_result(store, job)
            done = _("last run {when}").format(when=local_time(last, zone)) if last else _("never run")
            if result is not None:
                outcome = _("ok") if result[0] else _("with failures")
                done += " " + _("({outcome}: {detail})").format(outcome=outcome, detail=result[1])
            then = _("next {when}").format(when=local_time(upcoming, zone)) if upcoming else _("no next run")
            print(_("job {job}: {done}; {then}").format(job=job, done=done, then=then))
    waiting = counts.get("pending", 0) + counts.get("sending", 0)
    failed = counts.get("failed", 0) + counts.get(UNBUILT, 0)  # built or not, a digest that failed
    print(
        _(
            "deliveries: {waiting} pending, {failed} failed, {sent} sent; {suppressed} suppressed addresses"
        ).format(waiting=waiting, failed=failed, sent=counts.get("sent", 0), suppressed=len(suppressed))
    )
    for row in failures[:FAILURES_SHOWN]:  # the subscribers whose latest digest failed, and why
        when = local_time(row.issued, zone)
        print(_("failed: {subscriber} ({when}): {error}").format(
            subscriber=row.subscriber, when=when, error=row.error or _("no reason")
        ))  # fmt: skip
    if len(failures) > FAILURES_SHOWN:
        print(_("failed: … and {count} more subscribers").format(count=len(failures) - FAILURES_SHOWN))
    if config.email.bounces is not None:  # the rates come from the bounce mailbox
        with open_store(config) as store:
            print_rates(store, zone)
    return 0


def print_rates(store: Store, zone: ZoneInfo) -> None:
    """The hard-bounce and complaint rates of the last sends, and a warning past the limits."""
    for rate in BounceRecords(store).run_rates():
        hard, complaints = rate.hard / rate.sent, rate.complaints / rate.sent
        print(
            _(
                "bounces of {frequency} {when}: {sent} sent, {hard} hard ({hard_rate}), "
                "{complaints} complaints ({complaint_rate})"
            ).format(
                frequency=rate.frequency, when=local_time(rate.issued, zone), sent=rate.sent, hard=rate.hard,
                hard_rate=f"{hard:.1%}", complaints=rate.complaints, complaint_rate=f"{complaints:.2%}",
            )
        )  # fmt: skip
        if hard > HARD_BOUNCE_WARNING:
            print(
                _(
                    "warning: hard bounces above {limit} for that send: providers may throttle every "
                    "digest; check the list for old or mistyped addresses"
                ).format(limit=f"{HARD_BOUNCE_WARNING:.0%}")
            )
        if complaints > COMPLAINT_WARNING:
            print(
                _(
                    "warning: complaints above {limit} for that send: providers may file every digest "
                    "as spam; check that subscribers asked for it"
                ).format(limit=f"{COMPLAINT_WARNING:.1%}")
            )
