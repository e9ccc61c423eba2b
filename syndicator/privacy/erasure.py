"""`subscribers forget`: erase what is held about one address (RGPD article 17).

The config entry goes (its comments with it, as `subscribers remove` does); the web choices,
the proof of consent and the sign-up requests are deleted; in the ledger (digests, their items,
send claims) and on the suppression list the address is replaced by its keyed hash
(syndicator/db/pseudonyms.py), so that the counts stay right and a suppressed address is still
never mailed, while nothing readable is left. Digests not yet delivered lose their bytes and
are marked failed: they are never sent. A config file that does not load is refused before
anything changes: the address may be in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, String, Table, cast, delete, literal, select, update

from syndicator.addresses import mailbox
from syndicator.config.edit import remove_subscriber
from syndicator.config.model import Config, load_config
from syndicator.db.pseudonyms import Pseudonyms
from syndicator.db.schema import (
    bounce_events,
    digest_items,
    digests,
    send_claims,
    signup_requests,
    subscriber_choices,
    suppressions,
)
from syndicator.db.store import Store
from syndicator.errors import ConfigError, SyndicatorError
from syndicator.i18n import N_, joined

ERASED = "address erased at its owner's request"


@dataclass
class Erased:
    """What `forget` removed or replaced, counted."""

    config_entry: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [N_("config entry removed")] if self.config_entry else []
        parts += [
            N_("{name}: {count}", name=name, count=count) for name, count in self.counts.items() if count
        ]
        return joined(N_("; "), parts) or N_("nothing")


def _forms(connection: Connection, table: Table, address: str, hashes: set[str]) -> list[str]:
    """The values of `table.subscriber` that are this address (any form) or one of its hashes."""
    wanted = mailbox(address)
    values = connection.execute(select(table.c.subscriber).distinct()).scalars()
    return [v for v in values if v in hashes or mailbox(v) == wanted]


def loaded(config_file: Path) -> Config:
    """The config file, or `ConfigError` saying nothing was erased: the address may be in it."""
    try:
        return load_config(config_file, environment=False)
    except ConfigError as exc:
        refused = f"nothing was erased: fix {config_file} first, then run forget again"
        raise ConfigError(exc.problems(), hint=f"{exc.hint}; {refused}" if exc.hint else refused) from None


def held(store: Store, address: str) -> bool:
    """Whether the store holds anything readable about the address."""
    with store.engine.connect() as connection:
        return any(
            _forms(connection, table, address, set())
            for table in (subscriber_choices, signup_requests, digests, suppressions, send_claims)
        )


def forget(config_file: Path, store: Store, address: str) -> Erased:
    """Erase `address` from the config file and the store. `ConfigError` (nothing changed) when
    the config file does not load, or when the address is found nowhere."""
    config = loaded(config_file)
    listed = any(mailbox(s.email) == mailbox(address) for s in config.subscribers)
    if not listed and not held(store, address):
        raise SyndicatorError(
            f"{address.strip()}: unknown address: not in this file, and the store holds nothing readable "
            "about it (erased already?)",
            path=str(config_file),
            hint="check the spelling; 'syndicator subscribers list' shows who is subscribed",
        )
    erased = Erased()
    if listed:
        remove_subscriber(config_file, address)  # refuses, changing nothing, if it cannot
        erased.config_entry = True
    pseudonyms = Pseudonyms.of_store(store)
    hashed = pseudonyms.current(address)
    every = pseudonyms.every(address)
    with store.writing() as connection:
        counts = erased.counts
        forms = _forms(connection, subscriber_choices, address, set())
        counts[N_("web choices")] = connection.execute(
            delete(subscriber_choices).where(subscriber_choices.c.subscriber.in_(forms))
        ).rowcount
        forms = _forms(connection, signup_requests, address, set())
        counts[N_("sign-up requests")] = connection.execute(
            delete(signup_requests).where(signup_requests.c.subscriber.in_(forms))
        ).rowcount
        forms = _forms(connection, digests, address, set())
        connection.execute(
            update(digests)
            .where(digests.c.subscriber.in_(forms), digests.c.state.in_(("pending", "sending")))
            .values(state="failed", message=None, error=ERASED, claimed_by=None)
        )
        # The Message-ID holds an unkeyed hash of the address: a guess could be tested against
        # it. Once erased, a digest is never sent again, so it needs no Message-ID of its own.
        erased_id = literal("<digest.") + cast(digests.c.id, String) + literal(".erased@syndicator.invalid>")
        counts[N_("digests")] = connection.execute(
            update(digests)
            .where(digests.c.subscriber.in_(forms))
            .values(subscriber=hashed, message=None, message_id=erased_id)
        ).rowcount
        # An error may quote the address (`550 <bob@…>: unknown user`): only its kind is kept.
        connection.execute(
            update(digests)
            .where(digests.c.subscriber == hashed, digests.c.error.is_not(None), digests.c.error != ERASED)
            .values(error="(erased)")
        )
        counts[N_("digest items")] = _rehash_items(connection, address, hashed)
        forms = _forms(connection, send_claims, address, set())
        counts[N_("send claims")] = connection.execute(
            update(send_claims).where(send_claims.c.subscriber.in_(forms)).values(subscriber=hashed)
        ).rowcount
        # What the bounce mailbox said quotes the address (diagnostics): it goes. The
        # suppression below, hashed, is what keeps a bounced or complaining address unmailed.
        forms = _forms(connection, bounce_events, address, set())
        counts[N_("bounce reports")] = connection.execute(
            delete(bounce_events).where(bounce_events.c.subscriber.in_(forms))
        ).rowcount
        forms = _forms(connection, suppressions, address, every)
        kept = connection.execute(
            select(suppressions.c.reason, suppressions.c.since)
            .where(suppressions.c.subscriber.in_(forms))
            .order_by(suppressions.c.since)
        ).first()
        if kept is not None:
            connection.execute(delete(suppressions).where(suppressions.c.subscriber.in_(forms)))
            connection.execute(
                suppressions.insert().values(
                    subscriber=hashed, reason=kept.reason, detail=None, since=kept.since
                )
            )
            counts[N_("suppressions")] = 1
    return erased


def _rehash_items(connection: Connection, address: str, hashed: str) -> int:
    """Give the address's `digest_items` rows its hash; an item carried to two forms of the
    address keeps one row (the pair is unique)."""
    forms = _forms(connection, digest_items, address, set())
    if not forms:
        return 0
    seen = set(
        connection.execute(
            select(digest_items.c.item_id).where(digest_items.c.subscriber == hashed)
        ).scalars()
    )
    count = 0
    for form in forms:
        ids = list(
            connection.execute(
                select(digest_items.c.item_id).where(digest_items.c.subscriber == form)
            ).scalars()
        )
        twice = [i for i in ids if i in seen]
        if twice:
            connection.execute(
                delete(digest_items).where(
                    digest_items.c.subscriber == form, digest_items.c.item_id.in_(twice)
                )
            )
        count += connection.execute(
            update(digest_items).where(digest_items.c.subscriber == form).values(subscriber=hashed)
        ).rowcount
        seen.update(ids)
    return count
