"""Benchmark of `syndicator.feeds.build.update_feeds`: full, unchanged and one-item rebuilds, and memory.

It generates N item files (default 10,000) in the format of the shipped `items/*.txt`, with the
generator of `bench/ingest.py` (body paragraphs reused from the shipped items, 1–4 KB a file,
French dates, attachments), but tagged with a vocabulary of the size the site has: 15
thématiques, 40 territoires (the région, its 5 départements, its 20 most populous communes and
their 14 EPCI, names from the INSEE code officiel géographique) and 5 types. An item carries
1–3 thématiques and 1–3 territoires (a commune comes with its EPCI and département, as on the
website). Generation is seeded, so every run writes the same files; it and the ingest into a
fresh SQLite store (`Store.open`, `ingest`) are not part of the figures.

Then, with a `config.yaml` written in the work folder (`feeds.output: feeds/`), it measures:

1. the full build into an empty `feeds/` (wall time; target < 3 s): one RSS and one Atom file
   per feed (everything, each thématique, territoire and type), `index.opml`, `index.html`;
2. a rebuild with nothing changed (wall time; target < 0.3 s); it must write no file;
3. a rebuild after one new item file (one thématique, one territoire, one type, published after
   every other item) was ingested (wall time); it must write that item's six term feeds and
   `all.rss`/`all.atom`, may rewrite `index.opml` and `index.html`, and nothing else;
4. the peak RSS of a full build alone (target < 200 MB), in a child process that does nothing
   else: this script run again with a hidden option, on a copy of the database and into its own
   empty folder, whose output must be byte-identical to the full build of step 1.

Linux counts in a process's `ru_maxrss` the peak RSS of the process it was spawned from (exec
keeps the figure of the memory it replaces), so the child forks once more and the build runs in
the grandchild, whose `getrusage(RUSAGE_SELF)` then starts from the child's small footprint
(the interpreter and the imports a `syndicator feeds` command has too; the table shows it).

It prints a table (measure, figure, target, OK/MISSED) and exits 0 whatever the speed; it exits
1 only when a result is wrong: an ingest or build that does not write what it should, or
writes what it should not.

Run from the project's root:

    .venv/bin/python bench/feeds.py                  # 10,000 items in a temporary folder
    .venv/bin/python bench/feeds.py --items 1000
    .venv/bin/python bench/feeds.py --keep /tmp/feeds-bench   # keep items, database and feeds
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from syndicator.config.model import Config, parse_config
from syndicator.db.store import Store
from syndicator.feeds.build import FeedsReport, update_feeds
from syndicator.ingest.reading import IngestReport, ingest
from syndicator.parsing.items import Vocabulary
from syndicator.taxonomy.terms import term_key

# bench/ingest.py: the folder of the script being run is the first entry of sys.path.
from ingest import (
    LAST_DAY,
    MONTHS,
    SHIPPED_ITEMS,
    SITE,
    Corpus,
    Results,
    Row,
    Term,
    generate,
    load_corpus,
)

SEED = 20221202
TARGET_FULL_S = 3.0
TARGET_UNCHANGED_S = 0.3
TARGET_RSS_MB = 200.0
CHILD_OPTION = "--full-build-child"

THEMATIQUES = (
    "Politique de la ville - DSU", "Participation des habitants", "Cohésion sociale",
    "Habitat - Renouvellement urbain", "Emploi - Développement économique", "Éducation", "Santé",
    "Culture", "Égalité femmes-hommes", "Sécurité - Prévention de la délinquance",
    "Transition écologique", "Jeunesse", "Lutte contre les discriminations", "Mobilité",
    "Numérique",
)  # fmt: skip
TYPES = (  # with their weight: how often the website publishes each
    ("Actu des partenaires", 9), ("Événement", 7), ("Publication", 4), ("Actu de l'IREV", 3),
    ("Appel à projets", 2),
)  # fmt: skip
REGION = "Région Hauts de France"  # the website's label of the région (code 32)
REGION_URL = f"{SITE}/region-hauts-de-france-1"
DEPARTEMENTS = ("Aisne", "Nord", "Oise", "Pas-de-Calais", "Somme")
COMMUNES = (  # the 20 most populous communes of the région: (commune, its EPCI, the EPCI's département)
    ("Lille", "Métropole Européenne de Lille", "Nord"),
    ("Amiens", "CA Amiens Métropole", "Somme"),
    ("Roubaix", "Métropole Européenne de Lille", "Nord"),
    ("Tourcoing", "Métropole Européenne de Lille", "Nord"),
    ("Dunkerque", "CU de Dunkerque", "Nord"),
    ("Calais", "CA Grand Calais Terres et Mers", "Pas-de-Calais"),
    ("Villeneuve-d'Ascq", "Métropole Européenne de Lille", "Nord"),
    ("Beauvais", "CA du Beauvaisis", "Oise"),
    ("Saint-Quentin", "CA du Saint-Quentinois", "Aisne"),
    ("Arras", "CU d'Arras", "Pas-de-Calais"),
    ("Valenciennes", "CA Valenciennes Métropole", "Nord"),
    ("Compiègne", "CA de la Région de Compiègne et de la Basse Automne", "Oise"),
    ("Boulogne-sur-Mer", "CA du Boulonnais", "Pas-de-Calais"),
    ("Wattrelos", "Métropole Européenne de Lille", "Nord"),
    ("Douai", "CA Douaisis Agglo", "Nord"),
    ("Marcq-en-Barœul", "Métropole Européenne de Lille", "Nord"),
    ("Creil", "CA Creil Sud Oise", "Oise"),
    ("Lens", "CA de Lens - Liévin", "Pas-de-Calais"),
    ("Cambrai", "CA de Cambrai", "Nord"),
    ("Liévin", "CA de Lens - Liévin", "Pas-de-Calais"),
)
TERRITOIRE_SETS = 400  # distinct territoire lists items draw theirs from

# The item added before the incremental rebuild: one term of each vocabulary.
NEW_TYPE, NEW_THEMATIQUE, NEW_TERRITOIRE = "Appel à projets", "Santé", "Roubaix"
NEW_TERMS: tuple[tuple[Vocabulary, str], ...] = (
    ("types", NEW_TYPE), ("thematiques", NEW_THEMATIQUE), ("territoires", NEW_TERRITOIRE),
)  # fmt: skip
NEW_SLUG = "appel-a-projets-sante-dans-les-quartiers-de-roubaix"

CONFIG = """\
# Written by bench/feeds.py.
site:
  title: IREV
  base_url: https://www.irev.fr
  feeds_url: https://www.irev.fr/feeds/
items:
  path: items/
database: sqlite:///{database}
feeds:
  output: {output}/
  max_items: 50
"""


# --- the vocabulary and the items ------------------------------------------------------------


def _parents() -> dict[str, str]:
    """Each territoire but the région, with its parent."""
    parents = dict.fromkeys(DEPARTEMENTS, REGION)
    for commune, epci, departement in COMMUNES:
        parents[commune] = epci
        parents[epci] = departement
    return parents


def territoires() -> list[str]:
    return [REGION, *_parents()]


def term_urls() -> dict[str, str]:
    """A page URL for every term name, in the website's `taxonomy/term/N` form."""
    names = [*THEMATIQUES, *(name for name, _ in TYPES), *territoires()[1:]]
    return {REGION: REGION_URL} | {name: f"{SITE}/taxonomy/term/{6001 + n}" for n, name in enumerate(names)}


def territoire_sets(rng: random.Random, urls: dict[str, str]) -> list[tuple[Term, ...]]:
    """Lists of 1–3 territoires as items carry them: a territoire, then its parents; the région
    or a département may come with other départements."""
    parents, names = _parents(), territoires()
    sets: list[tuple[Term, ...]] = []
    for _ in range(TERRITOIRE_SETS):
        chosen = [rng.choice(names)]
        size = rng.choice((1, 1, 2, 2, 3))
        while len(chosen) < size and chosen[-1] in parents:
            chosen.append(parents[chosen[-1]])
        while len(chosen) < size and chosen[0] in (REGION, *DEPARTEMENTS):
            chosen.append(rng.choice([d for d in DEPARTEMENTS if d not in chosen]))
        sets.append(tuple((name, urls[name]) for name in chosen))
    return sets


def bench_corpus(shipped: Corpus, rng: random.Random) -> Corpus:
    """The shipped items' paragraphs, with this benchmark's thématiques, territoires and types."""
    urls = term_urls()
    return Corpus(
        paragraphs=shipped.paragraphs,
        types=[(name, urls[name]) for name, weight in TYPES for _ in range(weight)],
        thematiques=[(name, urls[name]) for name in THEMATIQUES],
        territoires=territoire_sets(rng, urls),
        sizes=shipped.sizes,
    )


def new_item_text() -> str:
    """An item published the day after every generated one, about one term of each vocabulary."""
    day = LAST_DAY + timedelta(days=2)
    urls = term_urls()
    published = f"{'1er' if day.day == 1 else f'{day.day:02d}'} {MONTHS[day.month - 1]} {day.year}"
    paragraphs = [
        "La Ville de Roubaix et l'Agence régionale de santé lancent un appel à projets pour "
        "soutenir les actions de prévention santé dans les quartiers prioritaires de la ville.",
        "Les associations, centres sociaux et maisons de quartier peuvent déposer un projet "
        "(nutrition, santé mentale, accès aux droits et aux soins) jusqu'au 31 janvier. "
        "Une réunion d'information se tiendra à l'Hôtel de Ville.",
        f"Type d'actualites: [{NEW_TYPE}](#) [1]",
        f"Thématiques: [{NEW_THEMATIQUE}](#) [2]",
        f"Territoires : [{NEW_TERRITOIRE}](#) [3]",
        f"Publié le {published}",
        f"URL de la source (modifié le {day:%d/%m/%Y} - 10:15): <{SITE}/actualites-0/{NEW_SLUG}>",
        "Liens",
        *(f"[{n}] <{urls[name]}>" for n, name in enumerate((NEW_TYPE, NEW_THEMATIQUE, NEW_TERRITOIRE), 1)),
    ]
    return "\n\n" + "\n\n".join(paragraphs) + "\n"


# --- the child process that measures memory --------------------------------------------------


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def load(config_path: Path) -> Config:
    return parse_config(config_path.read_text(encoding="utf-8"), config_path)


def _full_build(config_path: Path) -> dict[str, float]:
    config = load(config_path)
    with Store.open(config.database_url) as store:
        before = _max_rss_mb()
        started = time.perf_counter()
        report = update_feeds(store, config)
        seconds = time.perf_counter() - started
    return {"max_rss_mb": _max_rss_mb(), "before_mb": before, "seconds": seconds, "written": report.written}


def full_build_child(config_path: Path) -> int:
    """Build the feeds of `config_path` in a forked process; print its figures as JSON."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            print(json.dumps(_full_build(config_path)), flush=True)
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
    max_rss_mb: float
    before_mb: float
    seconds: float
    written: int


def run_child(config_path: Path) -> ChildFigures | str:
    """This script's full-build mode in a new process: its figures, or what went wrong."""
    command = [sys.executable, str(Path(__file__).resolve()), CHILD_OPTION, str(config_path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
        figures = ChildFigures(
            float(data["max_rss_mb"]), float(data["before_mb"]), float(data["seconds"]), int(data["written"])
        )
    except (IndexError, KeyError, TypeError, ValueError):
        return f"exit {done.returncode}\n{done.stdout}{done.stderr}"
    return figures if done.returncode == 0 else f"exit {done.returncode}\n{done.stderr}"


# --- the benchmark ---------------------------------------------------------------------------


def _check_ingest(results: Results, phase: str, report: IngestReport, *, new: int, unchanged: int) -> None:
    results.expect(f"{phase}: new", report.new, new)
    results.expect(f"{phase}: updated", report.updated, 0)
    results.expect(f"{phase}: unchanged", report.unchanged, unchanged)
    results.expect(f"{phase}: errors", len(report.errors), 0)
    results.expect(f"{phase}: warnings", len(report.warnings), 0)
    for problem in [*report.errors, *report.warnings][:5]:
        print(f"  {problem}", file=sys.stderr)


def timed_update(store: Store, config: Config) -> tuple[FeedsReport, float]:
    started = time.perf_counter()
    report = update_feeds(store, config)
    return report, time.perf_counter() - started


def digests(root: Path) -> dict[str, str]:
    """Every file under `root` (temporary files included), with the SHA-256 of its bytes."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def write_config(workdir: Path, name: str, database: str, output: str) -> Path:
    path = workdir / name
    path.write_text(CONFIG.format(database=database, output=output), encoding="utf-8")
    return path


def run(workdir: Path, count: int) -> Results:
    results = Results()
    folder = workdir / "items"
    started = time.perf_counter()
    rng = random.Random(SEED)
    corpus = bench_corpus(load_corpus(SHIPPED_ITEMS), rng)
    generate(folder, count, corpus, SEED)
    generated = time.perf_counter() - started

    config_path = write_config(workdir, "config.yaml", "bench.db", "feeds")
    config = load(config_path)
    started = time.perf_counter()
    with Store.open(config.database_url) as store:
        report = ingest(store, [folder])
        _check_ingest(results, "ingest", report, new=count, unchanged=0)
        vocabularies: dict[Vocabulary, int] = {"thematiques": 0, "territoires": 0, "types": 0}
        for term in store.terms().values():
            vocabularies[term.vocabulary] += 1
    print(
        f"generated {count} item files in {generated:.1f} s and ingested them in "
        f"{time.perf_counter() - started:.1f} s (not measured), in {workdir}\n"
        f"  terms in the store: {vocabularies['thematiques']} thématiques, "
        f"{vocabularies['territoires']} territoires, {vocabularies['types']} types"
    )
    feeds = 1 + sum(vocabularies.values())
    if count >= 1000:  # fewer items may leave a term unused
        wanted = {"thematiques": len(THEMATIQUES), "territoires": len(territoires()), "types": len(TYPES)}
        results.expect("terms in the store", vocabularies, wanted)

    # 4. memory, first: on a copy of the database as ingest left it, into its own folder.
    for suffix in ("", "-wal", "-shm"):  # closing the store checkpoints the WAL: only .db is left
        if (workdir / f"bench.db{suffix}").exists():
            shutil.copyfile(workdir / f"bench.db{suffix}", workdir / f"memory.db{suffix}")
    child = run_child(write_config(workdir, "config-memory.yaml", "memory.db", "feeds-memory"))

    with Store.open(config.database_url) as store:
        # 1. full build
        full, full_s = timed_update(store, config)
        print(f"full build:        {full.summary()}")
        results.expect("full build: files written", full.written, 2 * feeds + 2)
        results.expect("full build: files removed", full.removed, 0)
        output = config.feeds_path
        tree = digests(output)
        size = sum(path.stat().st_size for path in output.rglob("*") if path.is_file())

        # 2. nothing changed
        unchanged, unchanged_s = timed_update(store, config)
        print(f"unchanged rebuild: {unchanged.summary()}")
        results.expect("unchanged rebuild: files written", unchanged.written_files, [])
        results.expect("unchanged rebuild: files removed", unchanged.removed, 0)

        # 3. one new item
        (folder / "zz_new_item.txt").write_text(new_item_text(), encoding="utf-8")
        _check_ingest(results, "ingest of the new item", ingest(store, [folder]), new=1, unchanged=count)
        slugs = {(t.vocabulary, term_key(t.name)): t.slug for t in store.terms().values()}
        expected = {"all.rss", "all.atom"}
        for vocabulary, name in NEW_TERMS:
            slug = slugs.get((vocabulary, term_key(name)))
            expected |= {f"{vocabulary}/{slug}.rss", f"{vocabulary}/{slug}.atom"}
        allowed = expected | {"index.opml", "index.html"}
        one, one_s = timed_update(store, config)
        print(f"one new item:      {one.summary()}")
        for name in one.written_files:
            print(f"  {'written' if name in allowed else 'UNEXPECTED':<10}  {name}")
        for name in sorted(expected - set(one.written_files)):
            print(f"  {'MISSING':<10}  {name}")
        extra, missing = sorted(set(one.written_files) - allowed), sorted(expected - set(one.written_files))
        results.expect("one new item: files written that are not its feeds or indexes", extra, [])
        results.expect("one new item: feeds of the item not written", missing, [])
        results.expect("one new item: files removed", one.removed, 0)

    per_feed = size / max(1, 2 * feeds) / 1024
    results.rows += [
        Row(f"full build, {count} items, {feeds} feeds", f"{full_s:.2f} s", f"< {TARGET_FULL_S:g} s",
            full_s < TARGET_FULL_S),
        Row("  files written", f"{full.written}", f"{2 * feeds + 2}", full.written == 2 * feeds + 2),
        Row("  size of feeds/ (a feed file on average)", f"{size / 1e6:.1f} MB ({per_feed:.0f} KB)"),
        Row("rebuild, nothing changed", f"{unchanged_s:.3f} s", f"< {TARGET_UNCHANGED_S:g} s",
            unchanged_s < TARGET_UNCHANGED_S),
        Row("  files written", f"{unchanged.written}", "0", unchanged.written == 0),
        Row("rebuild after 1 new item", f"{one_s:.3f} s"),
        Row("  files written", f"{one.written}", f"{len(expected)} + indexes, no other",
            not extra and not missing),
    ]  # fmt: skip
    if isinstance(child, str):
        results.wrong.append(f"full build in a child process failed: {child}")
        results.rows.append(Row("max RSS, full build alone (child process)", "failed", "< 200 MB", False))
        return results
    results.expect("full build in the child: files written", child.written, full.written)
    # The same store must give the same bytes (no clock in the output), and no temporary file stays.
    other = digests(workdir / "feeds-memory")
    differ = sorted(name for name in tree.keys() | other.keys() if tree.get(name) != other.get(name))
    same = results.expect("files that differ between the child's build and the full build", differ, [])
    results.rows += [
        Row("max RSS, full build alone (child process)", f"{child.max_rss_mb:.1f} MB",
            f"< {TARGET_RSS_MB:.0f} MB", child.max_rss_mb < TARGET_RSS_MB),
        Row("  of which before the build (interpreter, imports, store)", f"{child.before_mb:.1f} MB"),
        Row("  the child's full build", f"{child.seconds:.2f} s"),
        Row("  its files identical to the full build's", "yes" if same else "no", "yes", same),
    ]  # fmt: skip
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=10_000, metavar="N", help="item files to generate")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR (new or empty) and keep it")
    parser.add_argument(CHILD_OPTION, type=Path, metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.full_build_child is not None:
        return full_build_child(args.full_build_child)
    if args.items < 1:
        parser.error("--items must be at least 1")
    print(
        f"syndicator feeds benchmark: {args.items} items, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs"
    )
    if args.keep is not None:
        if args.keep.exists() and any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: the folder is not empty")
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run(args.keep.resolve(), args.items)
    else:
        with tempfile.TemporaryDirectory(prefix="syndicator-feeds-bench-") as workdir:
            results = run(Path(workdir), args.items)
    return results.finish()


if __name__ == "__main__":
    sys.exit(main())
