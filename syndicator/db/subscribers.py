"""Who receives digests, resolved in one place: config.yaml's subscribers with the choices they
made on the web, then the confirmed web sign-ups config.yaml does not list, and the suppression
list beside them. The command line, the digests and the web pages all ask this module.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from syndicator.config.model import Config
from syndicator.config.subscribers import Subscriber, from_config, with_choices
from syndicator.db.bounces import BounceRecords, Suppression
from syndicator.db.choices import load_choice, load_choices, signups
from syndicator.db.ledger import Suppressions
from syndicator.db.store import Store

# Whose say a subscriber's settings are: config.yaml's, their own (made on the web), or they
# signed up on the web and config.yaml does not list them.
Source = Literal["config", "preferences", "signup"]


class Roster:
    """Every subscriber as digests see them, read once; where each one's settings come from; and
    the suppression list (read when first asked for)."""

    def __init__(self, config: Config, store: Store) -> None:
        self.store = store
        listed = from_config(config)
        choices = load_choices(store)
        self.subscribers = with_choices(
            listed, {k: c.subscriber for k, c in choices.items()}, signups(choices)
        )
        in_config = {s.key for s in listed}
        self.sources: dict[str, Source] = {
            s.key: "signup" if s.key not in in_config else "preferences" if s.key in choices else "config"
            for s in self.subscribers
        }

    @cached_property
    def suppressed(self) -> Suppressions[Suppression]:
        """The suppression list, each entry whole, looked up by any form of an address."""
        return BounceRecords(self.store).suppressions()


def effective_subscriber(config: Config, store: Store, email: str) -> Subscriber | None:
    """One subscriber as digests see them, or None when the address receives nothing; reads
    that address's choice alone, for a web page."""
    key = email.strip().lower()
    listed = [s for s in from_config(config) if s.key == key]
    choice = load_choice(store, key)
    chosen = {key: choice.subscriber} if choice else {}
    found = with_choices(listed, chosen, signups({key: choice}) if choice else {})
    return found[0] if found else None
