"""The `Subscriber` value: who receives digests, how often, about what."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config, Frequency


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
