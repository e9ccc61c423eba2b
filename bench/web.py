"""Benchmark of the feeds over HTTP (`syndicator.feeds.server`): requests/s and latency under load.

It builds a realistic feeds folder first, not measured: N item files (default 1,000) from the
generator of `bench/feeds.py` (the site's 15 thématiques, 40 territoires and 5 types, bodies
from the shipped items), ingested into a fresh SQLite store, and `update_feeds` with
`max_items: 50`, so `all.rss` holds 50 items. Then it starts the app in a child process as the
web app serves it: `feeds_app(config)` mounted at `/feeds` in a Starlette app, under uvicorn
with the settings `syndicator serve` uses (`web_limits.server_config`: h11 with its header size
limit and header timeout, uvloop when installed; access log off), on a
loopback socket the benchmark binds on a free port and hands over, and drives load on:

1. `/feeds/all.rss` with a matching `If-None-Match` (and `Accept-Encoding: gzip`, as readers
   send it): the 304 a polling reader gets when nothing changed (targets: ≥ 2,000 requests/s,
   p99 < 20 ms);
2. `/feeds/all.rss` in full (200, 50 items, no compression; target ≥ 500 requests/s);
3. the same with `Accept-Encoding: gzip` (200, the gzip form cached by the server).

Load comes from `wrk` (Debian/Ubuntu: `apt-get install wrk`; macOS: `brew install wrk`), one
thread and `--connections` keep-alive connections, when it is on the PATH; otherwise from a
Python client in this process (asyncio, raw keep-alive sockets), which is slower than the server
and so gives lower bounds. Each measure is repeated (`--repeat`): the machine is shared, so the
table shows the best run and the median one, and the server's CPU time per request (from
/proc, Linux), which other processes disturb less than wall-clock rates.

It prints a table (measure, figure, target, OK/MISSED) and exits 0 whatever the speed; it exits
1 only when a result is wrong: a status or body other than expected, or socket errors.

Run from the project's root:

    .venv/bin/python bench/web.py                    # 1,000 items, 3 runs of 5 s per measure
    .venv/bin/python bench/web.py --seconds 10 --repeat 5 --connections 32
    .venv/bin/python bench/web.py --client python    # without wrk even where it is installed
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from syndicator.db.store import Store
from syndicator.feeds.build import update_feeds
from syndicator.feeds.server import feeds_app
from syndicator.ingest.reading import ingest
from syndicator.web.limits import server_config

from feeds import SEED, bench_corpus, load, write_config
from ingest import SHIPPED_ITEMS, Results, Row, generate, load_corpus

TARGET_304_RPS = 2_000.0
TARGET_304_P99_MS = 20.0
TARGET_200_RPS = 500.0
SERVE_OPTION = "--serve-child"
FEED = "/feeds/all.rss"
WRK_HINT = "wrk is not installed (apt-get install wrk, or brew install wrk): using the Python client"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    headers: dict[str, str]
    status: int
    target_rps: float | None = None
    target_p99_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """One load run: its rate and latency, and the server's CPU time per request."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float | None
    errors: int  # socket errors and unexpected statuses


# --- the server, in its own process ----------------------------------------------------------


def serve_child(config_path: Path, fd: int) -> int:
    """Serve the feeds of `config_path` at /feeds on the listening socket `fd`, until killed."""
    app = Starlette(routes=[Mount("/feeds", app=feeds_app(load(config_path)))])
    settings = server_config(app, log_level="warning")  # the limits `syndicator serve` runs with
    uvicorn.Server(settings).run(sockets=[socket.socket(fileno=fd)])
    return 0


def start_server(config_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The server in a child process, on a loopback port bound here; its process and port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    command = [sys.executable, str(Path(__file__).resolve()), SERVE_OPTION, str(config_path), str(fd)]
    process = subprocess.Popen(command, pass_fds=[fd])
    listener.close()  # the child has its own copy
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{FEED}", timeout=5) as response:
                response.read()
            return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: the server did not start (exit {process.poll()})") from None
            time.sleep(0.1)


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a process so far (Linux /proc), None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- load generators -------------------------------------------------------------------------

_WRK_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_WRK_PERCENTILE = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(
    url: str, headers: dict[str, str], seconds: float, connections: int
) -> tuple[float, float, float, int]:
    """requests/s, p50 and p99 in ms, and errors, of one wrk run."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run([*command, url], capture_output=True, text=True, check=False)
    rate = _WRK_RATE.search(done.stdout)
    percentiles = {p: float(v) * _UNIT_MS[unit] for p, v, unit in _WRK_PERCENTILE.findall(done.stdout)}
    if done.returncode != 0 or rate is None or set(percentiles) != {"50", "99"}:
        raise SystemExit(f"bench: wrk failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    errors = sum(int(n) for n in _WRK_NON_2XX.findall(done.stdout))
    if socket_errors := _WRK_SOCKET.search(done.stdout):
        errors += sum(int(n) for n in socket_errors.groups())
    return float(rate.group(1)), percentiles["50"], percentiles["99"], errors


async def _python_connection(
    port: int, request: bytes, status: int, stop: float, latencies: list[float]
) -> int:
    """Send `request` again and again on one keep-alive connection until `stop`; the errors."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    expected = f" {status} ".encode()
    try:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length and status != 304:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if expected not in head.split(b"\r\n", 1)[0]:
                errors += 1
    finally:
        writer.close()
        await writer.wait_closed()
    return errors


async def _python_load(
    port: int, request: bytes, status: int, seconds: float, connections: int
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    started = time.perf_counter()
    stop = started + seconds
    errors = await asyncio.gather(
        *(_python_connection(port, request, status, stop, latencies) for _ in range(connections))
    )
    return latencies, sum(errors), time.perf_counter() - started


def run_python(
    port: int, path: str, scenario: Scenario, seconds: float, connections: int
) -> tuple[float, float, float, int]:
    """requests/s, p50 and p99 in ms, and errors, of one run of the Python client."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in scenario.headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    latencies, errors, elapsed = asyncio.run(
        _python_load(port, request, scenario.status, seconds, connections)
    )
    if not latencies:
        return 0.0, 0.0, 0.0, errors + 1
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return len(latencies) / elapsed, p50, p99, errors


# --- the benchmark ---------------------------------------------------------------------------


def build_feeds(workdir: Path, count: int) -> Path:
    """Items, store and feeds in `workdir`; the config file's path."""
    started = time.perf_counter()
    corpus = bench_corpus(load_corpus(SHIPPED_ITEMS), random.Random(SEED))
    generate(workdir / "items", count, corpus, SEED)
    config_path = write_config(workdir, "config.yaml", "bench.db", "feeds")
    config = load(config_path)
    with Store.open(config.database_url) as store:
        report = ingest(store, [workdir / "items"])
        if report.errors:
            raise SystemExit(f"bench: ingest failed: {report.errors[:3]}")
        update_feeds(store, config)
    print(f"built {count} items and their feeds in {time.perf_counter() - started:.1f} s (not measured)")
    return config_path


def check(port: int, feed: bytes, results: Results) -> str:
    """What the server answers is right; the ETag of the gzip form."""

    def get(headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{FEED}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()

    status, headers, body = get({"Accept-Encoding": "identity"})
    results.expect("200: status", status, 200)
    results.expect("200: body is the file", body == feed, True)
    status, headers, body = get({"Accept-Encoding": "gzip"})
    results.expect("gzip 200: encoding", headers.get("content-encoding"), "gzip")
    results.expect("gzip 200: body decodes to the file", gzip.decompress(body) == feed, True)
    zipped = headers.get("etag", "")
    results.expect("gzip 200: ETag of the gzip form", zipped.endswith('-gz"'), True)
    status, _, body = get({"Accept-Encoding": "gzip", "If-None-Match": zipped})
    results.expect("304: status and body length", (status, len(body)), (304, 0))
    return zipped


def measure(port: int, pid: int, scenario: Scenario, *, seconds: float, connections: int, client: str) -> Run:
    before = cpu_seconds(pid)
    if client == "wrk":
        rps, p50, p99, errors = run_wrk(
            f"http://127.0.0.1:{port}{FEED}", scenario.headers, seconds, connections
        )
    else:
        rps, p50, p99, errors = run_python(port, FEED, scenario, seconds, connections)
    after = cpu_seconds(pid)
    requests = rps * seconds
    cpu_us = (
        (after - before) / requests * 1e6 if before is not None and after is not None and requests else None
    )
    return Run(rps, p50, p99, cpu_us, errors)


def rows_for(scenario: Scenario, runs: Sequence[Run], results: Results) -> list[Row]:
    """Rate and latency of the best run and of the median one (each figure ranked on its own)."""
    results.expect(f"{scenario.name}: unexpected statuses or socket errors", sum(r.errors for r in runs), 0)
    by_rate = sorted(runs, key=lambda r: r.rps, reverse=True)
    by_p99 = sorted(runs, key=lambda r: r.p99_ms)
    middle = (len(runs) - 1) // 2
    rps_target = f"≥ {scenario.target_rps:,.0f}" if scenario.target_rps else "—"
    p99_target = f"p99 < {scenario.target_p99_ms:g} ms" if scenario.target_p99_ms else "—"

    def rate(what: str, run: Run) -> Row:
        ok = None if scenario.target_rps is None else run.rps >= scenario.target_rps
        return Row(f"  requests/s, {what}", f"{run.rps:,.0f}", rps_target, ok)

    def latency(what: str, run: Run) -> Row:
        ok = None if scenario.target_p99_ms is None else run.p99_ms < scenario.target_p99_ms
        return Row(f"  latency p50 / p99, {what}", f"{run.p50_ms:.2f} / {run.p99_ms:.2f} ms", p99_target, ok)

    cpu = sorted(r.cpu_us for r in runs if r.cpu_us is not None)
    return [
        Row(scenario.name, ""),
        rate("best run", by_rate[0]),
        rate("median run", by_rate[middle]),
        latency("best run", by_p99[0]),
        latency("median run", by_p99[middle]),
        Row("  server CPU per request, best / median", f"{cpu[0]:.0f} / {cpu[(len(cpu) - 1) // 2]:.0f} µs"
            if cpu else "n/a"),
    ]  # fmt: skip


def run(workdir: Path, args: argparse.Namespace) -> Results:
    results = Results()
    config_path = build_feeds(workdir, args.items)
    feed = (load(config_path).feeds_path / "all.rss").read_bytes()
    items = feed.count(b"<item>")
    results.expect("items in all.rss", items, min(50, args.items))
    process, port = start_server(config_path)
    try:
        zipped = check(port, feed, results)
        packed = len(gzip.compress(feed, compresslevel=9, mtime=0))
        print(
            f"server: pid {process.pid}, http://127.0.0.1:{port}{FEED}: {items} items, "
            f"{len(feed) / 1024:.0f} KB ({packed / 1024:.0f} KB gzipped); load from {args.client}, "
            f"{args.connections} connections, {args.repeat} × {args.seconds:g} s per measure"
        )
        scenarios = [
            Scenario(f"304, If-None-Match on {FEED}", {"Accept-Encoding": "gzip", "If-None-Match": zipped},
                     304, TARGET_304_RPS, TARGET_304_P99_MS),
            Scenario(f"200, {FEED} in full ({items} items)", {"Accept-Encoding": "identity"}, 200,
                     TARGET_200_RPS),
            Scenario(f"200, {FEED} gzipped", {"Accept-Encoding": "gzip"}, 200, TARGET_200_RPS),
        ]  # fmt: skip
        for scenario in scenarios:
            # A short warm-up run, not counted: connections, caches, the CPU's clock.
            measure(port, process.pid, scenario, seconds=1, connections=args.connections, client=args.client)
            runs = []
            for n in range(args.repeat):
                one = measure(port, process.pid, scenario, seconds=args.seconds,
                              connections=args.connections, client=args.client)  # fmt: skip
                print(f"  {scenario.name}, run {n + 1}: {one.rps:,.0f} requests/s, "
                      f"p50 {one.p50_ms:.2f} ms, p99 {one.p99_ms:.2f} ms")  # fmt: skip
                runs.append(one)
            results.rows += rows_for(scenario, runs, results)
    finally:
        process.terminate()
        process.wait(10)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=1_000, metavar="N", help="item files to generate")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--client", choices=("wrk", "python"), help="load generator (default: wrk if found)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR (new or empty) and keep it")
    parser.add_argument(SERVE_OPTION, nargs=2, metavar=("CONFIG", "FD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child is not None:
        return serve_child(Path(args.serve_child[0]), int(args.serve_child[1]))
    if args.items < 1 or args.repeat < 1 or args.seconds <= 0 or args.connections < 1:
        parser.error("--items, --repeat and --connections must be at least 1, --seconds above 0")
    if args.client is None:
        args.client = "wrk" if shutil.which("wrk") else "python"
        if args.client == "python":
            print(WRK_HINT)
    elif args.client == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not on the PATH (apt-get install wrk)")
    python = sys.version.split()[0]
    print(f"syndicator web benchmark: {args.items} items, Python {python}, {os.cpu_count()} CPUs")
    if args.keep is not None:
        if args.keep.exists() and any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: the folder is not empty")
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run(args.keep.resolve(), args)
    else:
        with tempfile.TemporaryDirectory(prefix="syndicator-web-bench-") as workdir:
            results = run(Path(workdir), args)
    return results.finish()


if __name__ == "__main__":
    sys.exit(main())
