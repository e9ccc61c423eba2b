"""Transports: how digests' bytes leave. `outbox` writes .eml files (the default, no server).

A transport is given the messages of a run and two callbacks. It calls `claim(message)` just
before a message goes on the wire (False: skip it; another run has it, say), and
`done(message, result)` once its fate is known: sent, a temporary failure (left for the next
run), a permanent one, or a bad mailbox; it waits for `done` before its next message's content
goes out on that connection. A policy refusal (5.7.x) stops the whole run: `RunStopped`. Reporting each
message as soon as it is accepted is what limits duplicates after a crash to the messages that
were on the wire.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from syndicator.errors import SyndicatorError
from syndicator.files import staged

Outcome = Literal["sent", "temporary", "failed", "bad_mailbox"]


class RunStopped(SyndicatorError):
    """The mail server refuses us as a sender (policy, authentication, TLS): stop, suppress no one."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to deliver."""

    data: bytes
    sender: str
    recipient: str
    message_id: str
    name: str  # a short, file-name-safe label (the digest's number)


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one message."""

    outcome: Outcome
    detail: str = ""


Claim = Callable[[Outgoing], Awaitable[bool]]
Done = Callable[[Outgoing, Result], Awaitable[None]]


class Transport(Protocol):
    async def send(self, messages: Sequence[Outgoing], *, claim: Claim, done: Done) -> None: ...


def write_eml(folder: Path, message: Outgoing, now: datetime) -> Path:
    """Write a message as an .eml file, atomically, under a name no other message has; readable by
    its owner only, in a folder made so: a digest holds its reader's unsubscribe and preferences links."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stem = f"{now:%Y%m%dT%H%M%S}-{message.name}"
    with staged(folder, message.data, prefix=".outgoing.", mode=0o600) as temporary:
        for number in range(1, 10_000):
            target = folder / (f"{stem}.eml" if number == 1 else f"{stem}-{number}.eml")
            try:
                os.link(temporary, target)  # fails if the name is taken: never overwrites
            except FileExistsError:
                continue
            return target
    raise OSError(f"no free file name for {stem}")


class OutboxTransport:
    """Each message becomes an .eml file in a folder, written atomically, never overwritten."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, messages: Sequence[Outgoing], *, claim: Claim, done: Done) -> None:
        for message in messages:
            if not await claim(message):
                continue
            try:
                await asyncio.to_thread(write_eml, self.folder, message, datetime.now(UTC))
            except OSError as exc:
                await done(message, Result("temporary", f"{self.folder}: cannot write: {exc}"))
            else:
                await done(message, Result("sent"))
