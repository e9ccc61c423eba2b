"""Subscribers' own choices, made on the web, in the `subscriber_choices` table.

One row per address: frequency and interests, and for a web sign-up the proof of consent. A
row wins over config.yaml for its address; a row for an address config.yaml does not list is
a subscriber only once its sign-up was confirmed (it has a consent). So an admin who removes
someone from config.yaml removes them, whatever they once chose. What may be chosen, and the
forms that choose it, are in syndicator/web/choices.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from syndicator.config.frequencies import as_frequency
from syndicator.config.subscribers import Subscriber
from syndicator.db.schema import subscriber_choices
from syndicator.db.store import Store, upsert

# The suppression-list reason of an address whose owner unsubscribed (syndicator/db/ledger.py):
# unlike a bounce, only its owner may lift it, from their preferences page.
UNSUBSCRIBED = "unsubscribed"


@dataclass(frozen=True, slots=True)
class Consent:
    """The proof of a web sign-up: when the confirmation link was followed, from where the form
    came, and the version of the consent text agreed to."""

    at: datetime
    ip: str
    wording: str
    notice: str = ""  # the version of the privacy notice shown beside it (`privacy.notice_version`)


@dataclass(frozen=True, slots=True)
class StoredChoice:
    """One row of `subscriber_choices`."""

    subscriber: Subscriber
    updated: datetime
    consent: Consent | None


def _stored(row: Any) -> StoredChoice:
    consent = None
    if row.consent_at is not None:
        consent = Consent(
            row.consent_at, row.consent_ip or "", row.consent_wording or "", row.consent_notice or ""
        )
    return StoredChoice(subscriber_of(row), row.updated, consent)


def subscriber_of(row: Any) -> Subscriber:
    """The subscriber a row of choices or of sign-up requests describes (lists kept as JSON)."""
    return Subscriber(
        email=row.email,
        name=row.name,
        frequency=as_frequency(row.frequency),
        thematiques=tuple(json.loads(row.thematiques)),
        territoires=tuple(json.loads(row.territoires)),
        types=tuple(json.loads(row.types)),
    )


def load_choices(store: Store) -> dict[str, StoredChoice]:
    """Every stored choice, by lower-case address."""
    with store.engine.connect() as connection:
        rows = connection.execute(select(subscriber_choices))
        return {row.subscriber: _stored(row) for row in rows}


def load_choice(store: Store, email: str) -> StoredChoice | None:
    """The stored choice of one address, if any."""
    with store.engine.connect() as connection:
        row = connection.execute(
            select(subscriber_choices).where(subscriber_choices.c.subscriber == email.strip().lower())
        ).first()
    return _stored(row) if row else None


def save_choice(
    store: Store, subscriber: Subscriber, *, now: datetime, consent: Consent | None = None
) -> None:
    """Store a subscriber's choice, replacing the previous one; `consent=None` keeps the
    consent already stored (changing one's preferences does not undo a sign-up)."""
    values: dict[str, Any] = {
        "email": subscriber.email.strip(),
        "name": subscriber.name,
        "frequency": subscriber.frequency,
        "thematiques": json.dumps(list(subscriber.thematiques), ensure_ascii=False),
        "territoires": json.dumps(list(subscriber.territoires), ensure_ascii=False),
        "types": json.dumps(list(subscriber.types), ensure_ascii=False),
        "updated": now,
    }
    if consent is not None:
        values |= {"consent_at": consent.at, "consent_ip": consent.ip, "consent_wording": consent.wording,
                   "consent_notice": consent.notice or None}  # fmt: skip
    with store.engine.begin() as connection:
        # One statement: two requests for the same address at once (two web workers) both land.
        statement = upsert(connection, subscriber_choices).values(subscriber=subscriber.key, **values)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[subscriber_choices.c.subscriber],
                set_={name: statement.excluded[name] for name in values},
            )
        )


def signups(choices: Mapping[str, StoredChoice]) -> dict[str, Subscriber]:
    """The stored choices that are confirmed sign-ups (they stand without config.yaml)."""
    return {key: c.subscriber for key, c in choices.items() if c.consent is not None}
