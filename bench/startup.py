"""Start-up of the command line: `syndicator --help` against rss2email's `r2e --help`, and
`syndicator status` on the shipped samples, each timed as a whole process (median of `--runs`).

Targets (the layout issue): `syndicator --help` ≤ 1.5× `r2e --help`, and `syndicator status` on the
samples ≤ 0.6 s on the project's 2-core machine. It prints a table and exits 0 whatever the speed.

Run from the project's root; it copies config.yaml and items/ into a temporary folder and
ingests them first (not timed):

    python3 -m venv /tmp/r2e && /tmp/r2e/bin/pip install rss2email==3.14
    .venv/bin/python bench/startup.py --r2e /tmp/r2e/bin/r2e
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def median_seconds(command: list[str], cwd: Path, runs: int) -> float:
    """The median wall-clock seconds of `runs` runs of `command`, as a whole process."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--r2e", type=Path, help="rss2email's r2e script (3.14) to compare with")
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    syndicator = str(Path(sys.executable).parent / "syndicator")
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        shutil.copy(ROOT / "config.yaml", project / "config.yaml")
        shutil.copytree(ROOT / "items", project / "items")
        subprocess.run([syndicator, "ingest"], cwd=project, capture_output=True, check=True)
        rows = [
            ("syndicator --help", median_seconds([syndicator, "--help"], project, args.runs)),
            ("syndicator status", median_seconds([syndicator, "status"], project, args.runs)),
        ]
        if args.r2e:
            rows.append(("r2e --help", median_seconds([str(args.r2e), "--help"], project, args.runs)))
    for name, seconds in rows:
        print(f"{name:<20} {seconds * 1000:7.0f} ms")
    figures = dict(rows)
    if "r2e --help" in figures:
        ratio = figures["syndicator --help"] / figures["r2e --help"]
        print(f"--help ratio         {ratio:7.2f}×  (target ≤ 1.5×)")
    print(f"status               {figures['syndicator status']:7.2f} s  (target ≤ 0.6 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
