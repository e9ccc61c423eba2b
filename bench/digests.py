"""Benchmark of the digests: choosing and rendering every subscriber's next digest, and sending them.

It generates N item files (default 10,000) with the generator and the vocabulary of
`bench/feeds.py` (15 thématiques, 40 territoires from the région down to communes, 5 types),
published over the 60 days before a fixed NOW (2026-11-26 08:00, Europe/Paris) so that each
frequency's look-back matters, and ingests them into a fresh SQLite store as first seen an hour
before NOW. It writes a `config.yaml` with M subscribers (default 10,000): 5% immediate, 25%
daily, 50% weekly, 20% monthly; 0–3 thématiques, 0–2 territoires at any level (some not on any
item, such as `Hem` under the Métropole Européenne de Lille, some spelt as an alias, a code or a
slug) and 0–2 types each, about 7% with no interest at all; `email.max_items: 30` and the
default look-backs (2, 2, 14 and 62 days). Generation, ingest and the config are seeded and not
part of the figures.

Then, through the public API of `syndicator.digests.send`, it measures in this process:

1. loading: `load_config` (shown, no target) and `DigestRun(store, config, now=NOW)`;
2. selection: `DigestRun.next_digest` for every subscriber, and rendering: `DigestRun.render` for
   every non-empty digest, timed apart (target: both together < 20 s); with the number of
   non-empty digests, the items per digest and the largest HTML part;
3. the peak RSS of load + selection + rendering alone (target < 300 MB), in a child process
   that does nothing else: this script run again with a hidden option. Linux counts in a
   process's `ru_maxrss` the peak RSS of the process it was spawned from (exec keeps the figure
   of the memory it replaces), so the child forks once more and the work runs in the
   grandchild, whose `getrusage(RUSAGE_SELF)` starts from the child's small footprint (the
   interpreter and the imports, then the config; the table shows both). Its digests must be
   byte-identical to this process's;
4. `send_digests(DigestRun(...), transport=...)` for every subscriber, once: the real path, which
   records each digest and its items in the ledger, with a transport that claims each message
   and only counts bytes. The peak RSS of this process before and after it is shown: it grows
   only if the send needs more memory than everything before it (no target).

Results are checked: for a seeded sample of 200 subscribers, an independent reading of
The matching and digest rules of docs/architecture.md (every stored item in the subscriber's look-back whose
thématiques, territoires — same place, below or above — and type meet each non-empty list) must
give exactly the digest's items, newest first, at most 30 shown in sections, each shown link in
both parts; `send_digests` must send one message per non-empty digest and the ledger must hold
the sample's items.

It prints a table (measure, figure, target, OK/MISSED) and exits 0 whatever the speed; it exits
1 only when a result is wrong. With `--profile` it also runs selection and rendering once more
under cProfile (before the send, which would leave nothing to select) and prints where the time
goes in each.

Run from the project's root:

    .venv/bin/python bench/digests.py                       # 10,000 items, 10,000 subscribers
    .venv/bin/python bench/digests.py --items 2000 --subscribers 1000
    .venv/bin/python bench/digests.py --keep /tmp/digests-bench --profile
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import html
import json
import os
import pstats
import random
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from syndicator.config.frequencies import Frequency
from syndicator.config.model import Config, load_config
from syndicator.db.ledger import Ledger
from syndicator.db.store import Store
from syndicator.digests.run import DigestRun
from syndicator.digests.select import OTHER_SECTION, Digest
from syndicator.digests.send import send_digests
from syndicator.ingest.reading import ingest
from syndicator.mail.messages import RenderedEmail
from syndicator.mail.transports import Claim, Done, Outgoing, Result
from syndicator.parsing.items import NewsItem
from syndicator.taxonomy.terms import term_key
from syndicator.taxonomy.territoires import Hierarchy

# bench/ingest.py and bench/feeds.py (which sorts with syndicator: the project has a feeds/ folder):
# the folder of the script being run is the first entry of sys.path.
import ingest as item_generator
from feeds import THEMATIQUES, TYPES, bench_corpus, territoires
from ingest import SHIPPED_ITEMS, Results, Row, generate, load_corpus

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=PARIS)
INGESTED = (NOW - timedelta(hours=1)).astimezone(UTC)  # when the store first saw every item
SPAN_DAYS = 60  # items are published on the SPAN_DAYS days up to NOW's
SEED = 20261126
SAMPLE = 200  # subscribers whose digests are checked against the rules
MAX_ITEMS = 30  # email.max_items
TARGET_SECONDS = 20.0  # selection + rendering of every digest
TARGET_RSS_MB = 300.0
CHILD_OPTION = "--memory-child"

FREQUENCIES: tuple[tuple[Frequency, int], ...] = (
    ("immediate", 5), ("daily", 25), ("weekly", 50), ("monthly", 20),
)  # fmt: skip
# The default look-backs in days (docs/architecture.md, Digest rule); the config leaves them so.
LOOKBACK: Mapping[str, int] = {"immediate": 2, "daily": 2, "weekly": 14, "monthly": 62}
# How many terms of each vocabulary a subscriber follows, with weights: P(no interest) ≈ 7%.
THEMATIQUE_COUNTS = ((0, 1, 2, 3), (30, 40, 20, 10))
TERRITOIRE_COUNTS = ((0, 1, 2), (40, 45, 15))
TYPE_COUNTS = ((0, 1, 2), (60, 30, 10))
# Territoires subscribers follow that no item carries: they match through the hierarchy
# (Hem is under the MEL, Nord and the région), or are another name of an item's territoire.
EXTRA_TERRITOIRES = (
    "Hem", "Croix", "Wasquehal", "Maubeuge", "Saint-Omer", "Hénin-Beaumont",
    "CA du Pays de Saint-Omer", "MEL", "HDF", "Amiens Métropole", "59",
)  # fmt: skip
FIRST_NAMES = (
    "Marie", "Jean", "Camille", "Nicolas", "Sophie", "Julien", "Émilie", "Thomas", "Nathalie",
    "François", "Aurélie", "Mehdi", "Fatima", "Hélène", "Karim", "Céline", "Benoît", "Inès",
    "Grégory", "Léa",
)  # fmt: skip
LAST_NAMES = (
    "Martin", "Dupont", "Lefebvre", "Leroy", "Dubois", "Lefèvre", "Moreau", "Benali", "Delattre",
    "Vandenbussche", "Deschamps", "Caron", "Dumont", "Carpentier", "Mahieu", "Lemaire", "Dhont",
    "Boulanger", "Deleporte", "Cordonnier",
)  # fmt: skip
DOMAINS = ("example.org", "mairie.example.fr", "agglo.example.fr", "asso.example.org", "example.net")

CONFIG = """\
# Written by bench/digests.py.
site:
  title: IREV
  base_url: https://www.irev.fr
  feeds_url: https://www.irev.fr/feeds/
items:
  path: items/
database: sqlite:///bench.db
email:
  from: "IREV <lettre@example.org>"
  transport: outbox
  outbox: outbox/
  max_items: {max_items}
web:
  base_url: https://lettre.example.org
subscribers:
"""


# --- items and subscribers -------------------------------------------------------------------


@contextmanager
def published_between(first: date, last: date) -> Iterator[None]:
    """Make bench/ingest.py's generator publish items from `first` to the day before `last`."""
    saved = item_generator.FIRST_DAY, item_generator.LAST_DAY
    item_generator.FIRST_DAY, item_generator.LAST_DAY = first, last
    try:
        yield
    finally:
        item_generator.FIRST_DAY, item_generator.LAST_DAY = saved


@dataclass(frozen=True, slots=True)
class Profile:
    """A subscriber as this script wrote it into config.yaml."""

    email: str
    name: str | None
    frequency: Frequency
    thematiques: tuple[str, ...]
    territoires: tuple[str, ...]
    types: tuple[str, ...]


def _spelling(name: str, rng: random.Random) -> str:
    """A term as an admin may write it: mostly as items spell it, sometimes lower-case or a slug."""
    draw = rng.random()
    return name if draw < 0.8 else name.lower() if draw < 0.9 else term_key(name)


def _pick(
    rng: random.Random, names: Sequence[str], counts: tuple[tuple[int, ...], tuple[int, ...]]
) -> tuple[str, ...]:
    size = rng.choices(counts[0], weights=counts[1])[0]
    return tuple(_spelling(name, rng) for name in rng.sample(names, size))


def make_profiles(count: int, rng: random.Random) -> list[Profile]:
    """`count` subscribers, frequencies in FREQUENCIES' exact shares, interests drawn at random."""
    total = sum(share for _, share in FREQUENCIES)
    frequencies: list[Frequency] = []
    for frequency, share in FREQUENCIES:
        frequencies += [frequency] * round(count * share / total)
    frequencies = (frequencies + ["weekly"] * count)[:count]
    rng.shuffle(frequencies)
    places = [*territoires(), *EXTRA_TERRITOIRES]
    types = [name for name, _ in TYPES]
    profiles = []
    for number, frequency in enumerate(frequencies):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = term_key(f"{first}.{last}").replace("-", ".")
        profiles.append(
            Profile(
                email=f"{local}.{number}@{rng.choice(DOMAINS)}",
                name=f"{first} {last}" if rng.random() < 0.8 else None,
                frequency=frequency,
                thematiques=_pick(rng, THEMATIQUES, THEMATIQUE_COUNTS),
                territoires=_pick(rng, places, TERRITOIRE_COUNTS),
                types=_pick(rng, types, TYPE_COUNTS),
            )
        )
    return profiles


def config_text(profiles: Sequence[Profile]) -> str:
    """config.yaml with these subscribers; lists as JSON arrays, which YAML reads as they are."""
    lines = [CONFIG.format(max_items=MAX_ITEMS)]
    for profile in profiles:
        lines.append(f"  - email: {profile.email}\n")
        if profile.name:
            lines.append(f"    name: {json.dumps(profile.name, ensure_ascii=False)}\n")
        lines.append(f"    frequency: {profile.frequency}\n")
        lists = (profile.thematiques, profile.territoires, profile.types)
        for key, values in zip(("thematiques", "territoires", "types"), lists, strict=True):
            if values:
                lines.append(f"    {key}: {json.dumps(list(values), ensure_ascii=False)}\n")
    return "".join(lines)


# --- selection and rendering -----------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    """What one pass of selection and rendering over every subscriber found, and how long it took."""

    subscribers: int = 0
    nonempty: int = 0
    items: int = 0  # delivered, over every digest
    max_items: int = 0
    shown: int = 0
    html_total: int = 0
    html_max: int = 0
    load_s: float = 0.0
    select_s: float = 0.0
    render_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of this process over selection and rendering: steadier than wall
    fingerprint: str = ""  # SHA-256 of every digest's subject, text and HTML, in order
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Share:
    """The figures of one frequency."""

    subscribers: int = 0
    nonempty: int = 0
    items: int = 0
    select_s: float = 0.0
    render_s: float = 0.0


def _shape_problems(digest: Digest) -> list[str]:
    """What is wrong with a digest whatever its subscriber: emptiness, counts, sections."""
    who = digest.subscriber.email
    shown = sum(len(section.items) for section in digest.sections)
    problems = []
    if not digest.items:
        problems.append(f"{who}: an empty digest")
    if shown != min(len(digest.items), MAX_ITEMS) or digest.more != len(digest.items) - shown:
        problems.append(f"{who}: {len(digest.items)} items, {shown} shown, {digest.more} more")
    return problems


def select_and_render(
    digests: DigestRun, shares: dict[str, Share] | None = None, keep: Container[str] = ()
) -> tuple[Figures, dict[str, tuple[Digest | None, RenderedEmail | None]]]:
    """`next_digest` for every subscriber and `render` for the non-empty digests, timed apart;
    the digests of the subscribers (keys) in `keep`, for checking."""
    figures, kept = Figures(), {}
    fingerprint = hashlib.sha256()
    clock = time.perf_counter
    cpu = time.process_time
    for subscriber in digests.subscribers():
        cpu_started, started = cpu(), clock()
        digest = digests.next_digest(subscriber)
        selected = clock()
        rendered = digests.render(digest) if digest is not None else None
        done, cpu_done = clock(), cpu()
        figures.cpu_s += cpu_done - cpu_started
        figures.subscribers += 1
        figures.select_s += selected - started
        figures.render_s += done - selected
        share = shares.setdefault(subscriber.frequency, Share()) if shares is not None else Share()
        share.subscribers += 1
        share.select_s += selected - started
        share.render_s += done - selected
        if subscriber.key in keep:
            kept[subscriber.key] = (digest, rendered)
        if digest is None or rendered is None:
            continue
        size = len(rendered.html.encode())
        figures.nonempty += 1
        figures.items += len(digest.items)
        figures.max_items = max(figures.max_items, len(digest.items))
        figures.shown += sum(len(section.items) for section in digest.sections)
        figures.html_total += size
        figures.html_max = max(figures.html_max, size)
        share.nonempty += 1
        share.items += len(digest.items)
        for part in (subscriber.key, rendered.subject, rendered.text, rendered.html):
            fingerprint.update(part.encode() + b"\x00")
        figures.problems += _shape_problems(digest)
    figures.fingerprint = fingerprint.hexdigest()
    return figures, kept


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _memory_run(config_path: Path) -> dict[str, object]:
    imports_mb = _max_rss_mb()
    config = load_config(config_path)
    before_mb = _max_rss_mb()
    with Store.open(config.database_url) as store:
        started = time.perf_counter()
        digests = DigestRun(store, config, now=NOW)
        load_s = time.perf_counter() - started
        figures, _ = select_and_render(digests)
        figures.load_s = load_s
    return {**asdict(figures), "max_rss_mb": _max_rss_mb(), "imports_mb": imports_mb, "before_mb": before_mb}


def memory_child(config_path: Path) -> int:
    """Load, select and render in a forked process; print its figures as JSON."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            print(json.dumps(_memory_run(config_path)), flush=True)
            code = 0
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)  # not sys.exit: nothing of the parent's to clean up here
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@dataclass(frozen=True, slots=True)
class ChildFigures:
    figures: Figures
    max_rss_mb: float
    imports_mb: float
    before_mb: float


def run_child(config_path: Path) -> ChildFigures | str:
    """This script's memory mode in a new process: its figures, or what went wrong."""
    command = [sys.executable, str(Path(__file__).resolve()), CHILD_OPTION, str(config_path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
        rss = {name: float(data.pop(name)) for name in ("max_rss_mb", "imports_mb", "before_mb")}
        figures = Figures(**data)
    except (IndexError, KeyError, TypeError, ValueError):
        return f"exit {done.returncode}\n{done.stdout}{done.stderr}"
    if done.returncode != 0:
        return f"exit {done.returncode}\n{done.stderr}"
    return ChildFigures(figures, rss["max_rss_mb"], rss["imports_mb"], rss["before_mb"])


# --- checks ----------------------------------------------------------------------------------


def _places(labels: Sequence[str], hierarchy: Hierarchy) -> tuple[set[str], set[str]]:
    """The codes of the places these labels name with those above and below them, and the term
    keys of the labels that name no place."""
    codes: set[str] = set()
    unknown: set[str] = set()
    for label in labels:
        place = hierarchy.resolve(label).place
        if place is None:
            unknown.add(term_key(label))
            continue
        codes |= {place.code, *hierarchy.ancestors(place.code), *hierarchy.descendants(place.code)}
    return codes, unknown


def oracle(item: NewsItem, profile: Profile, hierarchy: Hierarchy) -> bool:
    """The matching rule of docs/architecture.md, written independently of syndicator.taxonomy.terms."""
    if profile.thematiques:
        wanted = {term_key(t) for t in profile.thematiques}
        if not wanted & {term_key(t.name) for t in item.thematiques}:
            return False
    if profile.types and (
        item.type is None or term_key(item.type.name) not in {term_key(t) for t in profile.types}
    ):
        return False
    if profile.territoires:
        codes, unknown = _places(profile.territoires, hierarchy)
        for territoire in item.territoires:
            place = hierarchy.resolve(territoire.name).place
            if (place.code in codes) if place is not None else (term_key(territoire.name) in unknown):
                return True
        return False
    return True


def expected_urls(items: Sequence[NewsItem], profile: Profile, hierarchy: Hierarchy) -> list[str]:
    """The digest rule of docs/architecture.md on a fresh ledger: the matching items within the look-back."""
    oldest = NOW.date() - timedelta(days=LOOKBACK[profile.frequency])
    seen = INGESTED.astimezone(PARIS).date()
    return [i.url for i in items if (i.published or seen) >= oldest and oracle(i, profile, hierarchy)]


def check_sample(
    results: Results,
    kept: Mapping[str, tuple[Digest | None, RenderedEmail | None]],
    profiles: Mapping[str, Profile],
    items: Sequence[NewsItem],
    hierarchy: Hierarchy,
) -> dict[str, set[str]]:
    """Each kept digest against the rules; the URLs each sampled subscriber should get."""
    expected: dict[str, set[str]] = {}
    for key, (digest, rendered) in kept.items():
        profile = profiles[key]
        wanted = set(expected_urls(items, profile, hierarchy))
        expected[key] = wanted
        if digest is None or rendered is None:
            results.expect(f"{profile.email}: items of an empty digest", len(wanted), 0)
            continue
        urls = [item.url for item in digest.items]
        got = set(urls)
        if got != wanted:
            extra, missing = sorted(got - wanted), sorted(wanted - got)
            results.wrong.append(
                f"{profile.email} ({profile.frequency}, {profile.thematiques}, {profile.territoires}, "
                f"{profile.types}): {len(extra)} items that do not belong (e.g. {extra[:2]}), "
                f"{len(missing)} missing (e.g. {missing[:2]})"
            )
        results.expect(f"{profile.email}: items twice", len(urls) - len(got), 0)
        days = [item.published or date.min for item in digest.items]
        results.expect(f"{profile.email}: newest first", days == sorted(days, reverse=True), True)
        shown = [item for section in digest.sections for item in section.items]
        results.expect(f"{profile.email}: items shown", {i.url for i in shown}, set(urls[:MAX_ITEMS]))
        for section in digest.sections:
            for item in section.items:
                names = {t.name for t in item.thematiques}
                if section.title not in names and not (section.title == OTHER_SECTION and not names):
                    results.wrong.append(f"{profile.email}: {item.url} under '{section.title}'")
        results.expect(f"{profile.email}: subject", bool(rendered.subject.strip()), True)
        for item in shown:
            if html.escape(item.url) not in rendered.html or item.url not in rendered.text:
                results.wrong.append(f"{profile.email}: the link of {item.url} is not in both parts")
    return expected


class CountingTransport:
    """A transport (syndicator/mail/transports.py's protocol) that claims every message in the ledger as
    a real one would, counts it and its bytes, and reports it sent."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    async def send(self, messages: Sequence[Outgoing], *, claim: Claim, done: Done) -> None:
        for message in messages:
            if await claim(message):
                self.messages += 1
                self.bytes += len(message.data)
                await done(message, Result("sent"))


# --- profile ---------------------------------------------------------------------------------


def profile_pass(store: Store, config: Config, top: int = 25) -> None:
    """Selection and rendering of every subscriber under cProfile, printed apart."""
    digests = DigestRun(store, config, now=NOW)
    selecting, rendering = cProfile.Profile(), cProfile.Profile()
    for subscriber in digests.subscribers():
        selecting.enable()
        digest = digests.next_digest(subscriber)
        selecting.disable()
        if digest is not None:
            rendering.enable()
            digests.render(digest)
            rendering.disable()
    for title, profiler in (("selection", selecting), ("rendering", rendering)):
        for order in ("tottime", "cumulative"):
            print(f"\n--- cProfile: {title}, by {order} ---")
            stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
            stats.sort_stats(order).print_stats(top)


# --- the benchmark ---------------------------------------------------------------------------


def _ms(seconds: float, count: int) -> str:
    return f"{1000 * seconds / max(1, count):.2f} ms"


def run(workdir: Path, count: int, subscribers: int, *, profile: bool) -> Results:
    results = Results()
    started = time.perf_counter()
    rng = random.Random(SEED)
    corpus = bench_corpus(load_corpus(SHIPPED_ITEMS), rng)
    first = NOW.date() - timedelta(days=SPAN_DAYS - 1)
    with published_between(first, NOW.date() + timedelta(days=1)):
        generate(workdir / "items", count, corpus, SEED)
    profiles = make_profiles(subscribers, random.Random(SEED + 1))
    config_path = workdir / "config.yaml"
    config_path.write_text(config_text(profiles), encoding="utf-8")
    generated = time.perf_counter() - started

    started = time.perf_counter()
    config = load_config(config_path)
    config_s = time.perf_counter() - started
    started = time.perf_counter()
    with Store.open(config.database_url) as store:
        report = ingest(store, [workdir / "items"], now=INGESTED)
        results.expect("ingest: new items", report.new, count)
        results.expect("ingest: errors", [str(e) for e in report.errors[:3]], [])
    print(
        f"generated {count} item files (published {first} to {NOW.date()}) and {subscribers} "
        f"subscribers in {generated:.1f} s, ingested them in {time.perf_counter() - started:.1f} s "
        f"(not measured), in {workdir}",
        flush=True,
    )
    hierarchy, _ = Hierarchy.load(config.territoires)
    by_key = {p.email.lower(): p for p in profiles}
    sample = set(random.Random(SEED + 2).sample(sorted(by_key), min(SAMPLE, len(by_key))))

    # 1–2. load, selection, rendering, in this process.
    with Store.open(config.database_url) as store:
        started = time.perf_counter()
        digests = DigestRun(store, config, now=NOW)
        load_s = time.perf_counter() - started
        listed = digests.subscribers()
        results.expect("subscribers listed", [s.key for s in listed], [p.email.lower() for p in profiles])
        results.expect(
            "subscribers' frequencies", [s.frequency for s in listed], [p.frequency for p in profiles]
        )
        shares: dict[str, Share] = {}
        figures, kept = select_and_render(digests, shares, sample)
        figures.load_s = load_s
        del digests
        results.wrong += figures.problems[:20]
        print(
            f"selection {figures.select_s:.1f} s, rendering {figures.render_s:.1f} s; "
            f"checking {len(kept)} digests against the rules",
            flush=True,
        )
        items = list(store.items())
        expected = check_sample(results, kept, by_key, items, hierarchy)
        del kept, items

    # 3. memory, in a child process, before the send writes the ledger.
    child = run_child(config_path)
    if isinstance(child, str):
        results.wrong.append(f"load + selection + rendering in a child process failed: {child}")
    else:
        results.expect("the child's digests (SHA-256)", child.figures.fingerprint, figures.fingerprint)
        results.expect("the child's non-empty digests", child.figures.nonempty, figures.nonempty)

    with Store.open(config.database_url) as store:
        if profile:
            profile_pass(store, config)
        # 4. the real path, once.
        transport = CountingTransport()
        rss_before_send = _max_rss_mb()
        started = time.perf_counter()
        digests = DigestRun(store, config, now=NOW)
        send_load_s = time.perf_counter() - started
        sent = send_digests(digests, transport=transport)
        send_s = time.perf_counter() - started
        rss_after_send = _max_rss_mb()
        print(f"send_digests: {sent.summary()} in {send_s:.1f} s", flush=True)
        results.expect("send: sent", sent.sent, figures.nonempty)
        results.expect("send: empty", sent.empty, subscribers - figures.nonempty)
        results.expect("send: failed, suppressed", (sent.failed, sent.suppressed), (0, 0))
        results.expect("send: messages delivered", transport.messages, figures.nonempty)
        ledger = Ledger(store)
        results.expect(
            "ledger: digests by state",
            ledger.counts(),
            {"sent": figures.nonempty} if figures.nonempty else {},
        )
        ids = {stamp.url: stamp.id for stamp in store.item_headers()}
        for key in sorted(sample):
            results.expect(
                f"ledger: items sent to {key}", ledger.sent_items(key), {ids[u] for u in expected[key]}
            )

    print_shares(shares)
    nonempty = max(1, figures.nonempty)
    rows = [
        Row(f"config.yaml load, {subscribers} subscribers", f"{config_s:.2f} s"),
        Row(f"load: DigestRun(store, config), {count} items", f"{figures.load_s:.2f} s"),
        Row(f"selection: next_digest × {figures.subscribers}", f"{figures.select_s:.2f} s"),
        Row("  per subscriber", _ms(figures.select_s, figures.subscribers)),
        Row(f"rendering: render × {figures.nonempty}", f"{figures.render_s:.2f} s"),
        Row("  per digest", _ms(figures.render_s, figures.nonempty)),
        Row("selection + rendering, every subscriber", f"{figures.select_s + figures.render_s:.2f} s",
            f"< {TARGET_SECONDS:g} s", figures.select_s + figures.render_s < TARGET_SECONDS),
        Row("  CPU time of the process (steadier on a busy machine)",
            f"{figures.cpu_s:.2f} s, {_ms(figures.cpu_s, figures.subscribers)} per subscriber"),
        Row("non-empty digests", f"{figures.nonempty} of {figures.subscribers}"),
        Row("items per digest, average / max", f"{figures.items / nonempty:.0f} / {figures.max_items}"),
        Row("items shown per digest, average", f"{figures.shown / nonempty:.1f}", f"≤ {MAX_ITEMS}"),
        Row("HTML part, average / largest", f"{figures.html_total / nonempty:.0f} B / {figures.html_max} B"),
    ]  # fmt: skip
    if isinstance(child, str):
        rows.append(
            Row("max RSS, load + selection + rendering (child)", "failed", f"< {TARGET_RSS_MB:.0f} MB", False)
        )
    else:
        same = child.figures.fingerprint == figures.fingerprint
        rows += [
            Row("max RSS, load + selection + rendering (child)", f"{child.max_rss_mb:.1f} MB",
                f"< {TARGET_RSS_MB:.0f} MB", child.max_rss_mb < TARGET_RSS_MB),
            Row("  of which interpreter and imports", f"{child.imports_mb:.1f} MB"),
            Row("  of which the above and config.yaml", f"{child.before_mb:.1f} MB"),
            Row("  the child's load + selection + rendering", f"{child.figures.load_s:.1f} + "
                f"{child.figures.select_s:.1f} + {child.figures.render_s:.1f} s"),
            Row("  its digests identical to this process's", "yes" if same else "no", "yes", same),
        ]  # fmt: skip
    rows += [
        Row("send_digests, every subscriber (ledger, transport)", f"{send_s:.2f} s"),
        Row("  of which DigestRun(store, config)", f"{send_load_s:.2f} s"),
        Row("  per digest sent", _ms(send_s, sent.sent)),
        Row("  messages, bytes", f"{transport.messages}, {transport.bytes / 1e6:.1f} MB"),
        Row("  max RSS of this process, before / after it",
            f"{rss_before_send:.0f} / {rss_after_send:.0f} MB"),
        Row(f"results checked (rules on a sample of {len(sample)}, send, ledger)",
            "wrong" if results.wrong else "right", "right", not results.wrong),
    ]  # fmt: skip
    results.rows += rows
    return results


def print_shares(shares: Mapping[str, Share]) -> None:
    print(f"\n{'frequency':<10} {'subscribers':>11} {'non-empty':>9} {'items/digest':>12} "
          f"{'selection/sub':>13} {'render/digest':>13}")  # fmt: skip
    for frequency, _ in FREQUENCIES:
        share = shares.get(frequency, Share())
        print(
            f"{frequency:<10} {share.subscribers:>11} {share.nonempty:>9} "
            f"{share.items / max(1, share.nonempty):>12.0f} {_ms(share.select_s, share.subscribers):>13} "
            f"{_ms(share.render_s, share.nonempty):>13}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=10_000, metavar="N", help="item files to generate")
    parser.add_argument("--subscribers", type=int, default=10_000, metavar="M", help="subscribers to write")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR (new or empty) and keep it")
    parser.add_argument("--profile", action="store_true", help="also profile selection and rendering")
    parser.add_argument(CHILD_OPTION, type=Path, metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child is not None:
        return memory_child(args.memory_child)
    if args.items < 1 or args.subscribers < 1:
        parser.error("--items and --subscribers must be at least 1")
    print(
        f"syndicator digests benchmark: {args.items} items, {args.subscribers} subscribers, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    if args.keep is not None:
        if args.keep.exists() and any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: the folder is not empty")
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run(args.keep.resolve(), args.items, args.subscribers, profile=args.profile)
    else:
        with tempfile.TemporaryDirectory(prefix="syndicator-digests-bench-") as workdir:
            results = run(Path(workdir), args.items, args.subscribers, profile=args.profile)
    return results.finish()


if __name__ == "__main__":
    sys.exit(main())
