"""Reading item files into the store: new items added, changed ones updated, the rest skipped.

A file whose size and modification time are those recorded at its last reading is not read
again. Files are parsed in this process, a chunk at a time. When two files carry the same
source URL, the one with the later `modifié le` wins (then the one whose path sorts last, so the
outcome does not depend on the order files are read in) and a warning names both.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.exc import DBAPIError

from syndicator.db.store import FileVersion, Store, StoredItem, content_hash
from syndicator.errors import ItemError, Problem
from syndicator.i18n import N_
from syndicator.parsing.french_dates import DEFAULT_ZONE
from syndicator.parsing.items import MAX_SIZE, NewsItem, ParsedItem, parse_file

CHUNK = 512  # files decided and saved per transaction: bounds memory, keeps progress moving
_OLDEST = datetime.min.replace(tzinfo=UTC)

Progress = Callable[[int, int], None]  # (files done, files in all)


@dataclass(frozen=True, slots=True)
class ItemFile:
    """A file to ingest: the path as the user sees it, its absolute key and its version."""

    path: str
    key: str
    version: FileVersion


@dataclass(slots=True)
class IngestReport:
    """What one ingest did, for the user and the logs."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        return N_(
            "{new} new, {updated} updated, {unchanged} unchanged, {errors} errors",
            new=self.new, updated=self.updated, unchanged=self.unchanged, errors=len(self.errors),
        )  # fmt: skip


def _walk(directory: str) -> Iterator[ItemFile]:
    entries = sorted(os.scandir(directory), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            yield from _walk(entry.path)
        elif entry.name.endswith(".txt") and entry.is_file():
            info = entry.stat()
            yield ItemFile(
                entry.path, os.path.abspath(entry.path), FileVersion(info.st_size, info.st_mtime_ns)
            )


def scan(paths: Iterable[Path | str], report: IngestReport) -> list[ItemFile]:
    """The item files under `paths` (directories searched for `*.txt`), in a stable order."""
    found: list[ItemFile] = []
    for path in map(str, paths):
        try:
            if os.path.isdir(path):
                found.extend(_walk(path))
            else:
                info = os.stat(path)
                found.append(
                    ItemFile(path, os.path.abspath(path), FileVersion(info.st_size, info.st_mtime_ns))
                )
        except FileNotFoundError:
            missing = N_(
                "no such file or folder: put the item files there, or point items.path in config.yaml at them"
            )
            report.errors.append(Problem(path, None, missing))
        except OSError as exc:
            report.errors.append(Problem(path, None, N_("cannot read: {why}", why=exc.strerror or exc)))
    return found


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed file with the hash of its content."""

    result: ParsedItem
    content_hash: str


def parse_one(path: str, max_size: int = MAX_SIZE, zone: ZoneInfo = DEFAULT_ZONE) -> Parsed | ItemError:
    """Parse a file, its dates in `zone`, returning its error instead of raising it (the other
    files go on)."""
    try:
        parsed = parse_file(path, max_size, zone)
    except ItemError as exc:
        return exc
    return Parsed(parsed, content_hash(parsed.item))


def parse_chunks(
    chunks: Sequence[Sequence[str]], max_size: int = MAX_SIZE, zone: ZoneInfo = DEFAULT_ZONE
) -> Iterator[list[Parsed | ItemError]]:
    """Parse chunks of files in order, their dates in `zone`, one chunk at a time, so that results
    never pile up.

    In this process: bench/ingest.py (a first ingest of 10,000 files, target ≥ 1,000 items/s)
    gave a median of 998 items/s here and 866 through a pool of parse processes on the shared
    2-core machine (six runs each; 1,400 against 1,496 in the quietest pair), the pool costing
    a quarter more CPU an item and leaving a forkserver behind a killed run."""
    for chunk in chunks:
        yield [parse_one(path, max_size, zone) for path in chunk]


def parse_many(
    paths: Sequence[str], max_size: int = MAX_SIZE, zone: ZoneInfo = DEFAULT_ZONE
) -> Iterator[ParsedItem | ItemError]:
    """Parse files in order, their dates in `zone`."""
    for results in parse_chunks([paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)], max_size, zone):
        yield from (r.result if isinstance(r, Parsed) else r for r in results)


def _wins(item: NewsItem, key: str, known: StoredItem) -> bool:
    return (item.modified or _OLDEST, key) > (known.modified or _OLDEST, known.file_key)


def ingest(
    store: Store,
    paths: Iterable[Path | str],
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
    max_size: int = MAX_SIZE,
    zone: ZoneInfo = DEFAULT_ZONE,
) -> IngestReport:
    """Read the item files under `paths` into `store` and say what changed, their dates being
    in `zone` (the site's); a file larger than `max_size` bytes is an error."""
    now = now or datetime.now(UTC)
    report = IngestReport()
    candidates = scan(paths, report)
    store.read_in(zone.key)  # items read in another zone are read again
    versions = store.file_versions()
    to_read = [f for f in candidates if versions.get(f.key) != f.version]
    report.unchanged += len(candidates) - len(to_read)
    done = len(candidates) - len(to_read)
    if progress:
        progress(done, len(candidates))
    chunks = [to_read[start : start + CHUNK] for start in range(0, len(to_read), CHUNK)]
    results = parse_chunks([[f.path for f in c] for c in chunks], max_size, zone)
    for chunk, parsed in zip(chunks, results, strict=True):
        _save_chunk(store, chunk, parsed, now, report)
        done += len(chunk)
        if progress:
            progress(done, len(candidates))
    return report


def _save_chunk(
    store: Store,
    chunk: Sequence[ItemFile],
    parsed: Sequence[Parsed | ItemError],
    now: datetime,
    report: IngestReport,
) -> None:
    known = store.stored(p.result.item.url for p in parsed if isinstance(p, Parsed))
    changed: list[tuple[NewsItem, str, str]] = []
    versions: list[tuple[str, FileVersion, str | None]] = []
    forget: list[str] = []
    counted: dict[str, str] = {}  # file key -> "new", "updated" or "unchanged"
    stored: list[tuple[ItemFile, ParsedItem]] = []
    for file, outcome in zip(chunk, parsed, strict=True):
        if isinstance(outcome, ItemError):
            report.errors.extend(outcome.problems())
            forget.append(file.key)
            continue
        result, hashed = outcome.result, outcome.content_hash
        item = result.item
        report.warnings.extend(result.warnings)
        versions.append((file.key, file.version, item.url))
        stored.append((file, result))
        previous = known.get(item.url)
        if previous is not None and previous.file_key != file.key and os.path.exists(previous.file_key):
            winner, loser = (
                (file.path, previous.file) if _wins(item, file.key, previous) else (previous.file, file.path)
            )
            report.warnings.append(
                Problem(
                    file.path,
                    result.source_line,
                    N_(
                        "same source URL as {file}; {winner} is kept (later 'modifié le'), "
                        "{loser} is ignored",
                        file=previous.file,
                        winner=winner,
                        loser=loser,
                    ),
                    "warning",
                )
            )
            if winner != file.path:
                counted[file.key] = "unchanged"
                continue
        if previous is None:
            counted[file.key] = "new"
        elif previous.content_hash != hashed:
            counted[file.key] = "updated"
        else:
            counted[file.key] = "unchanged"
        if previous is None or previous.content_hash != hashed or previous.file_key != file.key:
            changed.append((item, file.key, hashed))
        known[item.url] = StoredItem(item.url, file.path, file.key, item.modified, hashed)
    refused: dict[str, str] = {}
    try:
        store.save(changed, versions, forget, now)
    except DBAPIError:
        # One row the database refuses must not cost the whole chunk: again, a file at a time.
        refused = store.save_each(changed, versions, forget, now)
    for file, result in stored:
        if file.key in refused:
            report.errors.append(
                Problem(
                    file.path,
                    result.source_line,
                    N_(
                        "the database refused this item ({why}); the other files are stored",
                        why=refused[file.key],
                    ),
                )
            )
        else:
            kind = counted[file.key]
            setattr(report, kind, getattr(report, kind) + 1)
