"""`syndicator check`: every problem with config.yaml, the templates and the item files."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from syndicator.bounces.reading import bounce_problems
from syndicator.cli.common import database_error, print_problems
from syndicator.config.model import Config, load_config
from syndicator.db.choices import UNSUBSCRIBED, load_choices, signups
from syndicator.db.ledger import Ledger
from syndicator.db.store import Store
from syndicator.db.tokens import (
    OLD_SECRET_ENV,
    SECRET_ENV,
    SecretError,
    environment_secrets,
    list_like_secret,
    misnamed_secrets,
)
from syndicator.errors import ConfigError, Problem, StoreError
from syndicator.i18n import N_, _, shown
from syndicator.ingest.reading import IngestReport, parse_many, scan
from syndicator.mail.dkim import dkim_key
from syndicator.mail.messages import header_text, shows_as_written
from syndicator.parsing.items import VOCABULARIES, ParsedItem
from syndicator.service.scheduler import JOBS, next_run
from syndicator.taxonomy.terms import close_matches, term_key
from syndicator.taxonomy.territoires import Hierarchy
from syndicator.templating import environment, template_problems


@dataclass(slots=True)
class CheckReport:
    """The problems found, and how much was looked at."""

    problems: list[Problem] = field(default_factory=list)
    item_files: int = 0
    config: Config | None = None
    hints: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(config_file: str | None) -> CheckReport:
    """Validate config.yaml and, when it loads, every item file it points at."""
    report = CheckReport()
    try:
        report.config = load_config(config_file)
    except ConfigError as exc:
        report.problems.extend(exc.problems())
        report.hints.extend([exc.hint] if exc.hint else [])
        return report
    database = database_error(report.config)
    if database is not None:
        report.problems.extend(database.problems())
        report.hints.extend([database.hint] if database.hint else [])
    report.problems += schedule_problems(report.config, datetime.now(UTC))
    report.problems.extend(template_problems(environment(report.config.templates_path)))
    try:
        dkim_key(report.config)
    except ConfigError as exc:
        report.problems.extend(exc.problems())
    _check_secrets(report)
    _check_private_files(report, report.config)
    scanned = IngestReport()
    files = scan([report.config.items_path], scanned)
    report.problems.extend(scanned.errors)
    report.item_files = len(files)
    first_file: dict[str, str] = {}
    known: dict[str, dict[str, str]] = {v: {} for v in VOCABULARIES}
    hierarchy, messages = Hierarchy.load(report.config.territoires)
    report.problems += [Problem(report.config.source, None, m) for m in messages]
    parsed = parse_many([f.path for f in files], report.config.items.max_size)
    for file, result in zip(files, parsed, strict=True):
        if not isinstance(result, ParsedItem):
            report.problems.extend(result.problems())
            continue
        report.problems.extend(result.warnings)
        for term in result.item.terms:
            known[term.vocabulary].setdefault(term_key(term.name), term.name)
            if term.vocabulary == "territoires":
                report.problems += _territoire_label(hierarchy, term.name, file.path)
        url = result.item.url
        if url in first_file:
            report.problems.append(
                Problem(
                    file.path,
                    result.source_line,
                    _("same source URL as {file}; only the one modified last is kept").format(
                        file=first_file[url]
                    ),
                    "warning",
                )
            )
        first_file.setdefault(url, file.path)
    report.problems += subscription_problems(report.config, known, hierarchy)
    report.problems += unsubscribed_problems(report.config)
    report.problems += missing_config_problems(report.config)
    report.problems += audience_problems(report.config)
    report.problems += report.config.address_warnings()
    report.problems += email_problems(report.config)
    report.problems += bounce_problems(report.config)
    report.problems += privacy_problems(report.config)
    return report


def privacy_problems(config: Config) -> list[Problem]:
    """A warning when the web app is configured (`web:`) and the RGPD notice lacks what the
    law requires: who holds the data, where, and whom to ask."""
    missing = config.privacy.missing()
    if "web" not in config.model_fields_set or not missing:
        return []
    where = ["privacy"] if "privacy" in config.model_fields_set else ["web"]
    return [Problem(
        config.source, config.line_of(where),
        _("privacy: {keys} not set: the sign-up page, the emails and /confidentialite "
          "must say who holds the data and whom to ask (RGPD article 13); add them under privacy: "
          "(see docs/privacy.md)").format(keys=", ".join(missing)),
        "warning",
    )]  # fmt: skip


def _check_secrets(report: CheckReport) -> None:
    """The secrets in the environment: long enough, and not a list of the first releases."""
    try:
        environment_secrets()
    except SecretError as exc:
        report.problems.extend(exc.problems())
        report.hints.extend([exc.hint] if exc.hint else [])
        return
    for name in misnamed_secrets():
        report.problems.append(Problem(
            f"${name}", None,
            _("syndicator reads no such variable; a former secret goes in {old} or "
              "{old}_<name>, the current one in {current}").format(old=OLD_SECRET_ENV, current=SECRET_ENV),
            "warning",
        ))  # fmt: skip
    if list_like_secret():
        report.problems.append(Problem(
            f"${SECRET_ENV}", None,
            _("holds spaces or commas between parts as long as secrets: it is one secret, whole, no "
              "longer a list; links sealed with its last part no longer open"),
            "warning",
        ))  # fmt: skip
        report.hints.append(
            _("keep the newest part in {current} and each older one in SYNDICATOR_OLD_SECRET_<name>").format(
                current=SECRET_ENV
            )
        )


def _check_private_files(report: CheckReport, config: Config) -> None:
    """A warning for the DKIM key or the SQLite database (it may hold the links' secret, and holds
    every address) when users other than the owner may read them."""
    files = []
    if config.email.dkim is not None:
        files.append((_("the DKIM private key"), config.resolve(config.email.dkim.key)))
    url = config.database_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        database = Path(url.removeprefix("sqlite:///"))
        files += [
            (_("the database"), database.with_name(database.name + suffix)) for suffix in ("", "-wal", "-shm")
        ]
    for what, path in files:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue  # not made yet, or reported above
        if mode & 0o066:
            report.problems.append(Problem(
                str(path), None,
                _("{what} is open to other users (mode {mode}); make it private: chmod 600 {path}").format(
                    what=what, mode=f"{mode:04o}", path=path
                ),
                "warning",
            ))  # fmt: skip


def _keys(config: Config) -> set[str]:
    """The top-level keys the config file sets (not those left to their defaults)."""
    return set(config.model_fields_set)


_NEVER = {
    "refresh": N_("items would never be read, feeds never rebuilt, immediate digests never sent"),
    "daily": N_("the daily digests would never be sent"),
    "weekly": N_("the weekly digests would never be sent"),
    "monthly": N_("the monthly digests would never be sent"),
}


def schedule_problems(config: Config, now: datetime) -> list[Problem]:
    """A warning for each schedule: time that never comes, like the 31st of February."""
    return [
        Problem(
            config.source,
            config.line_of(["schedule", job]) if "schedule" in _keys(config) else None,
            _("schedule.{job}: {time!r} never comes (none of its months has such a day): {then}").format(
                job=job, time=getattr(config.schedule, job), then=shown(_NEVER[job])
            ),
            "warning",
        )
        for job in JOBS
        if next_run(config, job, now) is None
    ]


def _signed_up(config: Config) -> int:
    """How many confirmed web sign-ups the store holds; 0 when it does not exist yet."""
    url = config.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return 0
    with Store.open(url) as store:
        return len(signups(load_choices(store)))


def missing_config_problems(config: Config) -> list[Problem]:
    """A warning when there is no config file at the default place: every command then runs on
    the defaults, in the current folder (the usual cause: the wrong folder)."""
    if Path(config.source).exists():
        return []
    return [Problem(
        config.source, None,
        _("no such file: every setting is the default one (items/, feeds/ and syndicator.db in "
          "this folder, no subscribers); run syndicator in the folder of your config.yaml, or "
          "pass --config PATH"),
        "warning",
    )]  # fmt: skip


def audience_problems(config: Config) -> list[Problem]:
    """A warning when no one would receive a digest: config.yaml lists no subscriber and the
    store holds no confirmed web sign-up."""
    if config.subscribers:
        return []
    try:
        signed_up = _signed_up(config)
    except StoreError:
        signed_up = 0  # the database problem is reported on its own; say what is missing too
    if signed_up:
        return []
    line = config.line_of(["subscribers"]) if "subscribers" in _keys(config) else None
    return [Problem(
        config.source, line,
        _("no subscribers, so no digest will be sent: list some under subscribers: "
          "('syndicator subscribers add EMAIL' does it), or let people sign up at "
          "{url}/subscribe ('syndicator serve')").format(url=config.web.base_url.rstrip("/")),
        "warning",
    )]  # fmt: skip


def _suppressed(config: Config) -> Mapping[str, tuple[str, datetime]]:
    """The store's suppression list; empty when the store is a SQLite file not made yet."""
    url = config.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return {}
    with Store.open(url) as store:
        return Ledger(store).suppressed()


def unsubscribed_problems(config: Config) -> list[Problem]:
    """A warning for each address config.yaml lists that unsubscribed (a link in a digest):
    it receives nothing, and listing it again does not subscribe it again."""
    if not config.subscribers or database_error(config) is not None:
        return []  # a database that cannot be used is reported on its own
    try:
        suppressed = _suppressed(config)
    except StoreError as exc:
        message = _("cannot read the unsubscribed addresses: {why}").format(why=shown(exc.message))
        return [Problem(config.source, None, message, "warning")]
    problems = []
    for index, subscriber in enumerate(config.subscribers):
        reason, since = suppressed.get(subscriber.email.strip().lower(), ("", None))
        if reason == UNSUBSCRIBED and since is not None:
            since = since.astimezone(config.site.zone)
            problems.append(Problem(
                config.source, config.line_of(["subscribers", index]),
                _("{email} unsubscribed on {since:%Y-%m-%d} and receives nothing, listed here "
                  "or not; remove it (only they can subscribe again, from their preferences link)").format(
                    email=subscriber.email, since=since
                ),
                "warning",
            ))  # fmt: skip
    return problems


def email_problems(config: Config) -> list[Problem]:
    """What would make emails wrong for every reader: with the smtp transport, a `web.base_url`
    no reader can reach (loopback: an error) or not https (a warning: the links travel in clear
    and one-click unsubscription, RFC 8058, is not offered); and a subscriber name that emails
    would not show as written (a line break, a control character, `=?`), a warning."""
    problems = []
    base_url = config.web.base_url
    if config.email.transport == "smtp":
        line = config.line_of(["web", "base_url"]) or config.line_of(["web"])
        if _loopback(base_url):
            problems.append(Problem(
                config.source, line,
                _("web.base_url is {url!r}, a loopback address: the unsubscribe and preferences links "
                  "of every email sent by smtp would lead nowhere; set web.base_url to the public https "
                  "address of 'syndicator serve' (e.g. https://lettre.example.org)").format(url=base_url),
            ))  # fmt: skip
        elif urlsplit(base_url).scheme.lower() != "https":
            problems.append(Problem(
                config.source, line,
                _("web.base_url {url!r} is not https: the links of emails travel in clear and "
                  "one-click unsubscription (List-Unsubscribe-Post) is not offered; use an https:// address"
                  ).format(url=base_url),
                "warning",
            ))  # fmt: skip
    for index, subscriber in enumerate(config.subscribers):
        name = subscriber.name or ""
        if not shows_as_written(name):
            problems.append(Problem(
                config.source, config.line_of(["subscribers", index, "name"]),
                _("{email}: the name {name!r} has a line break, a control character or '=?'; "
                  "emails show it as {shown!r}: write it on one line").format(
                    email=subscriber.email, name=name, shown=header_text(name)
                ),
                "warning",
            ))  # fmt: skip
    return problems


def _loopback(url: str) -> bool:
    """Whether `url` names this machine only (or no host at all)."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return True
    if not host or host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _territoire_label(hierarchy: Hierarchy, label: str, path: str) -> list[Problem]:
    resolution = hierarchy.resolve(label)
    if resolution.ambiguous:
        places = ", ".join(f"{p.name} ({p.code})" for p in resolution.candidates)
        message = _("territoire '{label}' is ambiguous ({places}); add an alias under territoires: in "
                    "config.yaml").format(label=label, places=places)  # fmt: skip
        return [Problem(path, None, message, "warning")]
    if resolution.place is None:
        message = _("territoire '{label}' is in no hierarchy: it matches only itself; place it under "
                    "territoires: in config.yaml").format(label=label)  # fmt: skip
        return [Problem(path, None, message, "warning")]
    return []


_SINGULAR = {"thematiques": "thématique", "territoires": "territoire", "types": "type"}


def subscription_problems(
    config: Config, known: dict[str, dict[str, str]], hierarchy: Hierarchy
) -> list[Problem]:
    """Subscribers' interests that name no known term: the items' terms, and for territoires the
    hierarchy too. Each with its config line and a "did you mean"."""
    problems = []
    for index, subscriber in enumerate(config.subscribers):
        for vocabulary in VOCABULARIES:
            for position, label in enumerate(getattr(subscriber, vocabulary)):
                line = config.line_of(["subscribers", index, vocabulary, position])
                message = _unknown(vocabulary, label, known[vocabulary], hierarchy)
                if message:
                    problems.append(Problem(config.source, line, f"{subscriber.email}: {message}"))
    return problems


def known_terms(config: Config) -> dict[str, dict[str, str]]:
    """The term names items use, by vocabulary then key: the store's, or when it holds none yet
    (no `ingest` run), those of the item files under items.path."""
    known: dict[str, dict[str, str]] = {v: {} for v in VOCABULARIES}
    url = config.database_url
    if not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).is_file():
        # An unreadable store: the item files still tell.
        with contextlib.suppress(StoreError), Store.open(url) as store:
            for term in store.terms().values():
                known[term.vocabulary].setdefault(term_key(term.name), term.name)
    if any(known.values()):
        return known
    files = scan([config.items_path], IngestReport())
    for result in parse_many([f.path for f in files]):
        if isinstance(result, ParsedItem):
            for found in result.item.terms:
                known[found.vocabulary].setdefault(term_key(found.name), found.name)
    return known


def official_spelling(
    vocabulary: str, label: str, known: dict[str, dict[str, str]], hierarchy: Hierarchy
) -> tuple[str, str | None]:
    """The spelling to store for a term an admin typed, and a warning when it names nothing known.

    A territoire of the hierarchy is stored under its official name (with its département for a
    homonym: `Saint-Aubin (59)`); another term as items spell it (`sante` → `Santé`); an unknown
    one as typed, with the message `check` would give."""
    label = " ".join(label.split())
    if vocabulary == "territoires" and (place := hierarchy.resolve(label).place) is not None:
        return hierarchy.label(place.code), None
    if (key := term_key(label)) in known[vocabulary]:
        return known[vocabulary][key], None
    return label, _unknown(vocabulary, label, known[vocabulary], hierarchy)


def _unknown(vocabulary: str, label: str, known: dict[str, str], hierarchy: Hierarchy) -> str | None:
    kind = _SINGULAR[vocabulary]
    if vocabulary == "territoires":
        resolution = hierarchy.resolve(label)
        if resolution.ambiguous:
            options = _(" or ").join(f"'{p.name} ({p.code[:2]})'" for p in resolution.candidates)
            return _("{kind} '{label}' is ambiguous: write {options}").format(
                kind=kind, label=label, options=options
            )
        if resolution.place is not None:
            return None
    if term_key(label) in known:
        return None
    if vocabulary == "territoires" and (elsewhere := hierarchy.outside(label)):
        return _(
            "territoire '{label}' is {places}, outside Hauts-de-France; items name "
            "places of Hauts-de-France only: follow one of those, or remove it"
        ).format(label=label, places=_(" or ").join(elsewhere))
    guesses = close_matches(label, list(known.values()))
    if vocabulary == "territoires":
        guesses += [g for g in hierarchy.suggest(label) if g not in guesses]
    options = _(" or ").join(repr(g) for g in guesses[:3])
    hint = _("; did you mean {options}?").format(options=options) if guesses else ""
    return _("unknown {kind} '{label}'{hint}").format(kind=kind, label=label, hint=hint)


def cmd_check(args: argparse.Namespace) -> int:
    report = check(args.config)
    print_problems(report.problems)
    for hint in report.hints:
        print(_("hint: {hint}").format(hint=shown(hint)), file=sys.stderr)
    if report.config is not None:
        state = _("OK") if report.ok else _("{count} problem(s)").format(count=len(report.problems))
        print(
            _("{file}: {count} item files checked, {state}").format(
                file=report.config.source, count=report.item_files, state=state
            )
        )
    return 0 if report.ok else 1
