"""Sign-ups waiting for their confirmation (double opt-in), in the `signup_requests` table.

A request holds what the form chose, the visitor's IP and the version of the consent text they
were shown. It is confirmed by following the link of the email it sent, within `EXPIRY`; a
newer request for the same address supersedes the pending ones (only the latest link works).
Confirming stores the subscriber in `subscriber_choices` (syndicator/db/choices.py) with the
proof of consent, and lifts any suppression of the address: following a link just mailed to
it is a fresh, explicit consent from the owner of a working mailbox.

Rate limits are counted from the table itself, so that several web workers agree: requests per
mailbox (each one mails it), per IP (an IPv6 visitor is counted by its /64, the block one
machine usually holds) and for the whole site per hour (config.yaml's `web.signups_per_hour`).
A mailbox is the address as its provider delivers it (`mailbox_key`): `claire+1@` and
`claire@` share a quota, and so do `c.laire@gmail.com` and `claire@gmail.com`. A refused request
is not stored and so does not count.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, delete, insert, or_, select, update

from syndicator import addresses
from syndicator.addresses import mailbox
from syndicator.config.subscribers import Subscriber
from syndicator.db.choices import Consent, load_choice, save_choice, subscriber_of
from syndicator.db.ledger import Ledger
from syndicator.db.schema import signup_requests
from syndicator.db.store import Store
from syndicator.db.tokens import Sealer
from syndicator.mail.messages import header_text

EXPIRY = timedelta(hours=48)  # a confirmation link works this long
KEEP_CONFIRMED = timedelta(days=30)  # then a confirmed request goes; the proof stays in subscriber_choices
NAME_LENGTH = 100
Scope = Literal["ip", "address", "site"]
# Providers that deliver `c.laire@` to `claire@`, and their other names.
DOTLESS = frozenset({"gmail.com", "googlemail.com"})
SAME_DOMAIN = {"googlemail.com": "gmail.com"}


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `count` requests within `window`."""

    count: int
    window: timedelta


@dataclass(frozen=True, slots=True)
class Limits:
    address: Limit = Limit(3, timedelta(hours=24))  # confirmation emails to one mailbox
    ip: Limit = Limit(10, timedelta(hours=1))  # a town hall's staff may share one IP
    site: Limit = Limit(100, timedelta(hours=1))  # every request, all addresses and IPs together

    @property
    def longest(self) -> timedelta:
        return max(self.address.window, self.ip.window, self.site.window)


def mailbox_key(email: str) -> str:
    """The mailbox an address delivers to, for counting: lower case, without its sub-address
    tag (`+...`), without dots where the provider ignores them (Gmail); built on
    `addresses.mailbox`, so a domain typed in Unicode or in IDNA is one quota."""
    local, _, domain = mailbox(email.strip()).rpartition("@")
    domain = domain.rstrip(".")
    local = local.split("+", 1)[0] or local
    if domain in DOTLESS:
        local = local.replace(".", "")
    return f"{local}@{SAME_DOMAIN.get(domain, domain)}"


LIMITS = Limits()


class RateLimited(Exception):
    """Too many requests from this IP or for this address; `retry_after` until one more is allowed."""

    def __init__(self, scope: Scope, retry_after: timedelta) -> None:
        super().__init__(f"too many sign-up requests for this {scope}")
        self.scope = scope
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class SignupRequest:
    """One row of `signup_requests`."""

    id: int
    subscriber: Subscriber
    ip: str
    wording: str  # the version of the consent text shown
    created: datetime
    expires: datetime
    confirmed: datetime | None
    notice: str = ""  # the version of the privacy notice shown

    def expired(self, now: datetime) -> bool:
        return self.confirmed is None and self.expires <= now


Outcome = Literal["confirmed", "already", "expired"]


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What following a confirmation link did: `confirmed` now, `already` before, or `expired`
    (too late, superseded by a newer request, or purged)."""

    outcome: Outcome
    email: str
    request: SignupRequest | None = None


# --- what the form sends --------------------------------------------------------------------


def check_address(text: str) -> tuple[str | None, str | None]:
    """The address to store (domain lower-case and in ASCII), or None and the French problem.
    The same check as config.yaml's (syndicator/addresses.py): both take the same addresses."""
    text = text.strip()
    if not text:
        return None, "Indiquez votre adresse électronique."
    try:
        checked = addresses.check(text)
    except addresses.AddressError:
        example = "prenom.nom@exemple.fr"
        return None, f"« {text} » n'est pas une adresse électronique valable (exemple : {example})."
    return checked.wire, None


def clean_name(text: str) -> tuple[str | None, str | None]:
    """The name on one line, as emails show it (`header_text`: no encoded word either), None
    when empty; or the French problem."""
    name = header_text("".join(c if c.isprintable() else " " for c in text))
    if len(name) > NAME_LENGTH:
        return None, f"Le nom est trop long ({NAME_LENGTH} caractères au plus)."
    return name or None, None


def client_ip(host: str | None) -> str:
    """The visitor's IP as stored: IPv4 dotted, IPv6 fully written out (so that its /64 is a
    prefix of the text), an IPv4-mapped IPv6 as IPv4; anything else kept as given."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ip.ipv4_mapped) if ip.ipv4_mapped else ip.exploded
    return str(ip)


def _same_ip(ip: str) -> ColumnElement[bool]:
    """The requests counted with `ip`: the same IPv4, or the same IPv6 /64."""
    if ip.count(":") == 7 and len(ip) == 39:  # exploded IPv6: the /64 is the first 4 groups
        return signup_requests.c.ip.startswith(ip[:20])
    return signup_requests.c.ip == ip


# --- requests -------------------------------------------------------------------------------


def _request(row: Any) -> SignupRequest:
    subscriber = subscriber_of(row)
    return SignupRequest(
        row.id,
        subscriber,
        row.ip,
        row.consent_wording,
        row.created,
        row.expires,
        row.confirmed,
        row.consent_notice or "",
    )


def _purge_clause(now: datetime, limits: Limits) -> ColumnElement[bool]:
    """Requests that serve no more: unconfirmed ones past their expiry and out of every
    rate-limit window, confirmed ones kept `KEEP_CONFIRMED`."""
    stale = now - max(EXPIRY, limits.longest)
    return or_(
        and_(signup_requests.c.confirmed.is_(None), signup_requests.c.created < stale),
        signup_requests.c.confirmed < now - KEEP_CONFIRMED,
    )


def create_request(
    store: Store,
    subscriber: Subscriber,
    *,
    ip: str,
    wording: str,
    now: datetime,
    limits: Limits = LIMITS,
    notice: str = "",
) -> SignupRequest:
    """Record a sign-up to be confirmed by `now + EXPIRY`; pending requests for the same address
    stop working. `RateLimited` when the address or the IP asked too often: nothing changes."""
    key = subscriber.key
    lists = {
        name: json.dumps(list(getattr(subscriber, name)), ensure_ascii=False)
        for name in ("thematiques", "territoires", "types")
    }
    with store.writing() as connection:  # requests made at once take turns, so they count each other
        connection.execute(delete(signup_requests).where(_purge_clause(now, limits)))
        connection.execute(
            update(signup_requests)
            .where(signup_requests.c.subscriber == key, signup_requests.c.confirmed.is_(None),
                   signup_requests.c.expires > now)
            .values(expires=now)
        )  # fmt: skip
        # Written first, then counted with the others: the transaction holds the write lock (on
        # PostgreSQL, the turn) until commit, so two workers never both see room for one last request.
        inserted = connection.execute(
            insert(signup_requests).values(
                subscriber=key, email=subscriber.email, name=subscriber.name,
                frequency=subscriber.frequency, **lists, ip=ip, consent_wording=wording,
                consent_notice=notice or None, created=now, expires=now + EXPIRY,
            )
        ).inserted_primary_key  # fmt: skip
        request_id: int = inserted[0] if inserted else 0
        counted: tuple[tuple[Scope, Limit, ColumnElement[bool] | None], ...] = (
            ("site", limits.site, None),
            ("ip", limits.ip, _same_ip(ip)),
            ("address", limits.address, None),
        )
        mailbox = mailbox_key(key)
        for scope, limit, same in counted:
            rows = connection.execute(
                select(signup_requests.c.created, signup_requests.c.subscriber)
                .where(signup_requests.c.id != request_id, signup_requests.c.created > now - limit.window,
                       *([] if same is None else [same]))
                .order_by(signup_requests.c.created)
            ).all()  # fmt: skip
            # The same mailbox under other spellings is found here, not in SQL: the rows of a
            # day are bounded by the site's hourly cap.
            others = [
                row.created for row in rows if scope != "address" or mailbox_key(row.subscriber) == mailbox
            ]
            if len(others) >= limit.count:
                # Room comes back when enough of the oldest leave the window.
                frees = others[len(others) - limit.count] + limit.window
                raise RateLimited(scope, max(frees - now, timedelta(seconds=1)))  # rolls back
    return SignupRequest(request_id, subscriber, ip, wording, now, now + EXPIRY, None, notice)


def load_request(store: Store, request_id: int) -> SignupRequest | None:
    with store.engine.connect() as connection:
        row = connection.execute(select(signup_requests).where(signup_requests.c.id == request_id)).first()
    return _request(row) if row else None


def forget_request(store: Store, request_id: int) -> None:
    """Drop a request whose confirmation email could not be sent: it was never a sign-up."""
    with store.engine.begin() as connection:
        connection.execute(delete(signup_requests).where(signup_requests.c.id == request_id))


def purge(store: Store, now: datetime, limits: Limits = LIMITS) -> int:
    """Delete the requests that serve no more (also done by every new request); how many."""
    with store.engine.begin() as connection:
        return connection.execute(delete(signup_requests).where(_purge_clause(now, limits))).rowcount


# --- confirmation links ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenData:
    """What a confirmation token names: the request, its address and when it was made."""

    request_id: int
    email: str
    created: int  # seconds since the epoch: tells apart a purged request from one reusing its id


class ConfirmTokens:
    """The tokens of confirmation links, sealed with the app's secrets (syndicator/db/tokens.py):
    the newest seals, any of them opens. Expiry is the request's own, kept in the store."""

    def __init__(self, keys: list[str]) -> None:
        self._sealer = Sealer(keys, "confirm")

    def seal(self, request: SignupRequest) -> str:
        data = {"r": request.id, "e": request.subscriber.key, "c": int(request.created.timestamp())}
        return self._sealer.dumps(data)

    def open(self, token: str) -> TokenData | None:
        """What the token names, or None when it is not one of ours."""
        data = self._sealer.loads(token)
        if not isinstance(data, dict):
            return None
        request_id, email, created = data.get("r"), data.get("e"), data.get("c")
        if isinstance(request_id, int) and isinstance(email, str) and isinstance(created, int):
            return TokenData(request_id, email, created)
        return None


def request_of(store: Store, token: TokenData) -> SignupRequest | None:
    """The request a token was made for, if it is still stored."""
    request = load_request(store, token.request_id)
    if request is None or request.subscriber.key != token.email:
        return None
    return request if int(request.created.timestamp()) == token.created else None


def _gone(store: Store, token: TokenData) -> Confirmation:
    """A token whose request is no longer stored: confirmed long ago, or never."""
    choice = load_choice(store, token.email)
    return Confirmation("already" if choice and choice.consent else "expired", token.email)


def pending(store: Store, token: TokenData, now: datetime) -> Confirmation | SignupRequest:
    """The pending request a token confirms, or why there is none."""
    request = request_of(store, token)
    if request is None:
        return _gone(store, token)
    if request.confirmed is not None:
        return Confirmation("already", token.email, request)
    if request.expired(now):
        return Confirmation("expired", token.email, request)
    return request


def confirm(store: Store, token: TokenData, now: datetime) -> Confirmation:
    """Confirm the token's request: store its subscriber with the proof of consent and lift any
    suppression of the address. Idempotent: a second time only says `already`."""
    found = pending(store, token, now)
    if isinstance(found, Confirmation):
        return found
    with store.engine.begin() as connection:
        claimed = connection.execute(
            update(signup_requests)
            .where(signup_requests.c.id == found.id, signup_requests.c.confirmed.is_(None),
                   signup_requests.c.expires > now)
            .values(confirmed=now)
        ).rowcount  # fmt: skip
    if not claimed:  # another worker confirmed it (or it expired) meanwhile
        found_again = pending(store, token, now)
        return found_again if isinstance(found_again, Confirmation) else Confirmation("expired", token.email)
    consent = Consent(at=now, ip=found.ip, wording=found.wording, notice=found.notice)
    try:
        save_choice(store, found.subscriber, now=now, consent=consent)
        Ledger(store).unsuppress(found.subscriber.key)
    except BaseException:
        with store.engine.begin() as connection:  # not confirmed after all: the link works again
            connection.execute(
                update(signup_requests).where(signup_requests.c.id == found.id).values(confirmed=None)
            )
        raise
    return Confirmation("confirmed", token.email, found)
