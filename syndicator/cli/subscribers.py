"""`syndicator subscribers list|add|remove|reactivate|export|forget`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from syndicator.addresses import needs_smtputf8
from syndicator.cli.checks import known_terms, official_spelling
from syndicator.cli.common import local_time, open_store, print_problems, utc_now
from syndicator.config.edit import add_subscriber, remove_subscriber
from syndicator.config.model import config_path, load_config
from syndicator.db.bounces import BOUNCED, COMPLAINT, BounceRecords, describe, why
from syndicator.db.ledger import Ledger
from syndicator.db.subscribers import Roster
from syndicator.errors import ConfigError, Problem, SyndicatorError
from syndicator.i18n import _, shown
from syndicator.privacy.erasure import forget, loaded
from syndicator.privacy.export import export
from syndicator.taxonomy.territoires import Hierarchy


def cmd_subscribers_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    zone = ZoneInfo(config.site.timezone)
    with open_store(config) as store:
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
        last_text = f"{local_time(last.issued, zone)} {last.state}" if last else _("never")
        rows.append(
            (subscriber.email, subscriber.name or "", subscriber.frequency, interests, source, last_text,
             state)
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
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
        print_problems([
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


def cmd_subscribers_remove(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    remove_subscriber(path, args.email)
    print(_("{email} removed from {path}").format(email=args.email.strip(), path=path))
    return 0


def cmd_subscribers_reactivate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with open_store(config) as store:
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
        records.reactivate(key, utc_now())
    print(
        _("{email} reactivated (was: {why}); its soft bounces count from zero").format(
            email=args.email.strip(), why=why(entry)
        )
    )
    return 0


def cmd_subscribers_export(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    config = load_config(args.config, environment=False)
    with open_store(config) as store:
        found = export(config, store, args.email, now=utc_now())
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
    with open_store(config) as store:
        erased = forget(path, store, args.email)
    print(_("{email} erased: {summary}").format(email=args.email.strip(), summary=shown(erased.summary())))
    return 0
