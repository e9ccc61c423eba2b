"""The bounce mailbox: where delivery reports and complaints arrive, and a Maildir that is one.

`BounceMailbox` is what the bounce reader needs of any source (this Maildir, an IMAP folder):
the inbox oldest first, and a move to the `processed` or `unrecognised` folder. Nothing is ever
deleted. A message larger than `max_bytes` is not read (its `raw` is None): it is reported and
moved aside for a person, unread.

The Maildir follows the Maildir++ layout that Postfix, Dovecot and fetchmail use: the inbox is
`new/` and `cur/` at the top, a folder is a `.name` directory beside them. Moving a message is
one `rename`, within the one file system, so a crash never leaves it in two places or none.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, Self

from syndicator.config.model import DEFAULT_MAX_BYTES
from syndicator.errors import SyndicatorError

Folder = Literal["processed", "unrecognised"]


@dataclass(frozen=True)
class MailboxMessage:
    """One message of the inbox."""

    key: str  # opaque, stable while the message sits in the inbox
    raw: bytes | None  # None when the message is larger than max_bytes (then `size` says how big)
    size: int


class MailboxUnavailable(SyndicatorError, OSError):
    """The bounce mailbox cannot be reached or opened; the message says which and why."""


class BounceMailbox(Protocol):
    def __enter__(self) -> Self: ...
    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None: ...
    def messages(self) -> Iterator[MailboxMessage]: ...  # the inbox, oldest first
    def move(self, key: str, folder: Folder) -> None: ...  # creates the folder if missing; never deletes


class MaildirMailbox:
    """A Maildir's inbox (`new/` and `cur/`), its messages moved to `.processed`/`.unrecognised`."""

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path, self.max_bytes = path, max_bytes

    def __enter__(self) -> Self:
        missing = [name for name in ("new", "cur") if not (self.path / name).is_dir()]
        if missing:
            raise MailboxUnavailable(
                f"not a Maildir: no {' and no '.join(f'{m}/' for m in missing)} folder in it",
                path=str(self.path),
                hint="point email.bounces.maildir at the Maildir your mail server delivers the "
                "bounce address to (it holds new/, cur/ and tmp/)",
            )
        if not os.access(self.path / "new", os.R_OK | os.W_OK | os.X_OK):
            raise MailboxUnavailable(
                "cannot read and move the messages of this Maildir (permissions)",
                path=str(self.path),
                hint="run syndicator as a user who may read and write the Maildir",
            )
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _entries(self) -> list[tuple[float, str, Path]]:
        found: list[tuple[float, str, Path]] = []
        for sub in ("new", "cur"):
            with os.scandir(self.path / sub) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                        continue
                    found.append((entry.stat().st_mtime, f"{sub}/{entry.name}", Path(entry.path)))
        return sorted(found)  # oldest first: delivery time, then name (which starts with it)

    def messages(self) -> Iterator[MailboxMessage]:
        for _, key, path in self._entries():
            try:
                size = path.stat().st_size
                raw = None if size > self.max_bytes else path.read_bytes()
            except FileNotFoundError:
                continue  # moved meanwhile by another reader
            yield MailboxMessage(key=key, raw=raw, size=size)

    def move(self, key: str, folder: Folder) -> None:
        sub, _, name = key.partition("/")
        if sub not in ("new", "cur") or not name or "/" in name or name.startswith("."):
            raise ValueError(f"not a key of this mailbox: {key!r}")
        target = self.path / f".{folder}"
        for part in ("tmp", "new", "cur"):
            (target / part).mkdir(mode=0o700, parents=True, exist_ok=True)
        # Into cur/, marked seen (`:2,S`), as a mail reader would file a message it has read.
        base = name.split(":2,", 1)[0]
        os.rename(self.path / sub / name, target / "cur" / f"{base}:2,S")
