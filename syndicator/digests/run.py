"""The context of one digest run: the store's candidate items, the ledger, the subscribers,
and what each digest needs besides its items (its sealed links, its envelope sender, its signed
bytes). Choosing is `syndicator.digests.select`, sending `syndicator.digests.send`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cached_property

from jinja2 import Environment

from syndicator.config.frequencies import Frequency
from syndicator.config.model import Config
from syndicator.config.subscribers import Subscriber
from syndicator.db.ledger import Ledger, NewDigest, Recorded
from syndicator.db.store import Store
from syndicator.db.subscribers import Roster
from syndicator.db.tokens import AddressTokens, secret_keys
from syndicator.digests.render import render_digest
from syndicator.digests.select import Candidate, Digest, DigestLinks, Pool, build_digest, newest_first
from syndicator.mail.dkim import dkim_key, sign
from syndicator.mail.messages import Envelope, RenderedEmail, digest_bytes, message_id
from syndicator.mail.verp import make_token, verp_address
from syndicator.parsing.items import NewsItem
from syndicator.privacy.notice import notice
from syndicator.taxonomy.matching import Interests, MatchIndex, matches
from syndicator.taxonomy.territoires import Hierarchy
from syndicator.templating import environment


class DigestRun:
    """Everything one run needs to build digests: the store's items, the ledger, the links."""

    def __init__(
        self, store: Store, config: Config, *, now: datetime, env: Environment | None = None
    ) -> None:
        self.store, self.config, self.now = store, config, now
        self.ledger = Ledger(store)
        self.env = env or environment(config.templates_path, config.site.zone)
        self.privacy = notice(config)
        self.hierarchy, _ = Hierarchy.load(config.territoires)
        self.keys = keys = secret_keys(store)
        self.unsubscribe = AddressTokens(keys, "unsubscribe")
        self.preferences = AddressTokens(keys, "preferences")
        widest = max(config.email.lookback_days.model_dump().values())
        oldest = now - timedelta(days=widest + 1)
        headers = [s for s in store.item_headers() if (s.published or s.first_seen.date()) >= oldest.date()]
        loaded = store.items_by_id(s.id for s in headers)
        # Newest first once and for all: every digest keeps this order.
        self.candidates = newest_first(
            (Candidate(s.id, loaded[s.id], s.first_seen) for s in headers), config.site.zone
        )
        self.ids = {c.item.url: c.id for c in self.candidates}
        self.index = MatchIndex([c.item for c in self.candidates], self.hierarchy)
        self.lasts = self.ledger.lasts()
        # Only what can still be chosen (a day wider, whatever the zone of the dates): the
        # ledger holds every item ever sent to anyone.
        self.sent = self.ledger.sent_by_subscriber(oldest.date() - timedelta(days=1))
        self.dkim = dkim_key(config)
        # config.yaml's, with their own choices made on the web, and the web sign-ups
        self.roster = Roster(config, store)
        self.everyone = self.roster.subscribers

    def subscribers(self, frequency: Frequency | None = None) -> list[Subscriber]:
        return [s for s in self.everyone if frequency is None or s.frequency == frequency]

    def subscriber(self, email: str) -> Subscriber | None:
        wanted = email.strip().lower()
        return next((s for s in self.subscribers() if s.key == wanted), None)

    def interests(self, subscriber: Subscriber) -> Interests:
        return Interests.of(subscriber.thematiques, subscriber.territoires, subscriber.types, self.hierarchy)

    @cached_property
    def pool(self) -> Pool:
        """The candidates laid out for choosing, once per run."""
        return Pool(self.candidates, self.config.site.zone)

    def next_digest(self, subscriber: Subscriber) -> Digest | None:
        """The digest this subscriber would get now; None when nothing new matches."""
        last = self.lasts.get(subscriber.key)
        chosen = self.pool.choose(
            self.index.matching(self.interests(subscriber)),
            sent=self.sent.get(subscriber.key, set()),
            since=last.issued if last else None,
            now=self.now,
            lookback_days=self.config.email.lookback_days.days(subscriber.frequency),
        )
        return build_digest(
            subscriber, self.pool.items_at(chosen), since=last.issued if last else None,
            issued=self.now, max_items=self.config.email.max_items,
        )  # fmt: skip

    def sample_digest(self, subscriber: Subscriber, *, chunk: int = 500) -> Digest | None:
        """The latest stored items that match the subscriber's interests, sent already or old,
        up to email.max_items, as a digest (newest first); None when no item matches at all.
        For `digest preview` when nothing is new: what their digest looks like."""
        interests, wanted = self.interests(subscriber), self.config.email.max_items
        zone = self.config.site.zone
        headers = sorted(
            self.store.item_headers(),
            key=lambda s: (s.published or s.first_seen.astimezone(zone).date(), s.first_seen, s.url),
            reverse=True,
        )
        chosen: list[NewsItem] = []
        for start in range(0, len(headers), chunk):  # newest first, loaded only as far as needed
            part = headers[start : start + chunk]
            loaded = self.store.items_by_id(s.id for s in part)
            chosen += [loaded[s.id] for s in part if matches(interests, loaded[s.id], self.hierarchy)]
            if len(chosen) >= wanted:
                break
        return build_digest(subscriber, chosen[:wanted], since=None, issued=self.now, max_items=wanted)

    def links(self, subscriber: Subscriber) -> DigestLinks:
        web = self.config.web.base_url.rstrip("/")
        return DigestLinks(
            feeds_index=self.config.site.feeds_url.rstrip("/") + "/index.html",
            unsubscribe=f"{web}/unsubscribe/{self.unsubscribe.seal(subscriber.key)}",
            preferences=f"{web}/preferences/{self.preferences.seal(subscriber.key)}",
        )

    def envelope_sender(self, digest_id: int, subscriber: str) -> str:
        """The MAIL FROM of a digest: with `email.bounces.address`, its VERP address (verp.py)."""
        bounces = self.config.email.bounces
        if bounces is None or bounces.address is None:
            return self.config.email.from_
        return verp_address(bounces.address, make_token(self.keys, digest_id, subscriber))

    def render(self, digest: Digest) -> RenderedEmail:
        return render_digest(self.env, digest, self.links(digest.subscriber), self.config.site, self.privacy)

    def message(
        self, digest: Digest, rendered: RenderedEmail, *, unsubscribe: str | None = None
    ) -> tuple[str, bytes]:
        """A new Message-ID for the digest, and its bytes (`unsubscribe`: its link, when the
        caller has it already). Both are recorded with it, so that every delivery of this
        digest is the very same message."""
        subscriber = digest.subscriber
        mid = message_id(self.config.email.from_)
        envelope = Envelope(
            sender=self.config.email.from_,
            recipient=subscriber.email,
            recipient_name=subscriber.name,
            message_id=mid,
            date=digest.issued.astimezone(self.config.site.zone),  # the Date header in local time
            list_name=self.config.site.title,
            unsubscribe_url=unsubscribe or self.links(subscriber).unsubscribe,
        )
        data = digest_bytes(rendered, envelope)  # the bytes of emails.build_message, made quicker
        # Signed here, so the ledger keeps the signed bytes and a re-send after a crash is the
        # very same message.
        return mid, sign(data, self.dkim) if self.dkim else data

    def built(self, digest: Digest) -> NewDigest:
        """The digest rendered into the message it will be, ready to record."""
        links = self.links(digest.subscriber)  # signed once for both the body and the headers
        rendered = render_digest(self.env, digest, links, self.config.site, self.privacy)
        mid, data = self.message(digest, rendered, unsubscribe=links.unsubscribe)
        return NewDigest(
            subscriber=digest.subscriber.key, frequency=digest.subscriber.frequency, since=digest.since,
            issued=digest.issued, item_ids=[self.ids[item.url] for item in digest.items],
            message_id=mid, message=data,
        )  # fmt: skip

    def record(self, built: Sequence[NewDigest], *, claim: str | None = None) -> Recorded:
        """Write these digests and their items to the ledger as `pending`, in one transaction
        (those whose subscriber `claim`, the token holding them, no longer holds are not)."""
        recorded = self.ledger.record(built, claim=claim)
        for row in recorded.rows:
            # A later digest of this run would build on this one: nothing first seen before its
            # issue, which rules out its items without keeping their ids (10,000 digests of 600
            # items would be 6 million of them). Its bytes are not kept either.
            self.lasts[row.subscriber] = dataclasses.replace(row, message=None)
        return recorded
