"""Benchmark of `syndicator.ingest.reading`: how fast item files go into a fresh SQLite store, and memory.

It generates N item files (default 10,000) in a temporary folder, in the format of the shipped
`items/*.txt`: body paragraphs reused and shuffled from those files (so sizes stay realistic,
1–4 KB a file), a unique source URL slug each, types, thématiques and territoires taken from
the shipped items, French dates, and for some items one or two attachments. Generation is
seeded, so every run writes the same files, and it is not part of the figures.

Then, through the project's own API (`Store.open`, `ingest`), it measures:

1. the first ingest of all N files (wall time, items/s; target ≥ 1,000 items/s);
2. a second ingest of the same folder, nothing changed (files/s; target ≥ 20,000 files/s);
3. an ingest after one paragraph was changed in 1% of the files (wall time);
4. the peak RSS of this process (`RUSAGE_SELF`; it includes the interpreter and the imports,
   which the table also shows on their own; target < 200 MB). Files are parsed in this
   process.

It prints a table (measure, figure, target, OK/MISSED) and exits 0 whatever the speed; it
exits 1 only when the results are wrong (the report's counts are not the expected ones).

Run from the project's root:

    .venv/bin/python bench/ingest.py                  # 10,000 items in a temporary folder
    .venv/bin/python bench/ingest.py --items 1000
    .venv/bin/python bench/ingest.py --keep /tmp/ingest-bench   # keep the items and the database
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import statistics
import sys
import tempfile
import time
import unicodedata
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from pathlib import Path

from syndicator.db.store import Store
from syndicator.ingest.reading import IngestReport, ingest

SHIPPED_ITEMS = Path(__file__).resolve().parent.parent / "items"
SEED = 20211119
MODIFIED_SHARE = 0.01
MIN_BYTES, MAX_BYTES = 1024, 4096  # size of a generated item file

TARGET_FIRST_ITEMS_PER_S = 1_000.0
TARGET_UNCHANGED_FILES_PER_S = 20_000.0
TARGET_RSS_MB = 200.0

SITE = "https://www.irev.fr"
FAVORIS_URL = f"{SITE}/javascript%3A%3B"
FIRST_DAY = date(2020, 1, 6)
LAST_DAY = date(2026, 11, 30)

MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip
WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
ATTACHMENT_NAMES = (
    "cahier_des_charges", "synthese", "rapport", "guide_pratique", "actes_du_seminaire",
    "programme", "deliberation", "annexe", "donnees_par_epci", "fiche_action",
)  # fmt: skip
ATTACHMENT_EXTENSIONS = ("pdf", "pdf", "pdf", "pdf", "xlsx", "docx", "odt")

# The start of every footer line of an item file; the body is what comes before the first one.
_FOOTER = re.compile(
    r"^(?:Poids\s*:|\[\s*T[ée]l[ée]chargement\s*\]|Types?\s+d['’]\s*actualit|Dates?\s*:"
    r"|Th[ée]matiques?\s*:|Territoires?\s*:|Publi[ée]e?\s+le|URL\s+de\s+la\s+source)",
    re.IGNORECASE,
)
_LINK_LINE = re.compile(r"^\[(?P<n>\d+)\]\s*<?(?P<url>[^\s<>]+)>?\s*$")
_REF = re.compile(r"\[(?P<text>[^\[\]\n]*)\]\(#\)[ \t]*\[(?P<n>\d+)\]")
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "'": "", "’": ""})

Term = tuple[str, str]  # (name, URL of its page)


# --- the shipped items, taken apart ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Paragraph:
    """A body paragraph whose link numbers are placeholders `\\x00k\\x00` into its own `urls`."""

    template: str
    urls: tuple[str, ...]
    plain: str  # the text without markup, for slugs


@dataclass(slots=True)
class Corpus:
    """What generated items are made of, from the shipped items."""

    paragraphs: list[Paragraph] = field(default_factory=list)
    types: list[Term] = field(default_factory=list)  # one entry per shipped item: weighted
    thematiques: list[Term] = field(default_factory=list)
    territoires: list[tuple[Term, ...]] = field(default_factory=list)  # sets as items have them
    sizes: list[int] = field(default_factory=list)


def split_item(text: str) -> tuple[list[str], list[str], dict[int, str]]:
    """An item file's body paragraphs, its non-empty footer lines and its numbered links."""
    lines = text.replace("\r\n", "\n").split("\n")
    links_start = len(lines)
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].strip().rstrip(" :") == "Liens":
            links_start = index
            break
    links: dict[int, str] = {}
    for line in lines[links_start + 1 :]:
        if match := _LINK_LINE.match(line.strip()):
            links[int(match["n"])] = match["url"]
    footer_start = next(
        (i for i, line in enumerate(lines[:links_start]) if _FOOTER.match(line.strip())), links_start
    )
    body = "\n".join(lines[:footer_start])
    paragraphs = [p.strip("\n") for p in re.split(r"\n[ \t]*\n", body) if p.strip()]
    footer = [line.strip() for line in lines[footer_start:links_start] if line.strip()]
    return paragraphs, footer, links


def _terms(value: str, links: dict[int, str]) -> tuple[Term, ...]:
    return tuple((m["text"], links[int(m["n"])]) for m in _REF.finditer(value) if int(m["n"]) in links)


def _paragraph(text: str, links: dict[int, str]) -> Paragraph | None:
    urls: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        urls.append(links[int(match["n"])])
        return f"[{match['text']}](#) [\x00{len(urls) - 1}\x00]"

    if any(int(m["n"]) not in links for m in _REF.finditer(text)):
        return None  # a reference without its URL: not worth copying
    template = _REF.sub(placeholder, text)
    plain = _REF.sub(lambda m: m["text"], text).replace("*", "")
    return Paragraph(template, tuple(urls), plain)


def load_corpus(folder: Path) -> Corpus:
    """Paragraphs and terms of every shipped item file."""
    corpus = Corpus()
    seen_paragraphs: set[str] = set()
    seen_thematiques: set[str] = set()
    for path in sorted(folder.glob("*.txt")):
        data = path.read_bytes()
        corpus.sizes.append(len(data))
        paragraphs, footer, links = split_item(data.decode("utf-8-sig"))
        for text in paragraphs:
            paragraph = _paragraph(text, links)
            if paragraph is not None and paragraph.template not in seen_paragraphs:
                seen_paragraphs.add(paragraph.template)
                corpus.paragraphs.append(paragraph)
        for line in footer:
            name, _, value = line.partition(":")
            if re.match(r"Types?\s+d", name, re.IGNORECASE):
                corpus.types.extend(_terms(value, links)[:1])
            elif re.match(r"Th[ée]matiques?", name, re.IGNORECASE):
                for term in _terms(value, links):
                    if term[0] not in seen_thematiques:
                        seen_thematiques.add(term[0])
                        corpus.thematiques.append(term)
            elif re.match(r"Territoires?", name, re.IGNORECASE) and (found := _terms(value, links)):
                corpus.territoires.append(found)
    if not (corpus.paragraphs and corpus.types and corpus.thematiques and corpus.territoires):
        raise SystemExit(f"bench: no usable item files in {folder}")
    return corpus


# --- generated items -------------------------------------------------------------------------


def _fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.translate(_LIGATURES).lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _day(day: date, *, padded: bool) -> str:
    if day.day == 1:
        return "1er"
    return f"{day.day:02d}" if padded else str(day.day)


def _when(day: date, hour: int, minute: int, *, capital: bool) -> str:
    weekday = WEEKDAYS[day.weekday()]
    weekday = weekday.capitalize() if capital else weekday
    return f"{weekday} {_day(day, padded=False)} {MONTHS[day.month - 1]} {day.year} - {hour:02d}:{minute:02d}"


def _event(rng: random.Random, published: date) -> str:
    start = published + timedelta(days=rng.randint(3, 60))
    hour, minute = rng.choice((9, 9, 10, 14)), rng.choice((0, 0, 30))
    if rng.random() < 0.4:
        return _when(start, hour, minute, capital=True)
    end = start + timedelta(days=rng.choice((0, 0, 0, 1, 2)))
    end_hour = rng.randint(max(hour + 2, 12), 18)
    return (
        f"Du {_when(start, hour, minute, capital=False)} "
        f"au {_when(end, end_hour, rng.choice((0, 30)), capital=False)}"
    )


def _size(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{rng.randint(20, 900)} Ko"
    return f"{rng.uniform(1.0, 9.9):.1f} Mo".replace(".", rng.choice((".", ",")))


def _renumber(first: int, match: re.Match[str]) -> str:
    return str(first + int(match[1]))


def _compose(paragraphs: Sequence[Paragraph], footer: Paragraph, bare: frozenset[int]) -> str:
    """The file's text: the paragraphs, then the footer, then `Liens`; the footer's URLs whose
    index is in `bare` (the attachments) are written without angle brackets, as the website does."""
    links: list[str] = []
    parts: list[str] = []
    for part in [*paragraphs, footer]:
        parts.append(_PLACEHOLDER.sub(partial(_renumber, len(links) + 1), part.template))
        links.extend(part.urls)
    bare_numbers = {len(links) - len(footer.urls) + 1 + index for index in bare}
    numbered = [f"[{n}] {url}" if n in bare_numbers else f"[{n}] <{url}>" for n, url in enumerate(links, 1)]
    return "\n\n" + "\n\n".join([*parts, "Liens", *numbered])


def render_item(index: int, corpus: Corpus, rng: random.Random) -> str:
    """The text of generated item number `index`, in the shipped items' format, 1–4 KB."""
    order = rng.sample(corpus.paragraphs, len(corpus.paragraphs))
    # The website makes the slug from the title, which the lead paragraph usually paraphrases.
    words = [_fold(w) for w in _WORD.findall(order[0].plain)]
    slug = "-".join([*words[: rng.randint(4, 10)], str(index)])

    urls: list[str] = []

    def ref(url: str) -> str:
        urls.append(url)
        return f"\x00{len(urls) - 1}\x00"

    published = FIRST_DAY + timedelta(days=rng.randrange((LAST_DAY - FIRST_DAY).days))
    footer: list[str] = []
    attachments = 2 if rng.random() < 0.08 else 1 if rng.random() < 0.35 else 0
    downloads: set[int] = set()
    for number in range(attachments):
        name = f"{rng.choice(ATTACHMENT_NAMES)}_{index}_{number}.{rng.choice(ATTACHMENT_EXTENSIONS)}"
        download = ref(f"{SITE}/sites/default/files/atoms/files/{name}")
        downloads.add(len(urls) - 1)
        footer += [
            f"Poids : {_size(rng)}",
            f"[Téléchargement](#) [{download}] [Favoris +](#) [{ref(FAVORIS_URL)}]",
        ]
    type_name, type_url = rng.choice(corpus.types)
    footer.append(f"Type d'actualites: [{type_name}](#) [{ref(type_url)}]")
    if type_name.startswith("Év") or rng.random() < 0.05:
        footer.append(f"Dates: {_event(rng, published)}")
    thematiques = rng.sample(corpus.thematiques, min(rng.choice((1, 1, 1, 2, 2, 3)), len(corpus.thematiques)))
    footer.append("Thématiques: " + ", ".join(f"[{n}](#) [{ref(u)}]" for n, u in thematiques))
    territoires = rng.choice(corpus.territoires)
    footer.append("Territoires : " + ", ".join(f"[{n}](#) [{ref(u)}]" for n, u in territoires))
    footer.append(f"Publié le {_day(published, padded=True)} {MONTHS[published.month - 1]} {published.year}")
    source = f"{SITE}/actualites-0/{slug}"
    if rng.random() < 0.05:
        footer.append(f"URL de la source: <{source}>")
    else:
        modified = published + timedelta(days=rng.randint(0, 14))
        stamp = f"{modified:%d/%m/%Y} - {rng.randint(7, 19):02d}:{rng.randint(0, 59):02d}"
        footer.append(f"URL de la source (modifié le {stamp}): <{source}>")
    tail, bare = Paragraph("\n\n".join(footer), tuple(urls), ""), frozenset(downloads)

    target = rng.randint(MIN_BYTES, MAX_BYTES)
    chosen = order[:1]
    text = _compose(chosen, tail, bare)
    for paragraph in order[1:]:
        if len(text.encode()) >= target:
            break
        longer = _compose([*chosen, paragraph], tail, bare)
        if len(longer.encode()) <= MAX_BYTES:
            chosen, text = [*chosen, paragraph], longer
    return text


def generate(folder: Path, count: int, corpus: Corpus, seed: int) -> array[int]:
    """Write `count` item files into `folder`, the same ones for the same seed; their sizes.

    Nothing else is kept: this process's RSS is measured, and should be ingest's."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(count - 1)))
    sizes = array("l")
    for index in range(count):
        data = render_item(index, corpus, rng).encode()
        (folder / f"{index:0{width}d}_{rng.getrandbits(64):016x}.txt").write_bytes(data)
        sizes.append(len(data))
    return sizes


def modify(paths: Sequence[Path], rng: random.Random) -> None:
    """Change one body paragraph of each file, as an editor fixing a sentence would."""
    for number, path in enumerate(paths):
        text = path.read_text(encoding="utf-8")
        paragraphs, _, _ = split_item(text)
        old = rng.choice(paragraphs)
        new = f"{old} Mise à jour n°{number + 1} : les inscriptions sont prolongées d'une semaine."
        path.write_bytes(text.replace(old, new, 1).encode())


# --- memory ----------------------------------------------------------------------------------


def _max_rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


# --- the benchmark ---------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    measure: str
    figure: str
    target: str = "—"
    ok: bool | None = None


@dataclass(slots=True)
class Results:
    rows: list[Row] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    def expect(self, what: str, got: object, wanted: object) -> bool:
        if got != wanted:
            self.wrong.append(f"{what}: got {got}, expected {wanted}")
        return got == wanted

    def finish(self) -> int:
        """Print the table and what was wrong (at most 50 lines); the benchmark's exit code:
        1 when a result is wrong, 0 whatever the speed."""
        print_table(self.rows)
        if self.wrong:
            print("\nWRONG RESULTS:", *self.wrong[:50], sep="\n  ", file=sys.stderr)
        return 1 if self.wrong else 0


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _timed_ingest(store: Store, folder: Path) -> tuple[IngestReport, float]:
    started = time.perf_counter()
    report = ingest(store, [folder])
    return report, time.perf_counter() - started


def _check_report(
    results: Results, phase: str, report: IngestReport, *, new: int, updated: int, unchanged: int
) -> None:
    results.expect(f"{phase}: new", report.new, new)
    results.expect(f"{phase}: updated", report.updated, updated)
    results.expect(f"{phase}: unchanged", report.unchanged, unchanged)
    results.expect(f"{phase}: errors", len(report.errors), 0)
    results.expect(f"{phase}: warnings", len(report.warnings), 0)
    for problem in [*report.errors, *report.warnings][:5]:
        print(f"  {problem}", file=sys.stderr)


def run(workdir: Path, count: int) -> Results:
    results = Results()
    corpus = load_corpus(SHIPPED_ITEMS)
    folder = workdir / "items"
    started = time.perf_counter()
    sizes = sorted(generate(folder, count, corpus, SEED))
    print(
        f"generated {count} item files in {time.perf_counter() - started:.1f} s (not measured), "
        f"in {folder}\n"
        f"  from {len(corpus.paragraphs)} paragraphs, {len(set(corpus.types))} types, "
        f"{len(corpus.thematiques)} thématiques, {len(corpus.territoires)} territoire sets "
        f"of {len(corpus.sizes)} shipped items\n"
        f"  sizes: min {sizes[0]} B, median {statistics.median(sizes):.0f} B, max {sizes[-1]} B, "
        f"total {sum(sizes) / 1e6:.1f} MB"
    )
    del sizes
    rss_before = _max_rss_mb(resource.RUSAGE_SELF)

    load_before = os.getloadavg()[0]
    with Store.open("sqlite:///" + str(workdir / "bench.db")) as store:
        cpu_before = _cpu_seconds(resource.RUSAGE_SELF)
        report, first = _timed_ingest(store, folder)
        first_cpu = _cpu_seconds(resource.RUSAGE_SELF) - cpu_before
        load_after = os.getloadavg()[0]
        print(f"first ingest:     {report.summary()}")
        _check_report(results, "first ingest", report, new=count, updated=0, unchanged=0)
        results.expect("items in the store", store.count_items(), count)

        report, second = _timed_ingest(store, folder)
        print(f"second ingest:    {report.summary()}")
        _check_report(results, "unchanged ingest", report, new=0, updated=0, unchanged=count)

        changed = max(1, round(count * MODIFIED_SHARE))
        rng = random.Random(SEED + 1)
        names = sorted(rng.sample(sorted(os.listdir(folder)), changed))
        modify([folder / name for name in names], rng)
        report, third = _timed_ingest(store, folder)
        print(f"after modifying:  {report.summary()}")
        _check_report(
            results, "ingest after modifying", report, new=0, updated=changed, unchanged=count - changed
        )
        results.expect("items in the store after modifying", store.count_items(), count)

    rss_self = _max_rss_mb(resource.RUSAGE_SELF)

    first_rate, second_rate = count / first, count / second
    results.rows += [
        Row(f"first ingest, {count} new", f"{first:.2f} s"),
        Row(
            "  items/s",
            f"{first_rate:,.0f}",
            f"≥ {TARGET_FIRST_ITEMS_PER_S:,.0f}",
            first_rate >= TARGET_FIRST_ITEMS_PER_S,
        ),
        Row("  CPU a new item (scan, parse, store)", f"{first_cpu / count * 1000:.3f} ms"),
        Row("  load average (1 min) before, after", f"{load_before:.2f}, {load_after:.2f}"),
        Row(f"second ingest, {count} unchanged", f"{second:.3f} s"),
        Row(
            "  files/s",
            f"{second_rate:,.0f}",
            f"≥ {TARGET_UNCHANGED_FILES_PER_S:,.0f}",
            second_rate >= TARGET_UNCHANGED_FILES_PER_S,
        ),
        Row(f"ingest after modifying {changed} file(s)", f"{third:.3f} s"),
        Row("  files/s (all scanned)", f"{count / third:,.0f}"),
        Row(
            "max RSS, this process",
            f"{rss_self:.1f} MB",
            f"< {TARGET_RSS_MB:.0f} MB",
            rss_self < TARGET_RSS_MB,
        ),
        Row("  its peak before ingest (interpreter, imports, generation)", f"{rss_before:.1f} MB"),
    ]
    return results


def print_table(rows: Sequence[Row]) -> None:
    """The figures as a table: measure, figure, target, OK/MISSED (the other benchmarks use it)."""
    header = Row("measure", "figure", "target")
    width = [max(len(getattr(r, name)) for r in [header, *rows]) for name in ("measure", "figure", "target")]
    print()
    for row in [header, *rows]:
        verdict = "result" if row is header else "" if row.ok is None else "OK" if row.ok else "MISSED"
        print(
            f"{row.measure:<{width[0]}}  {row.figure:>{width[1]}}  "
            f"{row.target:<{width[2]}}  {verdict}".rstrip()
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=10_000, metavar="N", help="item files to generate")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR (new or empty) and keep it")
    args = parser.parse_args(argv)
    if args.items < 1:
        parser.error("--items must be at least 1")
    print(
        f"syndicator ingest benchmark: {args.items} items, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    if args.keep is not None:
        if args.keep.exists() and any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: the folder is not empty")
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run(args.keep, args.items)
    else:
        with tempfile.TemporaryDirectory(prefix="syndicator-bench-") as workdir:
            results = run(Path(workdir), args.items)
    return results.finish()


if __name__ == "__main__":
    sys.exit(main())
