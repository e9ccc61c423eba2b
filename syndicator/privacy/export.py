"""`subscribers export`: everything held about one address, as JSON (RGPD article 15).

The export is a list of sections, each read by one function of `SECTIONS` from the config and
the store; a new kind of record adds its function there. Addresses are
matched by mailbox (syndicator/addresses.py): `Bob@Mairie-Évry.fr` finds what was stored as
`bob@xn--mairie-vry-h7a.fr`, and so are the records of an erased address, kept under its keyed
hash (syndicator/db/pseudonyms.py). Pure reading: nothing is changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from syndicator.addresses import mailbox
from syndicator.config.model import Config
from syndicator.db.ledger import Ledger
from syndicator.db.pseudonyms import Pseudonyms, is_pseudonym
from syndicator.db.schema import (
    bounce_events,
    digest_items,
    digests,
    items,
    signup_requests,
    subscriber_choices,
    suppressions,
)
from syndicator.db.store import Store
from syndicator.privacy.consent import archived

Section = Callable[[Config, Store, str], Any]


def _when(config: Config, moment: datetime | None) -> str | None:
    """A stored instant as the export gives it: ISO 8601 in the site's zone."""
    return None if moment is None else moment.astimezone(config.site.zone).isoformat()


def _forms(store: Store, column: Any, address: str) -> list[str]:
    """The forms of `address` stored in `column` (lower-case, Unicode or IDNA domain), and its
    keyed hashes: an erased address's ledger is still its owner's to see."""
    wanted = mailbox(address)
    with store.engine.connect() as connection:
        found = [value for value in connection.execute(select(column).distinct()).scalars() if value]
    hashes = Pseudonyms.of_store(store).every(address) if any(map(is_pseudonym, found)) else set()
    return [value for value in found if value in hashes or mailbox(value) == wanted]


def config_entry(config: Config, store: Store, address: str) -> Any:
    """The subscriber's entry in config.yaml, with its line."""
    for index, entry in enumerate(config.subscribers):
        if mailbox(entry.email) == mailbox(address):
            return {
                "file": config.source,
                "line": config.line_of(["subscribers", index]),
                **entry.model_dump(mode="json"),
            }
    return None


def _choices(row: Any) -> dict[str, Any]:
    """What a web choice and a sign-up request both hold: who, how often, about what."""
    return {
        "email": row.email,
        "name": row.name,
        "frequency": row.frequency,
        "thematiques": json.loads(row.thematiques),
        "territoires": json.loads(row.territoires),
        "types": json.loads(row.types),
    }


def web_choices(config: Config, store: Store, address: str) -> Any:
    """The choices made on the web, and the proof of consent of a web sign-up."""
    forms = _forms(store, subscriber_choices.c.subscriber, address)
    with store.engine.connect() as connection:
        rows = connection.execute(
            select(subscriber_choices).where(subscriber_choices.c.subscriber.in_(forms))
        )
        return [
            {
                **_choices(row),
                "updated": _when(config, row.updated),
                "consent": None if row.consent_at is None else {
                    "at": _when(config, row.consent_at),
                    "ip": row.consent_ip,
                    "wording_version": row.consent_wording,
                    "wording": archived(store, row.consent_wording) if row.consent_wording else None,
                    "notice_version": row.consent_notice,
                },
            }
            for row in rows
        ]  # fmt: skip


def signups(config: Config, store: Store, address: str) -> Any:
    """The sign-up requests kept (confirmed or not)."""
    forms = _forms(store, signup_requests.c.subscriber, address)
    with store.engine.connect() as connection:
        rows = connection.execute(
            select(signup_requests)
            .where(signup_requests.c.subscriber.in_(forms))
            .order_by(signup_requests.c.id)
        )
        return [
            {
                **_choices(row),
                "ip": row.ip,
                "wording_version": row.consent_wording,
                "notice_version": row.consent_notice,
                "created": _when(config, row.created),
                "expires": _when(config, row.expires),
                "confirmed": _when(config, row.confirmed),
            }
            for row in rows
        ]


def suppression(config: Config, store: Store, address: str) -> Any:
    """The address's entry on the list of addresses never mailed, if any (readable or hashed)."""
    found = Ledger(store).suppressed()
    if address not in found:
        return None
    reason, since = found[address]
    forms = _forms(store, suppressions.c.subscriber, address)
    with store.engine.connect() as connection:
        detail = connection.execute(
            select(suppressions.c.detail).where(suppressions.c.subscriber.in_(forms))
        ).scalar()
    return {"reason": reason, "since": _when(config, since), "detail": detail}


def digests_sent(config: Config, store: Store, address: str) -> Any:
    """Each digest recorded for the address: when, its state, and its items."""
    forms = _forms(store, digests.c.subscriber, address)
    with store.engine.connect() as connection:
        rows = connection.execute(
            select(digests.c.id, digests.c.frequency, digests.c.issued, digests.c.state, digests.c.sent_at)
            .where(digests.c.subscriber.in_(forms))
            .order_by(digests.c.id)
        ).all()
        carried: dict[int, list[dict[str, str]]] = {}
        for digest_id, url, title in connection.execute(
            select(digest_items.c.digest_id, items.c.url, items.c.title)
            .join(items, items.c.id == digest_items.c.item_id)
            .where(digest_items.c.digest_id.in_([row.id for row in rows]))
            .order_by(digest_items.c.digest_id, items.c.id)
        ):
            carried.setdefault(digest_id, []).append({"url": url, "title": title})
    return [
        {
            "issued": _when(config, row.issued),
            "frequency": row.frequency,
            "state": row.state,
            "sent_at": _when(config, row.sent_at),
            "items": carried.get(row.id, []),
        }
        for row in rows
    ]


def bounce_reports(config: Config, store: Store, address: str) -> Any:
    """What the bounce mailbox said about the address: each failure, complaint and reactivation."""
    forms = _forms(store, bounce_events.c.subscriber, address)
    with store.engine.connect() as connection:
        rows = connection.execute(
            select(bounce_events).where(bounce_events.c.subscriber.in_(forms)).order_by(bounce_events.c.id)
        ).all()
    return [
        {
            "received": _when(config, row.received),
            "kind": row.kind,
            "status": row.status,
            "diagnostic": row.diagnostic,
        }
        for row in rows
    ]


# In the order of the export.
SECTIONS: Sequence[tuple[str, Section]] = (
    ("config_entry", config_entry),
    ("web_choices", web_choices),
    ("signup_requests", signups),
    ("suppression", suppression),
    ("bounce_reports", bounce_reports),
    ("digests", digests_sent),
)


def export(config: Config, store: Store, address: str, *, now: datetime) -> dict[str, Any] | None:
    """Everything held about `address`, or None when nothing is."""
    found = {name: read(config, store, address) for name, read in SECTIONS}
    if not any(found.values()):
        return None
    exported = now.astimezone(config.site.zone)  # as the stored dates are given
    return {"address": address.strip(), "exported": exported.isoformat(timespec="seconds"), **found}
