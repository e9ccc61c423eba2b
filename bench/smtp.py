"""Benchmark of SMTP delivery: `digest send` through the `smtp` transport against plain senders.

N is 2,500 by default, not 5,000, to keep the run under about 3 minutes on 2 cores.
The senders run in this process; the sink, an aiosmtpd server on 127.0.0.1 (tests/smtp_server.py)
that counts what it accepts and keeps nothing else, runs in a process of its own, as a relay
would: in this one it would take turns with the senders at the interpreter lock, and what it
costs would be counted against them.

A. The sink answers at once, no TLS:

1. a bare aiosmtplib sender, 4 connections kept open, N pre-built messages of the average size
   of the digests of A2 → msg/s;
2. `send_digests(DigestRun(store, config, now=...))` end to end (building every digest, the
   ledger, delivery) for N subscribers with no interest, so that each gets a digest of the
   ~200 generated items (bench/ingest.py's generator); `transport: smtp`, `starttls: false`,
   `max_connections: 4`, `rate_per_second: 100000` → digests/s, and its ratio to A1 (target
   ≥ 50%).

B. The sink offers STARTTLS (self-signed certificate) and waits 5 ms before each reply (the
greeting, EHLO, STARTTLS, MAIL, RCPT, DATA's 354, the end of DATA, QUIT), as a relay in the same
region would seem:

1. stdlib `smtplib`, ONE connection per message, STARTTLS each time, unverified, for
   min(N, 500) messages → msg/s;
2. `send_digests` as in A2, with `starttls: true` and `verify: false` (this benchmark's config
   only), 4 connections, for N subscribers → msg/s, and its ratio to B1 (target ≥ 5×).

B′. As B, but the sink waits 5 ms before its answers to EHLO, MAIL, RCPT and the end of DATA
only, as this benchmark's sink used to: B′1 and B′2 as B1 and B2, the ratio shown without a
target, so that figures measured before can be compared.

The sink's counts must match what each sender reports as sent (exit 1 if not); otherwise it
prints a table and exits 0 whatever the speed. Item generation, ingest and the config are not
part of the figures.

Run from the project's root:

    .venv/bin/python bench/smtp.py                  # N = 2500 (about 3 minutes on 2 cores)
    .venv/bin/python bench/smtp.py --messages 1000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import smtplib
import ssl
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from multiprocessing.connection import Connection
from pathlib import Path

from aiosmtpd.smtp import SMTP as ServerSMTP
from aiosmtpd.smtp import Envelope, Session
from aiosmtplib import SMTP

from syndicator.config.model import load_config
from syndicator.db.store import Store
from syndicator.digests.run import DigestRun
from syndicator.digests.send import send_digests
from syndicator.ingest.reading import ingest

# bench/ingest.py and bench/feeds.py: the folder of the script being run is first on sys.path.
from ingest import SHIPPED_ITEMS, Results, Row, generate, load_corpus

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # for tests/smtp_server.py
from tests.smtp_server import Handler, self_signed, smtp_server

ITEMS = 200
# 5,000 would take over 5 minutes on 2 cores: digest send runs at ~43 digests/s here (3,000 took 3m14).
DEFAULT_MESSAGES = 2500
SEED = 20261126
CONNECTIONS = 4
MAX_ITEMS = 8  # email.max_items: digests of about 20 KB
DELAY = 0.005  # seconds the slow sink waits before each reply
SMTPLIB_MAX = 500  # messages B1 sends at most, one connection each
SENDER = "lettre@example.org"
TARGET_A = 0.5  # digest send / bare aiosmtplib
TARGET_B = 5.0  # digest send / smtplib, one connection per message

CONFIG = """\
# Written by bench/smtp.py.
site:
  title: IREV
items:
  path: {items}
database: sqlite:///bench.db
email:
  from: "IREV <{sender}>"
  transport: smtp
  smtp: {{host: 127.0.0.1, port: {port}, starttls: {starttls}, verify: false, timeout: 30}}
  max_connections: {connections}
  rate_per_second: 100000
  max_items: {max_items}
  lookback_days: {{immediate: 4000, daily: 4000, weekly: 4000, monthly: 4000}}
subscribers:
"""


class Sink(Handler):
    """In the sink process: counts accepted messages, recipients and bytes; waits `delay` before
    answering EHLO, MAIL, RCPT and the end of DATA (B′; B's delay is the server's, before every
    reply)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.messages = 0
        self.bytes = 0
        self.recipients: set[str] = set()
        self._count_lock = threading.Lock()

    async def _wait(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)

    async def handle_EHLO(
        self, server: ServerSMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        await self._wait()
        return await super().handle_EHLO(server, session, envelope, hostname, responses)

    async def handle_MAIL(
        self, server: ServerSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        await self._wait()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: ServerSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        await self._wait()
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: ServerSMTP, session: Session, envelope: Envelope) -> str:
        await self._wait()
        with self._count_lock:
            self.messages += 1
            self.bytes += len(envelope.original_content or b"")
            self.recipients.update(envelope.rcpt_tos)
        return "250 OK queued"


@dataclass
class Counts:
    """What a sink accepted, read back from its process once it has stopped."""

    messages: int = 0
    bytes: int = 0
    recipients: int = 0  # distinct


def _serve_sink(pipe: Connection, delays: tuple[float, float], tls_folder: str | None) -> None:
    """The sink process: serve until told to stop, then send back the counts."""
    reply_delay, command_delay = delays
    sink = Sink(command_delay)
    context = self_signed(Path(tls_folder)) if tls_folder else None
    with smtp_server(sink, starttls=context, reply_delay=reply_delay) as port:
        pipe.send(port)
        pipe.recv()  # the stop
    pipe.send(Counts(sink.messages, sink.bytes, len(sink.recipients)))


@contextmanager
def sink_process(
    *, reply_delay: float = 0.0, command_delay: float = 0.0, tls_folder: Path | None = None
) -> Iterator[tuple[int, Counts]]:
    """A sink in a process of its own while the block runs; yields its port and the counts,
    filled in when the block ends. It waits `reply_delay` before every reply (B), or
    `command_delay` before some (B′); `tls_folder` offers STARTTLS with a self-signed
    certificate made there."""
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    delays = (reply_delay, command_delay)
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_sink, args=(theirs, delays, str(tls_folder) if tls_folder else None), daemon=True
    )
    process.start()
    counts = Counts()
    try:
        if not ours.poll(30):
            raise SystemExit("bench: the sink process did not start")
        yield ours.recv(), counts
    finally:
        ours.send("stop")
        if ours.poll(30):
            counts.__dict__.update(ours.recv().__dict__)
        process.join(10)


# --- senders ---------------------------------------------------------------------------------


def message(number: int, size: int) -> bytes:
    """A plain-text message of about `size` bytes to r{number}@example.org."""
    mail = EmailMessage()
    mail["From"], mail["To"] = f"IREV <{SENDER}>", f"r{number}@example.org"
    mail["Subject"] = "Votre lettre d'information : les nouvelles de la semaine"
    line = "Les quartiers prioritaires de la politique de la ville, à Roubaix comme à Amiens.\n"
    mail.set_content(line * max(1, (size - 400) // len(line.encode())))
    return mail.as_bytes(policy=SMTP_POLICY)  # CRLF: smtplib sends bytes as they are


async def bare_aiosmtplib(port: int, messages: Sequence[bytes]) -> float:
    """Send every message over CONNECTIONS kept connections; the seconds it took."""
    queue = deque(enumerate(messages))

    async def worker() -> None:
        client = SMTP(hostname="127.0.0.1", port=port, local_hostname="localhost", start_tls=False)
        await client.connect()
        while queue:
            number, data = queue.popleft()
            await client.sendmail(SENDER, [f"r{number}@example.org"], data)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return time.perf_counter() - started


def smtplib_one_per_message(port: int, messages: Sequence[bytes]) -> float:
    """Send each message over a connection of its own, STARTTLS unverified; the seconds it took."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    started = time.perf_counter()
    for number, data in enumerate(messages):
        with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost", timeout=30) as client:
            client.starttls(context=context)
            client.sendmail(SENDER, [f"r{number}@example.org"], data)
    return time.perf_counter() - started


def digest_send(
    workdir: Path, items: Path, port: int, subscribers: int, *, starttls: bool
) -> tuple[int, float]:
    """A fresh project with `subscribers` subscribers, ingested; digests sent and the seconds the
    send took (Digests and send_digests)."""
    workdir.mkdir()
    text = CONFIG.format(
        items=items, sender=SENDER, port=port, starttls="true" if starttls else "false",
        connections=CONNECTIONS, max_items=MAX_ITEMS,
    )  # fmt: skip
    text += "".join(f"  - email: s{n}@example.org\n    frequency: weekly\n" for n in range(subscribers))
    (workdir / "config.yaml").write_text(text, encoding="utf-8")
    config = load_config(workdir / "config.yaml")
    with Store.open(config.database_url) as store:
        report = ingest(store, [config.items_path])
        if report.errors:
            raise SystemExit(f"bench: ingest failed: {report.errors[:3]}")
        now = datetime.now(UTC) + timedelta(hours=1)
        started = time.perf_counter()
        sent = send_digests(DigestRun(store, config, now=now))
        elapsed = time.perf_counter() - started
    print(f"  digest send: {sent.summary()} in {elapsed:.1f} s", flush=True)
    return sent.sent, elapsed


# --- the run ---------------------------------------------------------------------------------


def _check(results: Results, what: str, counts: Counts, sent: int, expected: int) -> None:
    results.expect(f"{what}: sent", sent, expected)
    results.expect(f"{what}: received by the sink", counts.messages, sent)
    results.expect(f"{what}: distinct recipients", counts.recipients, sent)


def run(workdir: Path, count: int) -> Results:
    results = Results()
    items = workdir / "items"
    generate(items, ITEMS, load_corpus(SHIPPED_ITEMS), SEED)

    print("A. sink answering at once, no TLS", flush=True)
    with sink_process() as (port, counts):
        a2_sent, a2_s = digest_send(workdir / "a2", items, port, count, starttls=False)
    _check(results, "A2 digest send", counts, a2_sent, count)
    size = counts.bytes // max(1, counts.messages) or 20_000
    print(f"  digests average {size} bytes", flush=True)

    messages = [message(n, size) for n in range(count)]
    with sink_process() as (port, counts):
        a1_s = asyncio.run(bare_aiosmtplib(port, messages))
    print(f"  bare aiosmtplib: {count} messages in {a1_s:.1f} s", flush=True)
    _check(results, "A1 aiosmtplib", counts, counts.messages, count)

    b1_count = min(count, SMTPLIB_MAX)
    figures: dict[str, tuple[float, float]] = {}
    for name, delays in (("B", {"reply_delay": DELAY}), ("B′", {"command_delay": DELAY})):
        which = "each reply" if name == "B" else "EHLO, MAIL, RCPT and end of DATA"
        print(f"{name}. sink with STARTTLS, {DELAY * 1000:g} ms before {which}", flush=True)
        with sink_process(**delays, tls_folder=workdir) as (port, counts):
            b1_s = smtplib_one_per_message(port, messages[:b1_count])
        print(f"  smtplib: {b1_count} messages in {b1_s:.1f} s", flush=True)
        _check(results, f"{name}1 smtplib", counts, counts.messages, b1_count)
        with sink_process(**delays, tls_folder=workdir) as (port, counts):
            b2_sent, b2_s = digest_send(workdir / f"b2-{len(figures)}", items, port, count, starttls=True)
        _check(results, f"{name}2 digest send", counts, b2_sent, count)
        figures[name] = (b1_count / b1_s, b2_sent / b2_s)

    a1, a2 = count / a1_s, a2_sent / a2_s
    results.rows += [
        Row(f"A1 bare aiosmtplib, {CONNECTIONS} connections, {count} × {size} B", f"{a1:.0f} msg/s"),
        Row(f"A2 digest send end to end, {a2_sent} digests", f"{a2:.0f} digests/s"),
        Row("  A2 / A1", f"{a2 / a1:.0%}", f"≥ {TARGET_A:.0%}", a2 / a1 >= TARGET_A),
    ]
    for name, (b1, b2) in figures.items():
        target = name == "B"
        results.rows += [
            Row(f"{name}1 smtplib, a connection per message, STARTTLS, {b1_count}", f"{b1:.1f} msg/s"),
            Row(f"{name}2 digest send, {CONNECTIONS} connections, STARTTLS, {count}", f"{b2:.0f} msg/s"),
            Row(f"  {name}2 / {name}1", f"{b2 / b1:.1f}×", f"≥ {TARGET_B:g}×" if target else "—",
                b2 / b1 >= TARGET_B if target else None),
        ]  # fmt: skip
    results.rows.append(
        Row("counts received by the sink", "wrong" if results.wrong else "right", "right", not results.wrong)
    )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--messages", type=int, default=DEFAULT_MESSAGES, metavar="N", help="messages per measure"
    )
    args = parser.parse_args(argv)
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    print(f"syndicator SMTP benchmark: N = {args.messages}, Python {sys.version.split()[0]}", flush=True)
    with tempfile.TemporaryDirectory(prefix="syndicator-smtp-bench-") as workdir:
        results = run(Path(workdir), args.messages)
    return results.finish()


if __name__ == "__main__":
    sys.exit(main())
