"""Benchmark against rss2email: 1,000 digests of one item each, and rss2email sending 1,000 entries.

Both send to the same sink (bench/smtp.py's, in a process of its own) waiting `--delay` before
every reply, at 5 ms (a relay in the same region) and at 0 ms; each is timed as a whole process,
start-up included:

- syndicator: `syndicator digest send` (with `--workers N`: that many workers) on a fresh SQLite
  project holding one shipped sample item and `--messages` subscribers with no interest (each
  gets a digest of that one item), ingested beforehand (not timed); `max_connections: 4`,
  `rate_per_second: 100000`.
- rss2email 3.14 (`pip install rss2email==3.14` into the environment `--r2e` names): a feed file of
  `--messages` entries, one recipient, `r2e run` sending each entry as an email over SMTP.

Targets (the scale-out issue): syndicator ≥ 3× rss2email's messages/s at 5 ms and ≥ 1× at 0 ms.
Each is timed `--repeat` times (the median counts: one run on a shared machine varies by a
fifth). syndicator's modules are byte-compiled first, as installing a wheel does (and as
rss2email's are): a checkout run with PYTHONDONTWRITEBYTECODE would compile them at every start.
Both senders' counts must match what the sink received (exit 1 if not); otherwise it prints a
table and exits 0 whatever the speed.

Run from the project's root:

    python3 -m venv /tmp/r2e && /tmp/r2e/bin/pip install rss2email==3.14
    .venv/bin/python bench/rss2email.py --r2e /tmp/r2e/bin/r2e
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from workers import ROOT, project, sink_process  # bench/ is on the path when run as a script

TARGETS = {0.005: 3.0, 0.0: 1.0}


def syndicator_send(folder: Path, port: int, messages: int, workers: int) -> tuple[float, str]:
    """Seconds `syndicator digest send --workers N` took, as a whole process, and its summary."""
    folder.mkdir()
    (folder / "items").mkdir()
    first = sorted((ROOT / "items").iterdir())[0]
    shutil.copy(first, folder / "items" / first.name)
    config = project(folder, f"sqlite:///{folder / 'store.db'}", port, messages, lookback=40000)
    command = [sys.executable, "-m", "syndicator"]
    started = time.perf_counter()
    send = [*command, "digest", "send", *config, "--workers", str(workers)]
    done = subprocess.run(send, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, " / ".join(done.stdout.strip().splitlines())


def feed(path: Path, entries: int) -> None:
    """An RSS 2.0 file of `entries` entries, each with a paragraph of text."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    items = "".join(
        f"<item><title>Actualité {n}</title><link>https://example.org/actualites/{n}</link>"
        f"<guid>https://example.org/actualites/{n}</guid>"
        f"<pubDate>{format_datetime(start + timedelta(minutes=n))}</pubDate>"
        f"<description>{escape(f'<p>Un appel à projets pour les quartiers prioritaires, n° {n}.</p>')}"
        "</description></item>"
        for n in range(entries)
    )
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>IREV</title>'
        f"<link>https://example.org/</link><description>Actualités</description>{items}</channel></rss>",
        encoding="utf-8",
    )


def rss2email_send(r2e: str, folder: Path, port: int, messages: int) -> float:
    """Seconds `r2e run` took, as a whole process, to send the `messages` entries of a new feed."""
    folder.mkdir()
    feed(folder / "feed.xml", messages)
    env = {**os.environ, "XDG_CONFIG_HOME": str(folder / "config"), "XDG_DATA_HOME": str(folder / "data")}
    config_file = folder / "config" / "rss2email.cfg"
    config_file.parent.mkdir()
    config_file.write_text(
        "[DEFAULT]\n"
        "from = lettre@example.org\n"
        "to = lecteur@example.org\n"
        "email-protocol = smtp\n"
        f"smtp-server = 127.0.0.1:{port}\n"
        "smtp-auth = False\n"
        "smtp-ssl = False\n",
        encoding="utf-8",
    )
    run = [r2e, "-c", str(config_file), "-d", str(folder / "data" / "rss2email.json")]
    add = [*run, "add", "bench", (folder / "feed.xml").as_uri()]
    subprocess.run(add, env=env, check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run([*run, "run"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--r2e", default=shutil.which("r2e"), help="the r2e command of rss2email 3.14")
    parser.add_argument("--workers", type=int, default=1, help="syndicator's `digest send --workers N`")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, the median counts")
    args = parser.parse_args(argv)
    if not args.r2e:
        raise SystemExit("bench: rss2email is missing; hint: pip install rss2email==3.14, then --r2e PATH")
    compileall.compile_dir(ROOT / "syndicator", quiet=1)
    rows: list[tuple[float, float, float]] = []
    right = True
    with tempfile.TemporaryDirectory(prefix="bench-r2e-") as temp:
        for delay in TARGETS:
            ours_times, theirs_times = [], []
            for run in range(args.repeat):  # alternated, so that both see the machine alike
                with sink_process(reply_delay=delay) as (port, counts):
                    ours, summary = syndicator_send(
                        Path(temp) / f"syndicator-{delay}-{run}", port, args.messages, args.workers
                    )
                print(f"  {delay * 1000:g} ms: syndicator {summary} in {ours:.2f} s "
                      f"({counts.messages} received)")  # fmt: skip
                right = right and counts.messages == args.messages and counts.recipients == args.messages
                with sink_process(reply_delay=delay) as (port, counts):
                    theirs = rss2email_send(args.r2e, Path(temp) / f"r2e-{delay}-{run}", port, args.messages)
                print(f"  {delay * 1000:g} ms: rss2email {args.messages} entries in {theirs:.2f} s "
                      f"({counts.messages} received)")  # fmt: skip
                right = right and counts.messages == args.messages
                ours_times.append(ours)
                theirs_times.append(theirs)
            ours, theirs = statistics.median(ours_times), statistics.median(theirs_times)
            rows.append((delay, args.messages / ours, args.messages / theirs))
    print(f"\n{'delay':>6} {'syndicator':>11} {'rss2email':>10} {'ratio':>6}  target")
    for delay, ours_rate, theirs_rate in rows:
        ratio = ours_rate / theirs_rate
        target = TARGETS[delay]
        verdict = f"≥ {target:g}×: {'met' if ratio >= target else 'missed'}"
        print(f"{delay * 1000:>4g}ms {ours_rate:>9.1f}/s {theirs_rate:>8.1f}/s {ratio:>5.2f}×  {verdict}")
    print("every message received:", "yes" if right else "NO")
    return 0 if right else 1


if __name__ == "__main__":
    sys.exit(main())
