"""The `Subscriber` value: who receives digests, how often, about what.

Subscribers come from config.yaml; a subscriber's own choice, made on the web
(syndicator/db/choices.py), wins over config.yaml for their address, and confirmed web sign-ups
come after config.yaml's (`with_choices`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from syndicator.addresses import mailbox
from syndicator.config.frequencies import Frequency
from syndicator.config.model import Config


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A subscriber as the digest code sees it. Empty interests mean everything."""

    email: str
    name: str | None = None
    frequency: Frequency = "weekly"
    thematiques: tuple[str, ...] = ()
    territoires: tuple[str, ...] = ()
    types: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The address as the store files it: case does not make two subscribers."""
        return self.email.strip().lower()


def from_config(config: Config) -> list[Subscriber]:
    """The subscribers listed in config.yaml, in file order."""
    return [
        Subscriber(
            email=s.email.strip(),
            name=s.name,
            frequency=s.frequency,
            thematiques=tuple(s.thematiques),
            territoires=tuple(s.territoires),
            types=tuple(s.types),
        )
        for s in config.subscribers
    ]


def with_choices(
    listed: Sequence[Subscriber], chosen: Mapping[str, Subscriber], signed_up: Mapping[str, Subscriber]
) -> list[Subscriber]:
    """Who receives digests: each of `listed` (config.yaml's) with their own choice from
    `chosen` (by address key) when they made one, then the `signed_up` ones not listed (under
    any form of their address)."""
    found = []
    for subscriber in listed:
        choice = chosen.get(subscriber.key)
        found.append(
            subscriber if choice is None else replace(
                subscriber, frequency=choice.frequency, thematiques=choice.thematiques,
                territoires=choice.territoires, types=choice.types,
            )
        )  # fmt: skip
    # One mailbox, one subscriber: a sign-up stores the domain in IDNA, config.yaml as typed.
    listed_mailboxes = {mailbox(s.email) for s in listed}
    found += [s for _, s in sorted(signed_up.items()) if mailbox(s.email) not in listed_mailboxes]
    return found
