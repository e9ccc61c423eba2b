"""Digests built in a worker process while this one delivers them.

Choosing, rendering and recording digests is Python work, and so is speaking SMTP: in one
process they take turns at the interpreter lock, and the connections wait. `BuildingProcess`
starts a worker (forkserver, like ingest's workers: the daemon has threads) that opens the
store, makes its own `Digests` for the same config and moment, and builds the batches of
subscribers it is given, in order, each digest recorded in the ledger before it is handed back.
It is at most two batches ahead, so that messages never pile up in memory. It stops before its
next digest when told to, or when the process that started it is gone: what it recorded is
pending in the ledger, and the next run delivers it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import queue
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.synchronize import Event as ProcessEvent
from typing import TYPE_CHECKING, Any

from .config import Config
from .store import Store
from .subscribers import Subscriber

if TYPE_CHECKING:
    from .delivery import Built, Digests

POLL = 0.5  # seconds between looks at whether the worker is still alive


@dataclass(frozen=True, slots=True)
class _Job:
    """What the worker needs to build the same digests as this process would."""

    database_url: str
    config: Config
    now: datetime
    batches: Sequence[Sequence[Subscriber]]
    suppressed: Collection[str]
    waiting: Collection[str]
    parent: int  # this process, whose end ends the worker
    turns: Any  # a lock both ledgers take to write: no waiting on SQLite's sleeping lock


class BuildingProcess:
    """The worker building a run's batches, and the batches as it hands them over."""

    def __init__(
        self,
        digests: Digests,
        batches: Sequence[Sequence[Subscriber]],
        *,
        suppressed: Collection[str],
        waiting: Collection[str],
        stop: threading.Event | None = None,
    ) -> None:
        """Start the worker on `batches`; once `stop` is set it builds no more."""
        context = multiprocessing.get_context("forkserver")
        self._stop = stop
        self._results: multiprocessing.Queue[tuple[str, Any]] = context.Queue(maxsize=1)
        self._halt: ProcessEvent = context.Event()
        self.turns = context.Lock()  # for this process's ledger too (`Ledger.share_turns`)
        job = _Job(
            database_url=digests.store.engine.url.render_as_string(hide_password=False),
            config=digests.config,
            now=digests.now,
            batches=batches,
            suppressed=set(suppressed),
            waiting=set(waiting),
            parent=os.getpid(),
            turns=self.turns,
        )
        self._process = context.Process(
            target=_work, args=(job, self._results, self._halt), name="syndicator-digests", daemon=True
        )
        self._process.start()
        self._ended = False

    async def batch(self) -> Built:
        """The next batch, once built and recorded; raises what the worker raised."""
        return await asyncio.to_thread(self._receive)

    def halt(self) -> None:
        """Build nothing more: the batch under way ends before its next digest."""
        self._halt.set()

    def close(self) -> None:
        """Halt the worker and wait for it (what it built and was not taken stays pending)."""
        self._halt.set()
        while not self._ended and self._process.is_alive():
            try:  # take what it hands over, or it would wait forever to hand it
                kind, _ = self._results.get(timeout=POLL)
            except queue.Empty:
                continue
            self._ended = kind != "batch"
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()

    def _receive(self) -> Built:
        while True:
            try:
                kind, value = self._results.get(timeout=POLL)
            except queue.Empty:
                if self._stop is not None and self._stop.is_set():
                    self._halt.set()
                if not self._process.is_alive():
                    self._ended = True
                    code = self._process.exitcode
                    raise RuntimeError(f"the process building digests ended (exit code {code})") from None
                continue
            if kind == "batch":
                built: Built = value
                return built
            self._ended = True
            if kind == "error":
                raise value
            raise RuntimeError("the process building digests had no more batches")


def _work(job: _Job, results: multiprocessing.Queue[tuple[str, Any]], halt: ProcessEvent) -> None:
    """The worker: each batch built and recorded, handed over in order, then "end"."""
    from .delivery import Digests, build_batch  # noqa: PLC0415 -- delivery imports this module

    def halted() -> bool:
        return halt.is_set() or not _alive(job.parent)

    try:
        with Store.open(job.database_url) as store:
            digests = Digests(store, job.config, now=job.now)
            digests.ledger.share_turns(job.turns)
            for batch in job.batches:
                if halted():
                    break
                built = build_batch(
                    digests, batch, suppressed=job.suppressed, waiting=job.waiting, halted=halted
                )
                results.put(("batch", built))
        results.put(("end", None))
    except BaseException as error:  # handed over whole, to be raised where the run is
        results.put(("error", _portable(error)))


def _alive(pid: int) -> bool:
    """Whether the process that started the worker is still there (the worker's own parent is
    the forkserver, which outlives it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _portable(error: BaseException) -> BaseException:
    """`error` if it survives a trip to another process, else a RuntimeError saying it."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # whatever stops it from being pickled, it is described instead
        return RuntimeError(f"building digests failed: {type(error).__name__}: {error}")
    return error
