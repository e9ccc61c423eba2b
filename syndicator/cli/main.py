"""The `syndicator` command line: parses arguments, calls the modules, prints, sets the exit code.

Exit codes: 0 success, 1 bad input (each problem printed as `file:line: message`), 2 usage error.
Every `SyndicatorError` is caught here and nowhere else; `--verbose` adds the traceback.
Every message and help text written here goes through `_()` (syndicator/i18n.py), in English:
French when the admin's locale is; `scripts/update-catalogue` then adds it to the catalogue.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from syndicator import __version__
from syndicator.addresses import needs_smtputf8
from syndicator.bounces.reading import check_bounces, mailbox_name
from syndicator.cli.checks import check, database_error, known_terms, official_spelling
from syndicator.cli.progress import progress_bar
from syndicator.config.edit import add_subscriber, remove_subscriber
from syndicator.config.frequencies import FREQUENCIES
from syndicator.config.model import Config, config_path, load_config
from syndicator.config.subscribers import Subscriber
from syndicator.db.bounces import BOUNCED, COMPLAINT, BounceRecords, describe, state_of, why
from syndicator.db.ledger import UNBUILT, Ledger
from syndicator.db.runs import Runs
from syndicator.db.store import Store
from syndicator.db.subscribers import Roster
from syndicator.db.tokens import environment_secrets, secret_keys
from syndicator.digests.explain import explain
from syndicator.digests.render import mark_sample
from syndicator.digests.run import DigestRun
from syndicator.digests.send import open_send_run, send_digests
from syndicator.errors import ConfigError, Problem, SyndicatorError
from syndicator.feeds.build import update_feeds
from syndicator.i18n import _
from syndicator.ingest.reading import IngestReport, ingest, parse_many
from syndicator.mail.messages import shows_as_written
from syndicator.parsing.items import ParsedItem
from syndicator.privacy.erasure import forget, loaded
from syndicator.privacy.export import export
from syndicator.privacy.retention import purge
from syndicator.service.cycle import run_cycle
from syndicator.service.daemon import Daemon
from syndicator.service.runlock import Holder, RunnerLock
from syndicator.service.scheduler import JOBS, last_result, last_run, next_run
from syndicator.taxonomy.terms import slugify
from syndicator.taxonomy.territoires import Hierarchy

log = logging.getLogger("syndicator")
Command = Callable[[argparse.Namespace], int]
FAILURES_SHOWN = 50  # by `status`: a template error can fail every subscriber's digest
# Above these, mailbox providers throttle or block the sender for every subscriber (Gmail's and
# Yahoo's bulk-sender rules ask for a spam rate under 0.3 %): `status` warns.
HARD_BOUNCE_WARNING, COMPLAINT_WARNING = 0.02, 0.001


def _local(moment: datetime, zone: ZoneInfo) -> str:
    """A stored instant as the admin reads it: in the site's time zone, the zone named."""
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M %Z}"


def _print_problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def _database_ready(config: Config) -> None:
    """Raise a located `ConfigError` for a SQLite file that cannot be made, rather than let
    SQLAlchemy say it."""
    problem = database_error(config)
    if problem is not None:
        raise problem


def _open(config: Config) -> Store:
    _database_ready(config)
    return Store.open(config.database_url)


def _ingest_report(report: IngestReport) -> int:
    _print_problems(report.warnings)
    _print_problems(report.errors)
    print(report.summary())
    return 1 if report.errors else 0


def cmd_parse(args: argparse.Namespace) -> int:
    failed = False
    max_size = load_config(args.config).items.max_size
    for result in parse_many(args.files, max_size):
        if not isinstance(result, ParsedItem):
            _print_problems(result.problems())
            failed = True
            continue
        _print_problems(result.warnings)
        item = result.item
        if args.json:
            print(json.dumps(item.to_json(), ensure_ascii=False), flush=True)
        else:
            print(f"{item.file}: {item.title}\n  {item.url}", flush=True)
    return 1 if failed else 0


def cmd_ingest(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    paths = args.paths or [config.items_path]
    with _open(config) as store, progress_bar(_("Ingesting")) as progress:
        report = ingest(store, paths, progress=progress, max_size=config.items.max_size)
    return _ingest_report(report)


def cmd_check(args: argparse.Namespace) -> int:
    report = check(args.config)
    _print_problems(report.problems)
    for hint in report.hints:
        print(_("hint: {hint}").format(hint=hint), file=sys.stderr)
    if report.config is not None:
        state = _("OK") if report.ok else _("{count} problem(s)").format(count=len(report.problems))
        print(
            _("{file}: {count} item files checked, {state}").format(
                file=report.config.source, count=report.item_files, state=state
            )
        )
    return 0 if report.ok else 1


def cmd_feeds(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with _open(config) as store:
        report = update_feeds(store, config)
    print(report.summary())
    return 0


def _now() -> datetime:
    return datetime.now(UTC)


def _digests(store: Store, config: Config) -> DigestRun:
    return DigestRun(store, config, now=_now())


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
    with _open(config) as store:
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
        data = digests.message(digest, rendered, 0)[1]
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
    with _open(config) as store, progress_bar(_("Sending")) as progress:
        report = send_digests(
            _digests(store, config), frequency=args.frequency, dry_run=args.dry_run, progress=progress,
            run_id=args.run,
        )  # fmt: skip
    for failure in report.errors:
        print(failure, file=sys.stderr)
    if report.errors:
        print(_("hint: 'syndicator status' lists them; temporary failures are tried again by the next run"),
              file=sys.stderr)  # fmt: skip
    label = f"{args.worker_label}: " if args.worker_label else ""
    print(label + (_("dry run: ") if args.dry_run else "") + report.summary(), flush=True)
    return 1 if report.failed else 0


def _send_with_workers(args: argparse.Namespace, config: Config) -> int:
    """`digest send --workers N`: N identical worker processes sharing the send through the
    database (this one and N - 1 started here), each printing its own outcomes; the exit code
    is the worst of theirs."""
    with _open(config) as store:  # the schema brought up to date once, before the workers start
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
    with _open(config) as store:
        digests = _digests(store, config)
        subscriber = _subscriber(digests, args.email)
        ok, lines = explain(digests, subscriber, args.url)
        entry = digests.roster.suppressed.get(subscriber.key)
    if entry is not None:  # whatever the item, a suppressed address receives nothing
        ok = False
        since = _local(entry.since, ZoneInfo(config.site.timezone))
        lines.append(
            _("suppressed since {since} ({state}): {why}").format(
                since=since, state=state_of(entry.reason), why=why(entry)
            )
        )
    print("\n".join(lines))
    print(_("=> goes in the next digest") if ok else _("=> does not go to this subscriber"))
    return 0


def cmd_subscribers_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    zone = ZoneInfo(config.site.timezone)
    with _open(config) as store:
        ledger = Ledger(store)
        lasts, counts = ledger.lasts(), ledger.unfinished_counts()
        roster = Roster(config, store)
        suppressed = roster.suppressed
    rows = [(_("address"), _("name"), _("frequency"), _("interests"), _("source"), _("last digest"),
             _("state"))]  # fmt: skip
    sources = {"config": "config.yaml", "preferences": _("web preferences"), "signup": _("web sign-up")}
    for subscriber in roster.subscribers:
        source = sources[roster.sources[subscriber.key]]  # whose say it is
        lists = {"thématiques": subscriber.thematiques, "territoires": subscriber.territoires}
        lists["types"] = subscriber.types
        interests = "; ".join(f"{k}: {', '.join(v)}" for k, v in lists.items() if v) or _("everything")
        last = lasts.get(subscriber.key)
        entry = suppressed.get(subscriber.key)
        state = describe(entry) if entry else _("active")
        if counts.get(subscriber.key):
            state += _(", {count} pending").format(count=counts[subscriber.key])
        last_text = f"{_local(last.issued, zone)} {last.state}" if last else _("never")
        rows.append(
            (subscriber.email, subscriber.name or "", subscriber.frequency, interests, source, last_text,
             state)
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from syndicator.web.app import serve  # noqa: PLC0415 -- the web stack loads for this command only

    config = load_config(args.config)
    _database_ready(config)
    logging.getLogger("syndicator").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    port = config.web.port if args.port is None else args.port
    serve(config, args.host or config.web.host, port, access_log=args.verbose)
    return 0


def cmd_subscribers_add(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    # The terms are checked against the current file's territoires and the items' terms, and
    # stored as those spell them, so that what is written is what `check` accepts.
    try:
        config = load_config(path, environment=False)
    except ConfigError as exc:
        hint = _("{path} was not changed; fix it first").format(path=path)
        raise ConfigError(exc.problems(), hint=hint) from None
    hierarchy = Hierarchy.load(config.territoires)[0]
    known = known_terms(config)
    lists: dict[str, list[str]] = {}
    warnings: list[tuple[str, int, str]] = []
    for vocabulary, typed in (
        ("thematiques", args.thematique), ("territoires", args.territoire), ("types", args.type)
    ):  # fmt: skip
        lists[vocabulary] = []
        for label in (t for t in typed if t.strip()):
            spelling, warning = official_spelling(vocabulary, label, known, hierarchy)
            if warning:
                warnings.append((vocabulary, len(lists[vocabulary]), warning))
            lists[vocabulary].append(spelling)
    email = args.email.strip()
    add_subscriber(
        path, email, name=args.name, frequency=args.frequency,
        thematiques=lists["thematiques"], territoires=lists["territoires"], types=lists["types"],
    )  # fmt: skip
    print(_("{email} added to {path}").format(email=email, path=path))
    if warnings:
        added = load_config(path, environment=False)
        index = next(i for i, s in enumerate(added.subscribers) if s.email.strip().lower() == email.lower())
        _print_problems([
            Problem(str(path), added.line_of(["subscribers", index, vocabulary, position]),
                    f"{email}: {warning}", "warning")
            for vocabulary, position, warning in warnings
        ])  # fmt: skip
        print(_("hint: it matches no item until one has that term; fix it with 'syndicator subscribers "
                "remove' then 'add', or by hand"), file=sys.stderr)  # fmt: skip
    if needs_smtputf8(email):
        print(
            _(
                "{path}: warning: {email} has a part before '@' that is not ASCII: only a "
                "mail server offering SMTPUTF8 can deliver to it, elsewhere its digests fail"
            ).format(path=path, email=email),
            file=sys.stderr,
        )
    return 0


def _one_line_name(text: str) -> str:
    """`--name` as given, when emails can show it as it is: one line, no `=?`."""
    if not shows_as_written(text):
        raise argparse.ArgumentTypeError(
            _(
                "{text} has a line break, a control character or '=?', which emails cannot show; "
                "give the name on one line, as readers should see it"
            ).format(text=repr(text))
        )
    return text


def cmd_subscribers_remove(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    remove_subscriber(path, args.email)
    print(_("{email} removed from {path}").format(email=args.email.strip(), path=path))
    return 0


def cmd_subscribers_reactivate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with _open(config) as store:
        records = BounceRecords(store)
        suppressed = records.suppressions()
        key, entry = suppressed.filed_as(args.email), suppressed.get(args.email)
        if key is None or entry is None:
            raise SyndicatorError(
                _("{email} is not suppressed: nothing to lift").format(email=args.email.strip()),
                path=config.source,
                hint=_("'syndicator subscribers list' shows each address's state"),
            )
        if entry.reason == COMPLAINT:
            raise SyndicatorError(
                _("{email} complained about our mail ({why}): it is never lifted by hand").format(
                    email=args.email.strip(), why=why(entry)
                ),
                path=config.source,
                hint=_(
                    "only the person can: by signing up again on the web and following the confirmation link"
                ),
            )
        if entry.reason not in BOUNCED:
            raise SyndicatorError(
                _("{email} is suppressed because {why}, not because it bounced").format(
                    email=args.email.strip(), why=why(entry)
                ),
                path=config.source,
                hint=_(
                    "an unsubscription is the person's choice: they can undo it from their preferences link"
                ),
            )
        records.reactivate(key, _now())
    print(
        _("{email} reactivated (was: {why}); its soft bounces count from zero").format(
            email=args.email.strip(), why=why(entry)
        )
    )
    return 0


def cmd_bounces(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    settings = config.email.bounces
    if settings is None:
        raise SyndicatorError(
            _("no bounce mailbox: email.bounces is not set"),
            path=config.source,
            hint=_("add `bounces: {{address: {address}, maildir: bounces/}}` under email:").format(
                address="bounces@your.domain"
            ),
        )
    with _open(config) as store:
        report = check_bounces(store, config, secret_keys(store), _now())
    where = mailbox_name(config)
    for warning in report.warnings:
        print(warning, file=sys.stderr)
    for note in report.notes:
        print(f"{where}/{note}", file=sys.stderr)
    if report.notes:
        print(
            _("hint: these messages were moved to the 'unrecognised' folder for a person to read"),
            file=sys.stderr,
        )
    for address in report.suppressed:
        print(_("suppressed: {address}").format(address=address))
    print(report.summary())
    return 0


def _rates(store: Store, zone: ZoneInfo) -> None:
    """The hard-bounce and complaint rates of the last sends, and a warning past the limits."""
    for rate in BounceRecords(store).run_rates():
        hard, complaints = rate.hard / rate.sent, rate.complaints / rate.sent
        print(
            _(
                "bounces of {frequency} {when}: {sent} sent, {hard} hard ({hard_rate}), "
                "{complaints} complaints ({complaint_rate})"
            ).format(
                frequency=rate.frequency, when=_local(rate.issued, zone), sent=rate.sent, hard=rate.hard,
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


def cmd_subscribers_export(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    config = load_config(args.config, environment=False)
    with _open(config) as store:
        found = export(config, store, args.email, now=_now())
    if found is None:
        raise SyndicatorError(
            _("{email}: unknown address: not in this file, and the store holds nothing about it").format(
                email=args.email.strip()
            ),
            path=str(path),
            hint=_("check the spelling; 'syndicator subscribers list' shows who is subscribed"),
        )
    text = json.dumps(found, ensure_ascii=False, indent=2) + "\n"
    if args.output:
        _write_private(Path(args.output), text)
        print(_("{email}: exported to {path}").format(email=args.email.strip(), path=args.output))
    else:
        sys.stdout.write(text)
    return 0


def _write_private(path: Path, text: str) -> None:
    """Write personal data readable by its owner only (0600), replacing the file whole."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(partial, path)
    except OSError as exc:
        raise SyndicatorError(_("cannot write: {why}").format(why=exc.strerror), path=str(path)) from None


def cmd_subscribers_forget(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    config = loaded(path) if path.exists() else load_config(args.config)
    with _open(config) as store:
        erased = forget(path, store, args.email)
    print(_("{email} erased: {summary}").format(email=args.email.strip(), summary=erased.summary()))
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

    with _open(config) as store, RunnerLock(store, "purge", wait=args.wait, on_wait=waiting):
        report = purge(config, store, _now())
    for line in report.lines():
        print(line)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now, zone = _now(), ZoneInfo(config.site.timezone)
    with _open(config) as store:
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
                    frequency=run.frequency, number=run.number, when=_local(run.issued, zone),
                    totals=totals, workers=", ".join(workers) or _("none"),
                )
            )  # fmt: skip
        for job in JOBS:
            last, upcoming, result = last_run(store, job), next_run(config, job, now), last_result(store, job)
            done = _("last run {when}").format(when=_local(last, zone)) if last else _("never run")
            if result is not None:
                outcome = _("ok") if result[0] else _("with failures")
                done += " " + _("({outcome}: {detail})").format(outcome=outcome, detail=result[1])
            then = _("next {when}").format(when=_local(upcoming, zone)) if upcoming else _("no next run")
            print(_("job {job}: {done}; {then}").format(job=job, done=done, then=then))
    waiting = counts.get("pending", 0) + counts.get("sending", 0)
    failed = counts.get("failed", 0) + counts.get(UNBUILT, 0)  # built or not, a digest that failed
    print(
        _(
            "deliveries: {waiting} pending, {failed} failed, {sent} sent; {suppressed} suppressed addresses"
        ).format(waiting=waiting, failed=failed, sent=counts.get("sent", 0), suppressed=len(suppressed))
    )
    for row in failures[:FAILURES_SHOWN]:  # the subscribers whose latest digest failed, and why
        when = _local(row.issued, zone)
        print(_("failed: {subscriber} ({when}): {error}").format(
            subscriber=row.subscriber, when=when, error=row.error or _("no reason")
        ))  # fmt: skip
    if len(failures) > FAILURES_SHOWN:
        print(_("failed: … and {count} more subscribers").format(count=len(failures) - FAILURES_SHOWN))
    if config.email.bounces is not None:  # the rates come from the bounce mailbox
        with _open(config) as store:
            _rates(store, zone)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    environment_secrets()  # a bad secret stops the service at start, not at the first digest
    if not args.once:
        logging.getLogger("syndicator").setLevel(logging.DEBUG if args.verbose else logging.INFO)
        with _open(config) as store:
            return Daemon(config_path(args.config), config, store).serve()
    with _open(config) as store, RunnerLock(store, "run --once"), progress_bar(_("Ingesting")) as progress:
        report = run_cycle(config, store, progress=progress)
    code = _ingest_report(report.ingest)
    print(_("feeds: {summary}").format(summary=report.feeds.summary()))
    if report.bounces is not None:
        print(_("bounces: {summary}").format(summary=report.bounces.summary()))
        for warning in report.bounces.warnings:
            print(warning, file=sys.stderr)
    if report.bounce_error is not None:
        print(report.bounce_error, file=sys.stderr)  # reported; the digests went on all the same
    for frequency, sent in report.digests.items():
        print(_("digests ({frequency}): {summary}").format(frequency=frequency, summary=sent.summary()))
    if not report.digests:
        print(_("digests: none due"))
    failed = any(r.failed for r in report.digests.values()) or report.bounce_error is not None
    return code or (1 if failed else 0)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", help=_("config file (default: $SYNDICATOR_CONFIG, else ./config.yaml)")
    )
    common.add_argument("-v", "--verbose", action="store_true", help=_("log more, and show tracebacks"))

    parser = argparse.ArgumentParser(
        prog="syndicator", description=_("News items into RSS/Atom feeds and email digests.")
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Also before the command (`syndicator --config c.yaml check`); given after it too, that wins.
    parser.add_argument("--config", dest="config_before", metavar="PATH", help=_("as after COMMAND"))
    parser.add_argument("-v", "--verbose", dest="verbose_before", action="store_true", help=_("idem"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    sub = add("parse", cmd_parse, _("print parsed item files, the store untouched"))
    sub.add_argument("files", nargs="+", metavar="FILE")
    sub.add_argument("--json", action="store_true", help=_("one JSON object a line"))

    sub = add("ingest", cmd_ingest, _("read item files into the store (default: items.path)"))
    sub.add_argument("paths", nargs="*", metavar="PATH")

    add("feeds", cmd_feeds, _("(re)build the feeds and their indexes from the store"))

    add("status", cmd_status, _("jobs' last and next runs, deliveries pending, failed and suppressed"))

    add("check", cmd_check, _("validate config.yaml and the item files; exit 1 on any problem"))

    add(
        "bounces",
        cmd_bounces,
        _("read the bounce mailbox: suppress hard bounces and complaints, count soft ones"),
    )

    sub = add("explain", cmd_explain, _("why an item goes, or does not go, to a subscriber"))
    sub.add_argument("email", metavar="EMAIL")
    sub.add_argument("url", metavar="URL")

    digest = commands.add_parser(
        "digest", help=_("preview or send digests"), description=_("preview or send digests")
    )
    digest_commands = digest.add_subparsers(dest="digest_command", required=True, metavar="COMMAND")
    sub = digest_commands.add_parser(
        "preview", parents=[common], help=_("write a subscriber's next digest to files")
    )
    sub.set_defaults(handler=cmd_digest_preview)
    sub.add_argument("email", metavar="EMAIL")
    sub.add_argument("--out", metavar="DIR", default=".", help=_("folder for the .html, .txt and .eml files"))
    sub = digest_commands.add_parser("send", parents=[common], help=_("build and deliver digests now"))
    sub.set_defaults(handler=cmd_digest_send)
    sub.add_argument("--frequency", choices=FREQUENCIES, help=_("only the subscribers of this frequency"))
    sub.add_argument("--dry-run", action="store_true", help=_("build and count, record and deliver nothing"))
    sub.add_argument(
        "--workers", type=_positive, default=1, metavar="N",
        help=_("N worker processes share the send (more may run on other machines against the same "
               "database)"),
    )  # fmt: skip
    sub.add_argument("--worker-label", default="", help=argparse.SUPPRESS)
    sub.add_argument("--run", type=int, default=None, help=argparse.SUPPRESS)  # the run --workers opened

    subscribers = commands.add_parser(
        "subscribers", help=_("list, add or remove subscribers in config.yaml; export or erase one's data")
    )
    subscriber_commands = subscribers.add_subparsers(
        dest="subscribers_command", required=True, metavar="COMMAND"
    )
    sub = subscriber_commands.add_parser("list", parents=[common], help=_("every subscriber and their state"))
    sub.set_defaults(handler=cmd_subscribers_list)
    sub = subscriber_commands.add_parser(
        "add", parents=[common], help=_("add a subscriber, keeping comments")
    )
    sub.set_defaults(handler=cmd_subscribers_add)
    sub.add_argument("email", metavar="EMAIL")
    sub.add_argument("--name", type=_one_line_name)
    sub.add_argument("--frequency", choices=FREQUENCIES, default="weekly")
    sub.add_argument(
        "--thematique", action="append", default=[], metavar="NAME", help=_("repeat for several")
    )
    sub.add_argument(
        "--territoire", action="append", default=[], metavar="NAME", help=_("repeat for several")
    )
    sub.add_argument("--type", action="append", default=[], metavar="NAME", help=_("repeat for several"))
    sub = subscriber_commands.add_parser(
        "remove", parents=[common], help=_("remove a subscriber, keeping comments")
    )
    sub.set_defaults(handler=cmd_subscribers_remove)
    sub.add_argument("email", metavar="EMAIL")
    sub = subscriber_commands.add_parser(
        "reactivate", parents=[common], help=_("lift a bounce suppression (never a complaint)")
    )
    sub.set_defaults(handler=cmd_subscribers_reactivate)
    sub.add_argument("email", metavar="EMAIL")

    sub = subscriber_commands.add_parser(
        "export", parents=[common], help=_("everything held about an address, as JSON (RGPD access)")
    )
    sub.set_defaults(handler=cmd_subscribers_export)
    sub.add_argument("email", metavar="EMAIL")
    sub.add_argument(
        "-o", "--output", metavar="FILE", help=_("write it to FILE (mode 0600) instead of printing")
    )
    sub = subscriber_commands.add_parser(
        "forget", parents=[common], help=_("erase an address from config.yaml and the store (RGPD erasure)")
    )
    sub.set_defaults(handler=cmd_subscribers_forget)
    sub.add_argument("email", metavar="EMAIL")

    sub = add(
        "purge", cmd_purge, _("apply the retention periods of privacy.retention now, and say what went")
    )
    sub.add_argument(
        "--wait", type=float, default=300.0, metavar="SECONDS",
        help=_("how long to wait for a running 'syndicator run' to let go of the store (default: 300)"),
    )  # fmt: skip

    sub = add("serve", cmd_serve, _("the web app: feeds, unsubscribe, preferences and sign-up pages"))
    sub.add_argument("--host", help=_("address to listen on (default: web.host)"))
    sub.add_argument("--port", type=int, help=_("port to listen on (default: web.port)"))

    sub = add(
        "run", cmd_run, _("the daemon: jobs on their schedule until SIGTERM (--once: one cycle, then exit)")
    )
    sub.add_argument("--once", action="store_true", help=_("one cycle now, then exit"))
    return _localized(parser)


class _Formatter(argparse.HelpFormatter):
    """argparse's help, its `usage:` in the admin's language."""

    def add_usage(
        self,
        usage: str | None,
        actions: Iterable[argparse.Action],
        groups: Iterable[argparse._MutuallyExclusiveGroup],
        prefix: str | None = None,
    ) -> None:
        super().add_usage(usage, actions, groups, _("usage: ") if prefix is None else prefix)


def _localized(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser` and every subcommand's with argparse's own words (section titles, `-h`,
    `--version`) in the admin's language: argparse takes them from a catalogue of its own."""
    parser.formatter_class = _Formatter
    parser._positionals.title = _("positional arguments")
    parser._optionals.title = _("options")
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            action.help = _("show this help message and exit")
        elif isinstance(action, argparse._VersionAction):
            action.help = _("show the version number and exit")
        elif isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _localized(sub)
    return parser


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(_("not a whole number: {value}").format(value=repr(value))) from None
    if not 1 <= number <= 64:
        raise argparse.ArgumentTypeError(_("must be between 1 and 64, not {number}").format(number=number))
    return number


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `syndicator` console script."""
    args = _parser().parse_args(argv)
    args.config = getattr(args, "config", None) or args.config_before
    args.verbose = getattr(args, "verbose", False) or args.verbose_before
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # flufl.bounce logs each detector it tries, and a traceback for each odd message before it
    # raises; syndicator reports such a message itself (syndicator/bounce_parse.py).
    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
    handler: Command = args.handler
    try:
        return handler(args)
    except SyndicatorError as exc:
        if args.verbose:
            traceback.print_exc()
        _print_problems(exc.problems())
        if exc.hint:
            print(_("hint: {hint}").format(hint=exc.hint), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `syndicator status | head`: the reader has what it wanted
        # Python would report the pipe again when flushing stdout at exit: point it at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a command ended by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
