"""Transports: how a digest's bytes leave. `outbox` writes .eml files (the default, no server).

A transport takes the bytes of one message for one recipient and either accepts them or raises
`DeliveryError`, saying whether trying again later may help (`temporary`) or not.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from .errors import SyndicatorError


class DeliveryError(SyndicatorError):
    """A message was not accepted; `temporary` says whether a later try may succeed."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to deliver."""

    data: bytes
    sender: str
    recipient: str
    message_id: str
    name: str  # a short, file-name-safe label (the digest's number)


class Transport(Protocol):
    def deliver(self, message: Outgoing, now: datetime) -> None: ...


class OutboxTransport:
    """Each message becomes an .eml file in a folder, written atomically, never overwritten."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def deliver(self, message: Outgoing, now: datetime) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = f"{now:%Y%m%dT%H%M%S}-{message.name}"
        handle, temporary = tempfile.mkstemp(prefix=".outgoing.", dir=self.folder)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(message.data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o644)
            for number in range(1, 10_000):
                target = self.folder / (f"{stem}.eml" if number == 1 else f"{stem}-{number}.eml")
                try:
                    os.link(temporary, target)  # fails if the name is taken: never overwrites
                except FileExistsError:
                    continue
                return
            raise DeliveryError(f"{self.folder}: no free file name for {stem}", temporary=True)
        except OSError as exc:
            raise DeliveryError(f"{self.folder}: cannot write: {exc}", temporary=True) from None
        finally:
            Path(temporary).unlink(missing_ok=True)
