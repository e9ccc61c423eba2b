"""`syndicator run`, `serve` and `purge`: the service, the web app, and the retention periods applied now."""

from __future__ import annotations

import argparse
import logging
import sys
from zoneinfo import ZoneInfo

from syndicator.cli.common import (
    database_ready,
    open_store,
    print_ingest_report,
    utc_now,
)
from syndicator.cli.progress import progress_bar
from syndicator.config.model import config_path, load_config
from syndicator.db.tokens import environment_secrets
from syndicator.i18n import _, shown
from syndicator.privacy.retention import purge
from syndicator.service.cycle import run_cycle
from syndicator.service.daemon import Daemon
from syndicator.service.runlock import Holder, RunnerLock


def cmd_serve(args: argparse.Namespace) -> int:
    from syndicator.web.app import serve  # noqa: PLC0415 -- the web stack loads for this command only

    config = load_config(args.config)
    database_ready(config)
    logging.getLogger("syndicator").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    port = config.web.port if args.port is None else args.port
    serve(config, args.host or config.web.host, port, access_log=args.verbose)
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    def waiting(holder: Holder | None) -> None:
        who = holder.describe(ZoneInfo(config.site.timezone)) if holder else _("another syndicator")
        print(
            _("waiting for the runner to finish ({who}), up to {seconds} s…").format(
                who=who, seconds=f"{args.wait:g}"
            ),
            file=sys.stderr,
            flush=True,
        )

    with (
        open_store(config) as store,
        RunnerLock(store, "purge", wait=args.wait, on_wait=waiting, zone=config.site.zone),
    ):
        report = purge(config, store, utc_now())
    for line in report.lines():
        print(shown(line))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    environment_secrets()  # a bad secret stops the service at start, not at the first digest
    if not args.once:
        logging.getLogger("syndicator").setLevel(logging.DEBUG if args.verbose else logging.INFO)
        with open_store(config) as store:
            return Daemon(config_path(args.config), config, store).serve()
    with (
        open_store(config) as store,
        RunnerLock(store, "run --once", zone=config.site.zone),
        progress_bar(_("Ingesting")) as progress,
    ):
        report = run_cycle(config, store, progress=progress)
    code = print_ingest_report(report.ingest)
    print(_("feeds: {summary}").format(summary=shown(report.feeds.summary())))
    if report.bounces is not None:
        print(_("bounces: {summary}").format(summary=shown(report.bounces.summary())))
        for warning in report.bounces.warnings:
            print(shown(warning), file=sys.stderr)
    if report.bounce_error is not None:
        print(shown(report.bounce_error), file=sys.stderr)  # reported; the digests went on all the same
    for frequency, sent in report.digests.items():
        print(
            _("digests ({frequency}): {summary}").format(frequency=frequency, summary=shown(sent.summary()))
        )
    if not report.digests:
        print(_("digests: none due"))
    failed = any(r.failed for r in report.digests.values()) or report.bounce_error is not None
    return code or (1 if failed else 0)
