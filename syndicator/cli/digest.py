"""`syndicator digest preview`, `digest send` (with `--workers`) and `explain`."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from syndicator.cli.common import local_time, open_store, utc_now
from syndicator.cli.progress import progress_bar
from syndicator.config.model import Config, load_config
from syndicator.config.subscribers import Subscriber
from syndicator.db.bounces import state_of, why
from syndicator.db.store import Store
from syndicator.digests.explain import explain
from syndicator.digests.render import mark_sample
from syndicator.digests.run import DigestRun
from syndicator.digests.send import open_send_run, send_digests
from syndicator.errors import SyndicatorError
from syndicator.i18n import _, shown
from syndicator.taxonomy.terms import slugify


def _digests(store: Store, config: Config) -> DigestRun:
    return DigestRun(store, config, now=utc_now())


def _subscriber(digests: DigestRun, email: str) -> Subscriber:
    subscriber = digests.subscriber(email)
    if subscriber is None:
        raise SyndicatorError(
            _("no subscriber {email} in the config").format(email=email),
            path=digests.config.source,
            hint=_("'syndicator subscribers list' shows who is subscribed"),
        )
    return subscriber


def cmd_digest_preview(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with open_store(config) as store:
        digests = _digests(store, config)
        subscriber = _subscriber(digests, args.email)
        digest, sample = digests.next_digest(subscriber), False
        if digest is None:
            # Nothing new: show what their digest looks like with the latest matching items,
            # marked as a sample; nothing goes to the ledger either way.
            digest, sample = digests.sample_digest(subscriber), True
        if digest is None:
            print(_("{email}: nothing new to send, and no stored item matches their interests").format(
                email=subscriber.email
            ))  # fmt: skip
            return 0
        rendered = digests.render(digest)
        if sample:
            print(_("{email}: nothing new to send; here is a sample with the latest matching items").format(
                email=subscriber.email
            ))  # fmt: skip
            rendered = mark_sample(rendered)
        data = digests.message(digest, rendered)[1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"digest-{slugify(subscriber.email)}"
    for suffix, content in (
        (".html", rendered.html.encode()),
        (".txt", rendered.text.encode()),
        (".eml", data),
    ):
        stem.with_suffix(suffix).write_bytes(content)
        print(stem.with_suffix(suffix))
    print(_("{subject} ({count} items)").format(subject=rendered.subject, count=len(digest.items)))
    return 0


def cmd_digest_send(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.workers > 1 and not args.dry_run:
        return _send_with_workers(args, config)
    with open_store(config) as store, progress_bar(_("Sending")) as progress:
        report = send_digests(
            _digests(store, config), frequency=args.frequency, dry_run=args.dry_run, progress=progress,
            run_id=args.run,
        )  # fmt: skip
    for failure in report.errors:
        print(shown(failure), file=sys.stderr)
    if report.errors:
        print(_("hint: 'syndicator status' lists them; temporary failures are tried again by the next run"),
              file=sys.stderr)  # fmt: skip
    label = f"{args.worker_label}: " if args.worker_label else ""
    print(label + (_("dry run: ") if args.dry_run else "") + shown(report.summary()), flush=True)
    return 1 if report.failed else 0


def _send_with_workers(args: argparse.Namespace, config: Config) -> int:
    """`digest send --workers N`: N identical worker processes sharing the send through the
    database (this one and N - 1 started here), each printing its own outcomes; the exit code
    is the worst of theirs."""
    with open_store(config) as store:  # the schema brought up to date once, before the workers start
        args.run = open_send_run(_digests(store, config), args.frequency)
    count = args.workers
    command = [sys.executable, "-m", "syndicator", "digest", "send", "--run", str(args.run)]
    if args.config:
        command += ["--config", str(args.config)]
    if args.frequency:
        command += ["--frequency", args.frequency]
    others = [
        subprocess.Popen([*command, "--worker-label", f"worker {n}/{count}"], stdin=subprocess.DEVNULL)
        for n in range(2, count + 1)
    ]
    try:
        args.workers, args.worker_label = 1, f"worker 1/{count}"
        codes = [cmd_digest_send(args)]
        codes += [other.wait() for other in others]
    finally:
        for other in others:
            if other.poll() is None:  # this one failed or was interrupted: so do they
                other.terminate()
                other.wait()
    return max(codes)


def cmd_explain(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with open_store(config) as store:
        digests = _digests(store, config)
        subscriber = _subscriber(digests, args.email)
        ok, lines = explain(digests, subscriber, args.url)
        entry = digests.roster.suppressed.get(subscriber.key)
    if entry is not None:  # whatever the item, a suppressed address receives nothing
        ok = False
        since = local_time(entry.since, ZoneInfo(config.site.timezone))
        lines.append(
            _("suppressed since {since} ({state}): {why}").format(
                since=since, state=state_of(entry.reason), why=why(entry)
            )
        )
    print("\n".join(shown(line) for line in lines))
    print(_("=> goes in the next digest") if ok else _("=> does not go to this subscriber"))
    return 0
