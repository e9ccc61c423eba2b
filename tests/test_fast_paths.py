"""What is left of the fast paths: ingest parses in its own process, whatever the number of files."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from syndicator.db.store import Store
from syndicator.ingest.reading import ingest

from .databases import database_for
from .support import numbered_items

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def _children() -> set[str]:
    """The processes this one started that are still running (`ps` itself aside)."""
    listed = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(os.getpid())], capture_output=True, text=True, check=True
    ).stdout
    return {line.strip() for line in listed.splitlines() if "--ppid" not in line}


def test_ingesting_many_files_starts_no_helper_process(tmp_path: Path) -> None:
    """A first ingest of 1,200 files (a site's whole export) parses them in this process: no
    forkserver, resource tracker or parse worker is started, so none can outlive a killed
    `syndicator run` or ingest; every item is stored."""
    folder = tmp_path / "items"
    numbered_items(folder, 1200)
    before = _children()
    with Store.open(database_for(tmp_path, "many.db")) as store:
        report = ingest(store, [folder], now=T0)
        assert (report.new, report.errors) == (1200, [])
        assert store.count_items() == 1200
    assert _children() == before
