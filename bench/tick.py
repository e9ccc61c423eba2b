"""Benchmark of the daemon's refresh when nothing changed, at 1,000 and at 100,000 items.

For each size it generates that many item files (the generator of `bench/feeds.py`: the site's
vocabulary, seeded, so every run writes the same files), ingests them into a fresh SQLite
store, and writes a `config.yaml` with subscribers of every frequency (outbox transport). None
of that is measured. Then it builds the daemon as `syndicator run` does (`Daemon`, with its
watcher on `items/` started), runs the start cycle (the full scan, feeds, the digests due), and
measures `Daemon.run_job("refresh")` as the scheduler calls it at a refresh time (the job's
last run set back a day first, untimed), REPEAT times with nothing changed: ingest of what
the watcher saw (nothing), the feeds' fast path, the due checks and the immediate digests'
fast path, with their state writes.

Targets (issue #6): a refresh with nothing changed < 100 ms at both sizes, and the 100k figure
≤ 1.5 × the 1k figure — its cost follows what changed, not the size of the store. For
information it also times a refresh after one new item file (read, stored, its feeds and the
indexes rewritten, immediate digests built).

It prints a table (measure, figure, target, OK/MISSED) and exits 0 whatever the speed; 1 only
when a result is wrong (a refresh that reads or writes when nothing changed).

Run from the project's root (100k items take a few minutes to generate and ingest):

    .venv/bin/python bench/tick.py
    .venv/bin/python bench/tick.py --sizes 1000 20000 --repeat 50
    .venv/bin/python bench/tick.py --keep /tmp/tick   # keep the items and stores, reuse them next time

The machine's other work moves wall times by several milliseconds between runs; the CPU time
of the refresh (this process, all threads) is the steadier figure, and the table gives both.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syndicator.config.model import load_config
from syndicator.db.store import Store
from syndicator.ingest.reading import ingest
from syndicator.service.daemon import Daemon
from syndicator.service.scheduler import last_result, record_run

# bench/ingest.py and bench/feeds.py: the folder of the script run is first on sys.path.
from feeds import SEED, bench_corpus, new_item_text
from ingest import SHIPPED_ITEMS, Results, Row, generate, load_corpus

TARGET_MS = 100.0
TARGET_RATIO = 1.5

CONFIG = """\
# Written by bench/tick.py.
items: {{path: items/}}
database: sqlite:///bench.db
feeds: {{output: feeds/}}
email: {{from: "IREV <lettre@example.org>", transport: outbox, outbox: outbox/}}
subscribers:
{subscribers}
"""


def _config(workdir: Path) -> Path:
    people = [
        f"  - {{email: s{n}@example.org, frequency: {frequency}, thematiques: [{theme}]}}"
        for n, (frequency, theme) in enumerate(
            (f, t)
            for f in ("immediate", "daily", "weekly", "monthly")
            for t in ("Santé", "Culture", "Éducation")
        )
    ]
    path = workdir / "config.yaml"
    path.write_text(CONFIG.format(subscribers="\n".join(people)), encoding="utf-8")
    return path


def _refresh_ms(service: Daemon) -> tuple[float, float]:
    """One refresh as the scheduler runs it at a refresh time: wall and CPU milliseconds."""
    # Its time has come: the immediate digests are due, as at every refresh time of the daemon.
    record_run(service.store, "refresh", datetime.now(UTC) - timedelta(days=1))
    wall, cpu = time.perf_counter(), time.process_time()
    service.run_job("refresh")
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def measure(workdir: Path, count: int, repeat: int, results: Results) -> tuple[float, float]:
    """The median refresh times (wall, CPU; ms) with nothing changed, at `count` items."""
    started = time.perf_counter()
    config_path = _config(workdir)
    config = load_config(config_path)
    if not (workdir / "bench.db").exists():
        rng = random.Random(SEED)
        generate(workdir / "items", count, bench_corpus(load_corpus(SHIPPED_ITEMS), rng), SEED)
        with Store.open(config.database_url) as store:
            report = ingest(store, [config.items_path])
            results.expect(f"{count}: ingest errors", len(report.errors), 0)
        print(f"{count} items generated and ingested in {time.perf_counter() - started:.1f} s (not measured)")
    else:
        (config.items_path / "zz_new_item.txt").unlink(missing_ok=True)
        print(f"{count} items already in {workdir}")

    with Store.open(config.database_url) as store:
        service = Daemon(config_path, config, store)
        service.watcher.start()
        try:
            started = time.perf_counter()
            service.run_job("start")  # the full scan, the feeds, the digests due
            print(f"  start cycle: {time.perf_counter() - started:.2f} s")
            for _ in range(3):  # warm up: caches, the first due checks
                _refresh_ms(service)
            ticks = [_refresh_ms(service) for _ in range(repeat)]
            walls, cpus = [wall for wall, _ in ticks], [cpu for _, cpu in ticks]
            result = last_result(store, "refresh")
            summary = result[1] if result else ""
            results.expect(f"{count}: nothing read", "items 0 new, 0 updated, 0 unchanged" in summary, True)
            results.expect(f"{count}: no feed written", "feeds 0 written" in summary, True)
            new_item = config.items_path / "zz_new_item.txt"
            new_item.write_text(new_item_text(), encoding="utf-8")
            time.sleep(1.0)  # the watcher's debounce and its poll
            one, _ = _refresh_ms(service)
            result = last_result(store, "refresh")
            read = (
                "items 1 new, 0 updated, 0 unchanged",
                "items 0 new, 0 updated, 1 unchanged",
            )  # --keep: known
            results.expect(f"{count}: the new file read", bool(result and result[1].startswith(read)), True)
        finally:
            service.watcher.stop()

    median, cpu = statistics.median(walls), statistics.median(cpus)
    results.rows += [
        Row(f"refresh, nothing changed, {count:,} items (median of {repeat})", f"{median:.1f} ms",
            f"< {TARGET_MS:g} ms", median < TARGET_MS),
        Row("  its CPU time (median)", f"{cpu:.1f} ms"),
        Row("  slowest of them", f"{max(walls):.1f} ms"),
        Row(f"refresh after 1 new item file, {count:,} items", f"{one:.0f} ms"),
    ]  # fmt: skip
    return median, cpu


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000], metavar="N")
    parser.add_argument("--repeat", type=int, default=100, metavar="K", help="refreshes timed per size")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="work in DIR/<size>, and reuse what a previous run left there",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    results = Results()
    medians: list[tuple[float, float]] = []
    for count in args.sizes:
        if args.keep:
            (args.keep / str(count)).mkdir(parents=True, exist_ok=True)
            medians.append(measure(args.keep / str(count), count, args.repeat, results))
            continue
        with tempfile.TemporaryDirectory(prefix=f"syndicator-tick-{count}-") as folder:
            medians.append(measure(Path(folder), count, args.repeat, results))
    if len(medians) >= 2:
        (small_wall, small_cpu), (large_wall, large_cpu) = medians[0], medians[-1]
        against = f"{args.sizes[-1]:,} items against {args.sizes[0]:,}"
        results.rows += [
            Row(f"{against}, wall", f"{large_wall / small_wall:.2f}×", f"≤ {TARGET_RATIO:g}×",
                large_wall / small_wall <= TARGET_RATIO),
            Row(f"{against}, CPU", f"{large_cpu / small_cpu:.2f}×", f"≤ {TARGET_RATIO:g}×",
                large_cpu / small_cpu <= TARGET_RATIO),
        ]  # fmt: skip
    return results.finish()


if __name__ == "__main__":
    sys.exit(main())
