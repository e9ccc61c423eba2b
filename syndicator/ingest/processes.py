"""The forkserver that ingest's parser processes are started from.

forkserver, not fork: the daemon has threads, and forking a threaded process can deadlock.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import sys
from multiprocessing.context import ForkServerContext


def forkserver() -> ForkServerContext:
    """The forkserver context, its server started (without waiting for it to be ready).

    Workers start with this package's modules that this process has imported: each worker runs
    the main module again (the console script imports syndicator.cli.main and with it nearly
    everything), which then costs nothing instead of half a second of CPU a worker. Never
    `__main__`, which would run the command line in the forkserver. The server takes about half
    a second to import them: callers do some of the work themselves meanwhile."""
    context = multiprocessing.get_context("forkserver")
    preload = [name for name in sys.modules if name.startswith("syndicator.") and "__main__" not in name]
    context.set_forkserver_preload(sorted(preload))
    multiprocessing.forkserver.ensure_running()
    return context
