"""Digests built in a worker process while this one delivers them.

Choosing, rendering and recording digests is Python work, and so is speaking SMTP: in one
process they take turns at the interpreter lock, and the connections wait. `BuildingProcess`
starts a worker (from the forkserver, syndicator/workers.py) that opens the store, makes its own
`Digests` for the same config and moment, and builds batches of subscribers, each digest
recorded in the ledger before it is handed back. Batches are numbered; a shared counter says
which one is next, and the worker takes them in turn. Until the worker is ready (the forkserver
takes about a second to start), the delivering process takes the first ones itself
(`take_first`), so that the first messages leave at once. The worker is at most two batches
ahead, so that messages never pile up in memory. It stops before its next digest when told to,
or when the process that started it is gone: what it recorded is pending in the ledger, and the
next run delivers it.
"""

from __future__ import annotations

import asyncio
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
from .workers import forkserver

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
    next_batch: Any  # multiprocessing Value: the number of the next batch nobody has taken
    ready: Any  # multiprocessing Event: set once the worker can build


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
        """Prepare the worker on `batches` (`start` starts it); once `stop` is set it builds no more."""
        context = forkserver()
        self._stop = stop
        self._results: Any = context.Queue(maxsize=1)  # ("batch", (number, Built)), "end", "error"
        self._halt: ProcessEvent = context.Event()
        self.turns = context.Lock()  # for this process's ledger too (`Ledger.share_turns`)
        self._job = _Job(
            database_url=digests.store.engine.url.render_as_string(hide_password=False),
            config=digests.config,
            now=digests.now,
            batches=batches,
            suppressed=set(suppressed),
            waiting=set(waiting),
            parent=os.getpid(),
            turns=self.turns,
            next_batch=context.Value("i", 0),
            ready=context.Event(),
        )
        self._process = context.Process(
            target=_work, args=(self._job, self._results, self._halt), name="syndicator-digests", daemon=True
        )
        self._full = max(map(len, batches), default=0)  # the size of a full batch
        self._arrived: dict[int, Built] = {}
        self._started = threading.Event()
        self._ended = False

    def start(self) -> None:
        """Start the worker (this waits for the forkserver, up to a second when it is new)."""
        self._process.start()
        self._started.set()

    def take_first(self, number: int) -> bool:
        """Whether this process should build batch `number` itself: nobody has taken it, the
        worker is not ready yet, and it is one of the small first batches (a full one would keep
        this process from sending for a while). If so, it is this process's from now on."""
        if self._job.ready.is_set() or len(self._job.batches[number]) >= self._full:
            return False
        with self._job.next_batch.get_lock():
            if self._job.next_batch.value != number:
                return False
            self._job.next_batch.value = number + 1
            return True

    async def batch(self, number: int) -> Built:
        """Batch `number`, which the worker took, once built and recorded; raises what the
        worker raised."""
        return await asyncio.to_thread(self._receive, number)

    def halt(self) -> None:
        """Build nothing more: the batch under way ends before its next digest."""
        self._halt.set()

    def close(self) -> None:
        """Halt the worker and wait for it (what it built and was not taken stays pending)."""
        self._halt.set()
        if not self._started.is_set():
            return
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

    def _receive(self, number: int) -> Built:
        while number not in self._arrived:
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
                arrived, built = value
                self._arrived[arrived] = built
                continue
            self._ended = True
            if kind == "error":
                raise value
            raise RuntimeError("the process building digests had no more batches")
        return self._arrived.pop(number)


def _work(job: _Job, results: Any, halt: ProcessEvent) -> None:
    """The worker: the batches nobody has taken, each built and recorded and handed over in
    turn, then "end"."""
    from .delivery import Digests, build_batch  # noqa: PLC0415 -- delivery imports this module

    def halted() -> bool:
        return halt.is_set() or not _alive(job.parent)

    try:
        with Store.open(job.database_url) as store:
            digests = Digests(store, job.config, now=job.now)
            digests.ledger.share_turns(job.turns)
            job.ready.set()
            while not halted():
                with job.next_batch.get_lock():
                    number = job.next_batch.value
                    if number >= len(job.batches):
                        break
                    job.next_batch.value = number + 1
                built = build_batch(
                    digests,
                    job.batches[number],
                    suppressed=job.suppressed,
                    waiting=job.waiting,
                    halted=halted,
                )
                results.put(("batch", (number, built)))
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
