"""Benchmark of several send workers: `syndicator digest send --workers N` for N = 1, 2, 4.

For each N: a fresh database (a SQLite file in a temporary folder, or the PostgreSQL database
`--database` names, emptied first), the shipped sample items, `--subscribers` subscribers with
no interest (each gets one digest), and a sink in a process of its own (bench/smtp.py's) that
waits `--delay` seconds before every reply, as a far or throttled relay would. The whole
`digest send --workers N` process is timed; messages/s, its ratio to one worker, and whether
every digest arrived exactly once (the sink's count and distinct recipients) are printed.

Targets (the scale-out issue): on PostgreSQL, 5,000 subscribers, 50 ms: 2 workers ≥ 1.8× and
4 workers ≥ 3.2× the messages/s of one; every digest exactly once. Exit 1 only when a count is
wrong.

Run from the project's root:

    .venv/bin/python bench/workers.py --subscribers 500
    .venv/bin/python bench/workers.py --database postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine  # noqa: E402 -- after the path is set

from syndicator.db.schema import metadata, schema_version  # noqa: E402


def _sibling(name: str) -> Any:
    """A module of this folder, loaded by its path (bench/ is no package): bench/smtp.py's sink."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its sink process is started by "spawn", which imports it by name
    spec.loader.exec_module(module)
    return module


sink_process = _sibling("smtp").sink_process

CONNECTIONS = 4  # per worker
TARGETS = {2: 1.8, 4: 3.2}


def empty(url: str) -> None:
    """Drop every table of syndicator's from the database, so that each N starts afresh."""
    engine = create_engine(url)
    with engine.begin() as connection:
        metadata.drop_all(connection)
        schema_version.drop(connection, checkfirst=True)
    engine.dispose()


def project(folder: Path, database: str, port: int, subscribers: int, *, lookback: int) -> list[str]:
    """A config in `folder` for `subscribers` weekly subscribers with no interest (each gets a
    digest of every item of the last `lookback` days), sending through the sink on `port`, its
    items ingested; the `--config` arguments for it."""
    listed = "".join(f"  - email: s{n}@example.org\n    frequency: weekly\n" for n in range(subscribers))
    (folder / "config.yaml").write_text(
        f"database: {database}\n"
        "email:\n"
        "  from: 'IREV <lettre@example.org>'\n"
        "  transport: smtp\n"
        f"  smtp: {{host: 127.0.0.1, port: {port}, starttls: false, timeout: 30}}\n"
        f"  max_connections: {CONNECTIONS}\n"
        "  rate_per_second: 100000\n"
        f"  lookback_days: {{weekly: {lookback}}}\n"
        f"subscribers:\n{listed}",
        encoding="utf-8",
    )
    config = ["--config", str(folder / "config.yaml")]
    subprocess.run([sys.executable, "-m", "syndicator", "ingest", *config], check=True, capture_output=True)
    return config


def one(
    workdir: Path, database: str | None, subscribers: int, workers: int, delay: float
) -> tuple[float, bool]:
    """messages/s of `digest send --workers N`, and whether every digest arrived exactly once."""
    folder = workdir / f"n{workers}"
    folder.mkdir()
    shutil.copytree(ROOT / "items", folder / "items")
    url = database or f"sqlite:///{folder / 'store.db'}"
    if database:
        empty(database)
    with sink_process(reply_delay=delay) as (port, counts):
        config = project(folder, url, port, subscribers, lookback=4000)
        command = [sys.executable, "-m", "syndicator"]
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "digest", "send", *config, "--workers", str(workers)],
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
    print(done.stdout.strip(), file=sys.stderr)
    exact = counts.messages == subscribers and counts.recipients == subscribers
    got = f"{counts.messages} messages, {counts.recipients} recipients"
    print(f"  {workers} worker(s): {got} in {elapsed:.1f} s")
    return counts.messages / elapsed, exact


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds the sink waits before every reply")
    parser.add_argument("--workers", default="1,2,4", help="the worker counts to measure, comma-separated")
    parser.add_argument("--database", help="an empty PostgreSQL database URL (default: SQLite files)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    figures: dict[int, float] = {}
    right = True
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as temp:
        for workers in counts:
            rate, exact = one(Path(temp), args.database, args.subscribers, workers, args.delay)
            figures[workers] = rate
            right = right and exact
    base = figures.get(1)
    print(f"\n{'workers':>8} {'msg/s':>8} {'× one':>6}  target")
    for workers, rate in figures.items():
        ratio = rate / base if base else float("nan")
        target = TARGETS.get(workers)
        verdict = "" if target is None else f"≥ {target}×: {'met' if ratio >= target else 'missed'}"
        print(f"{workers:>8} {rate:>8.1f} {ratio:>6.2f}  {verdict}")
    print("every digest exactly once:", "yes" if right else "NO")
    return 0 if right else 1


if __name__ == "__main__":
    sys.exit(main())
