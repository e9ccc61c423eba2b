"""`syndicator check`: every problem with config.yaml, the templates and the item files."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .choices import UNSUBSCRIBED
from .config import Config, load_config
from .delivery import dkim_key
from .errors import ConfigError, Problem, StoreError
from .ingest import IngestReport, parse_many, scan
from .items import VOCABULARIES, ParsedItem
from .ledger import Ledger
from .store import Store
from .taxonomy import term_key
from .templating import environment, template_problems
from .territoires import Hierarchy


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
    report.problems.extend(template_problems(environment(report.config.templates_path)))
    try:
        dkim_key(report.config)
    except ConfigError as exc:
        report.problems.extend(exc.problems())
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
                    f"same source URL as {first_file[url]}; only the one modified last is kept",
                    "warning",
                )
            )
        first_file.setdefault(url, file.path)
    report.problems += subscription_problems(report.config, known, hierarchy)
    report.problems += unsubscribed_problems(report.config)
    return report


def _suppressed(config: Config) -> dict[str, tuple[str, datetime]]:
    """The store's suppression list; empty when the store is a SQLite file not made yet."""
    url = config.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return {}
    with Store.open(url) as store:
        return Ledger(store).suppressed()


def unsubscribed_problems(config: Config) -> list[Problem]:
    """A warning for each address config.yaml lists that unsubscribed (a link in a digest):
    it receives nothing, and listing it again does not subscribe it again."""
    if not config.subscribers:
        return []
    try:
        suppressed = _suppressed(config)
    except StoreError as exc:
        return [Problem(config.source, None, f"cannot read the unsubscribed addresses: {exc.message}",
                        "warning")]  # fmt: skip
    problems = []
    for index, subscriber in enumerate(config.subscribers):
        reason, since = suppressed.get(subscriber.email.strip().lower(), ("", None))
        if reason == UNSUBSCRIBED and since is not None:
            problems.append(Problem(
                config.source, config.line_of(["subscribers", index]),
                f"{subscriber.email} unsubscribed on {since:%Y-%m-%d} and receives nothing, listed here "
                "or not; remove it (only they can subscribe again, from their preferences link)",
                "warning",
            ))  # fmt: skip
    return problems


def _territoire_label(hierarchy: Hierarchy, label: str, path: str) -> list[Problem]:
    resolution = hierarchy.resolve(label)
    if resolution.ambiguous:
        places = ", ".join(f"{p.name} ({p.code})" for p in resolution.candidates)
        return [Problem(path, None, f"territoire '{label}' is ambiguous ({places}); add an alias "
                        f"under territoires: in config.yaml", "warning")]  # fmt: skip
    if resolution.place is None:
        return [Problem(path, None, f"territoire '{label}' is in no hierarchy: it matches only itself; "
                        f"place it under territoires: in config.yaml", "warning")]  # fmt: skip
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


def _unknown(vocabulary: str, label: str, known: dict[str, str], hierarchy: Hierarchy) -> str | None:
    kind = _SINGULAR[vocabulary]
    if vocabulary == "territoires":
        resolution = hierarchy.resolve(label)
        if resolution.ambiguous:
            options = " or ".join(f"'{p.name} ({p.code[:2]})'" for p in resolution.candidates)
            return f"{kind} '{label}' is ambiguous: write {options}"
        if resolution.place is not None:
            return None
    if term_key(label) in known:
        return None
    names = list(known.values())
    guesses = difflib.get_close_matches(label, names, n=3, cutoff=0.6)
    if vocabulary == "territoires":
        guesses += [g for g in hierarchy.suggest(label) if g not in guesses]
    hint = f"; did you mean {' or '.join(repr(g) for g in guesses[:3])}?" if guesses else ""
    return f"unknown {kind} '{label}'{hint}"
