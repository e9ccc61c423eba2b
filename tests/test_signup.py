"""The sign-up (double opt-in): requests, expiry, rate limits, confirmation tokens and consent on a
real SQLite store; the confirmation email; and the pages through Starlette's TestClient on the
real app, mailing through the outbox folder or a real SMTP server on a loopback port."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import lxml.html
import pytest
from itsdangerous import URLSafeSerializer
from sqlalchemy import update

from syndicator.config.model import Config, parse_config
from syndicator.config.subscribers import Subscriber
from syndicator.db.choices import load_choice
from syndicator.db.ledger import Ledger
from syndicator.db.schema import signup_requests
from syndicator.db.signups import (
    EXPIRY,
    LIMITS,
    ConfirmTokens,
    Limit,
    Limits,
    RateLimited,
    SignupRequest,
    TokenData,
    check_address,
    clean_name,
    client_ip,
    confirm,
    create_request,
    pending,
    purge,
    request_of,
)
from syndicator.db.store import Store
from syndicator.db.subscribers import effective_subscriber
from syndicator.mail.transports import OutboxTransport
from syndicator.privacy.consent import archived, consent_wording
from syndicator.templating import environment
from syndicator.web.signup_email import confirmation_email, outgoing, send

from .conftest import Run
from .databases import database_for, on_postgresql
from .smtp_server import Handler, smtp_server
from .support import ROOT
from .web_support import SECRET, WebSite, built_project, served, text_of

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
KEYS = ["secret-pour-les-tests"]
ANNE = Subscriber("anne.martin@exemple.fr", "Anne Martin", "daily", ("Éducation",), ("Roubaix",))
MARIE = "marie.dupont@example.org"  # config.yaml: weekly, Éducation, Nord
WORDING = "2026-11-26+0123abcd"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(database_for(tmp_path, "store.db")) as opened:
        yield opened


def request(store: Store, subscriber: Subscriber = ANNE, *, ip: str = "192.0.2.1", now: datetime = T0,
            limits: Limits = LIMITS) -> SignupRequest:  # fmt: skip
    return create_request(store, subscriber, ip=ip, wording=WORDING, now=now, limits=limits)


def token_of(signup: SignupRequest) -> TokenData:
    """What the request's confirmation link names, read back as the web app reads it."""
    data = ConfirmTokens(KEYS).open(ConfirmTokens(KEYS).seal(signup))
    assert data is not None
    return data


def confirm_now(store: Store, signup: SignupRequest, now: datetime) -> str:
    return confirm(store, token_of(signup), now).outcome


# --- requests, expiry and confirmation -------------------------------------------------------


def test_confirming_stores_the_subscriber_with_the_proof_of_consent(store: Store, tmp_path: Path) -> None:
    """Following the link stores the sign-up's choices with when, from which IP and under which
    wording; from then on the address receives digests, config.yaml or not."""
    config = parse_config("site: {title: IREV}\n", tmp_path / "config.yaml")
    signup = request(store, ip="203.0.113.7")
    assert effective_subscriber(config, store, ANNE.email) is None  # pending: not a subscriber
    assert confirm_now(store, signup, T0 + timedelta(hours=1)) == "confirmed"
    choice = load_choice(store, ANNE.email)
    assert choice is not None and choice.consent is not None
    assert choice.consent.at == T0 + timedelta(hours=1)
    assert (choice.consent.ip, choice.consent.wording) == ("203.0.113.7", WORDING)
    assert effective_subscriber(config, store, ANNE.email) == ANNE


def test_a_request_expires_after_48_hours(store: Store) -> None:
    """Within 48 hours the link confirms; after, it says expired and nothing is stored."""
    assert timedelta(hours=48) == EXPIRY
    signup = request(store)
    late = T0 + EXPIRY
    assert pending(store, token_of(signup), late - timedelta(seconds=1)) == signup
    assert confirm_now(store, signup, late) == "expired"
    assert load_choice(store, ANNE.email) is None


def test_confirming_twice_changes_nothing(store: Store) -> None:
    """The second confirmation (a double click, a second worker) says `already` and keeps the first
    proof of consent."""
    signup = request(store)
    assert confirm_now(store, signup, T0 + timedelta(minutes=5)) == "confirmed"
    assert confirm_now(store, signup, T0 + timedelta(minutes=9)) == "already"
    choice = load_choice(store, ANNE.email)
    assert choice is not None and choice.consent is not None
    assert choice.consent.at == T0 + timedelta(minutes=5)


def test_a_confirmed_request_purged_later_still_says_already(store: Store) -> None:
    """After 30 days the confirmed request is purged (the proof stays with the subscriber); its
    link then says the sign-up is confirmed, not that it expired."""
    signup = request(store)
    confirm_now(store, signup, T0 + timedelta(minutes=5))
    assert purge(store, T0 + timedelta(days=31)) == 1
    assert confirm_now(store, signup, T0 + timedelta(days=31)) == "already"


def test_a_newer_request_for_the_address_supersedes_the_pending_one(store: Store) -> None:
    """Only the latest link works: the older one says expired, the newer one's choices are stored."""
    first = request(store)
    second = request(store, Subscriber(ANNE.email, None, "monthly"), now=T0 + timedelta(minutes=10))
    assert confirm_now(store, first, T0 + timedelta(minutes=11)) == "expired"
    assert confirm_now(store, second, T0 + timedelta(minutes=12)) == "confirmed"
    choice = load_choice(store, ANNE.email)
    assert choice is not None and choice.subscriber.frequency == "monthly"


def test_a_link_to_a_purged_request_never_confirms_a_later_one(store: Store) -> None:
    """SQLite may give a purged request's id to a new one: the old link names its address and
    time as well, so it says expired and leaves the new request alone (on PostgreSQL, whose
    sequences never give an id twice, the outcome is the same)."""
    old = request(store)
    assert purge(store, T0 + timedelta(days=3)) == 1
    new = request(store, Subscriber("paul@exemple.fr"), now=T0 + timedelta(days=3))
    assert (new.id == old.id) is not on_postgresql()
    assert confirm_now(store, old, T0 + timedelta(days=3)) == "expired"
    assert request_of(store, token_of(new)) == new
    assert load_choice(store, "paul@exemple.fr") is None


def test_confirming_lifts_a_suppression(store: Store) -> None:
    """An address that unsubscribed (or bounced) and confirms a new sign-up receives digests
    again: the link mailed to it is the owner's fresh consent, and proves the mailbox works."""
    ledger = Ledger(store)
    ledger.suppress(ANNE.email, "unsubscribed", T0 - timedelta(days=30))
    signup = request(store)
    assert ANNE.email in ledger.suppressed()  # asking is not enough
    confirm_now(store, signup, T0 + timedelta(minutes=1))
    assert ledger.suppressed() == {}


def test_a_confirmation_token_hides_the_address_and_first_release_tokens_still_work(store: Store) -> None:
    """The address cannot be read from a confirmation link, even base64-decoded; a token of the
    first releases (itsdangerous, signed but readable) still names its request."""
    signup = request(store)
    token = ConfirmTokens(KEYS).seal(signup)
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert signup.subscriber.key.encode() not in decoded and "example" not in token
    data = {"r": signup.id, "e": signup.subscriber.key, "c": int(signup.created.timestamp())}
    legacy = URLSafeSerializer(KEYS, salt="syndicator.confirm").dumps(data)
    assert ConfirmTokens(KEYS).open(legacy) == ConfirmTokens(KEYS).open(token) is not None


def test_a_tampered_or_foreign_token_reads_as_nothing(store: Store) -> None:
    """A token changed by one character, signed with another secret, or made for another purpose
    names no request; after a key rotation the old links still work."""
    tokens = ConfirmTokens(KEYS)
    token = tokens.seal(request(store))
    assert tokens.open(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert tokens.open(ConfirmTokens(["un-autre-secret"]).seal(request(store))) is None
    assert tokens.open("") is None and tokens.open("n'importe.quoi") is None
    from syndicator.db.tokens import AddressTokens

    assert tokens.open(AddressTokens(KEYS, "unsubscribe").seal(ANNE.email)) is None
    assert ConfirmTokens(["nouveau-secret", *KEYS]).open(token) is not None


# --- rate limits -----------------------------------------------------------------------------


def test_an_address_gets_three_requests_a_day(store: Store) -> None:
    """The fourth request for one address within 24 hours is refused, whatever the IP, with the
    time until the oldest leaves the window; the next day it is accepted."""
    for hour in range(3):
        request(store, ip=f"192.0.2.{hour}", now=T0 + timedelta(hours=hour))
    with pytest.raises(RateLimited) as refused:
        request(store, ip="198.51.100.9", now=T0 + timedelta(hours=5))
    assert refused.value.scope == "address"
    assert refused.value.retry_after == timedelta(hours=19)
    request(store, ip="198.51.100.9", now=T0 + timedelta(hours=24, seconds=1))


def test_an_ip_gets_ten_requests_an_hour(store: Store) -> None:
    """The eleventh request from one IP within the hour is refused; another IP is not; an hour
    later the first IP may ask again."""
    for number in range(10):
        request(store, Subscriber(f"agent{number}@mairie.fr"), now=T0 + timedelta(minutes=number))
    with pytest.raises(RateLimited) as refused:
        request(store, Subscriber("agent10@mairie.fr"), now=T0 + timedelta(minutes=30))
    assert (refused.value.scope, refused.value.retry_after) == ("ip", timedelta(minutes=30))
    request(store, Subscriber("agent10@mairie.fr"), ip="192.0.2.200", now=T0 + timedelta(minutes=30))
    request(store, Subscriber("agent11@mairie.fr"), now=T0 + timedelta(minutes=61))


def test_an_ipv6_visitor_is_counted_by_its_64_block(store: Store) -> None:
    """Two addresses of one /64 share the IP limit (a machine holds the whole block); another
    /64 does not."""
    limits = Limits(ip=Limit(2, timedelta(hours=1)))
    ips = [client_ip("2001:db8:1:2::1"), client_ip("2001:db8:1:2:ffff::9"), client_ip("2001:db8:1:3::1")]
    request(store, Subscriber("a@exemple.fr"), ip=ips[0], limits=limits)
    request(store, Subscriber("b@exemple.fr"), ip=ips[1], limits=limits)
    with pytest.raises(RateLimited):
        request(store, Subscriber("c@exemple.fr"), ip=ips[1], limits=limits)
    request(store, Subscriber("c@exemple.fr"), ip=ips[2], limits=limits)


def test_a_refused_request_changes_nothing(store: Store) -> None:
    """A request over the limit is not stored, so it neither counts nor supersedes the pending
    link of the address."""
    limits = Limits(address=Limit(1, timedelta(hours=24)))
    pending = request(store, limits=limits)
    for _ in range(3):
        with pytest.raises(RateLimited):
            request(store, now=T0 + timedelta(minutes=1), limits=limits)
    assert confirm_now(store, pending, T0 + timedelta(minutes=2)) == "confirmed"
    request(store, now=T0 + timedelta(hours=24, seconds=1), limits=limits)


# --- what the form sends ---------------------------------------------------------------------


def test_addresses_are_checked_and_their_domain_normalised() -> None:
    """The domain is lower-cased (and IDNA-encoded), the local part kept (even when it is not
    ASCII, as config.yaml takes it); anything that is not an address gets a French sentence."""
    assert check_address("  Anne.Martin@Mairie-Roubaix.FR ") == ("Anne.Martin@mairie-roubaix.fr", None)
    assert check_address("anne@exämple.fr") == ("anne@xn--exmple-cua.fr", None)
    assert check_address("é@exemple.fr") == ("é@exemple.fr", None)
    bad = ("", "anne", "anne@exemple", "anne@exemple.fr\nBcc: x@y.fr", "a b@exemple.fr", "a..b@exemple.fr")
    for text in bad:
        email, problem = check_address(text)
        assert email is None and problem is not None and problem.endswith(".")
    assert check_address("")[1] == "Indiquez votre adresse électronique."


def test_names_are_one_line_and_short() -> None:
    """Control characters and runs of spaces go; an empty name is none; a long one is refused."""
    assert clean_name("  Anne \r\n Martin\t") == ("Anne Martin", None)
    assert clean_name("   ") == (None, None)
    assert clean_name("x" * 101)[0] is None


def test_client_ips_are_stored_in_one_form() -> None:
    """IPv6 written out whole (its /64 is then a prefix), IPv4-mapped IPv6 as IPv4."""
    assert client_ip("2001:DB8::1") == "2001:0db8:0000:0000:0000:0000:0000:0001"
    assert client_ip("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_ip("192.0.2.1") == "192.0.2.1"
    assert client_ip(None) == "unknown"


# --- consent wording -------------------------------------------------------------------------


def test_consent_wording_names_its_version_and_the_exact_text(tmp_path: Path) -> None:
    """The shipped text declares its version; an admin's text gets its own name even when they
    forget to change the version, since the fingerprint of the words is part of it."""
    config = parse_config("site: {title: IREV}\n", tmp_path / "config.yaml")
    shipped = consent_wording(environment(None), config.site)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}\+[0-9a-f]{8}", shipped.version)
    assert "J’accepte de recevoir" in shipped.html and "IREV" in shipped.html
    (tmp_path / "web").mkdir()
    source = (ROOT / "templates" / "web" / "subscribe_consent.html").read_text(encoding="utf-8")
    (tmp_path / "web" / "subscribe_consent.html").write_text(source.replace("par courriel", "par e-mail"))
    edited = consent_wording(environment(tmp_path), config.site)
    assert edited.version.split("+")[0] == shipped.version.split("+")[0]
    assert edited.version != shipped.version and "par e-mail" in edited.html


# --- the confirmation email ------------------------------------------------------------------


def _email_config(tmp_path: Path) -> Config:
    return parse_config(
        'site: {title: IREV}\nemail: {from: "IREV <lettre@irev.fr>"}\n'
        "web: {base_url: 'https://lettre.irev.fr'}\n",
        tmp_path / "config.yaml",
    )


def test_confirmation_email_is_french_and_carries_the_link(store: Store, tmp_path: Path) -> None:
    """Subject, greeting, the link in both parts, the choices and the deadline, in French; the same
    request gives the same bytes; a name cannot add a header."""
    config = _email_config(tmp_path)
    signup = request(store, Subscriber("anne@exemple.fr", "Anne\r\nBcc: x@y.fr", "weekly", ("Santé",)))
    url = "https://lettre.irev.fr/subscribe/confirm/TOKEN"

    def build() -> bytes:
        message = confirmation_email(environment(None), config, signup, confirm_url=url,
                                     subscribe_url="https://lettre.irev.fr/subscribe")  # fmt: skip
        return outgoing(config, signup, message).data

    data = build()
    assert data == build()
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "Confirmez votre inscription à la lettre d’information IREV"
    assert message["To"].addresses[0].display_name == "Anne Bcc: x@y.fr" and message["Bcc"] is None
    assert message["Message-ID"].startswith(f"<signup.{signup.id}.") and message["Auto-Submitted"]
    assert message["List-Unsubscribe"] is None  # not a list message
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    plain = text.get_content()
    assert plain.startswith("Bonjour Anne Bcc: x@y.fr,") and url in plain.splitlines()
    assert "Fréquence\u00a0: Chaque semaine" in plain and "Thématiques\u00a0: Santé" in plain
    assert "jusqu’au samedi 28 novembre 2026 à 11\u00a0h" in plain
    assert all(len(line) <= 78 for line in plain.splitlines() if url not in line)
    document = lxml.html.fromstring(html.get_content())
    assert document.xpath("//a[normalize-space(.)='Confirmer mon inscription']/@href") == [url]


def test_confirmation_email_goes_through_the_outbox_transport(store: Store, tmp_path: Path) -> None:
    """`send` hands the message to the transport and reports it sent: an .eml file in the outbox."""
    config = _email_config(tmp_path)
    signup = request(store)
    message = confirmation_email(environment(None), config, signup, confirm_url="https://x/c",
                                 subscribe_url="https://x/s")  # fmt: skip
    result = asyncio.run(send(config, outgoing(config, signup, message), OutboxTransport(tmp_path / "out")))
    assert result.outcome == "sent"
    [written] = (tmp_path / "out").glob("*-signup-*.eml")
    assert b"anne.martin@exemple.fr" in written.read_bytes()


# --- the pages -------------------------------------------------------------------------------


class Site(WebSite):
    """The web app on a copy of the shipped project, with the sign-up's steps."""

    def sign_up(self, email: str = ANNE.email, **fields: str | list[str]) -> httpx.Response:
        """Fill and send the sign-up form as a browser does."""
        data: dict[str, str | list[str]] = {
            **self.hidden("/subscribe"), "email": email, "name": "Anne Martin", "frequency": "daily",
            "thematiques": ["Éducation"], "territoires": ["Roubaix"], "consent": "yes", "action": "subscribe",
        }  # fmt: skip
        response: httpx.Response = self.client.post("/subscribe", data={**data, **fields})
        return response

    def outbox(self) -> list[EmailMessage]:
        found = []
        for path in sorted((self.root / "outbox").glob("*-signup-*.eml")):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(message, EmailMessage)
            found.append(message)
        return found

    def confirm_path(self, message: EmailMessage) -> str:
        text = message.get_body(("plain",))
        assert text is not None
        found = re.search(r"(\S+/subscribe/confirm/\S+)", text.get_content())
        assert found is not None
        url = found.group(1)
        assert url.startswith(self.config.web.base_url)
        return url[len(self.config.web.base_url) :]

    def pending(self) -> int:
        with self.store.engine.connect() as connection:
            return len(connection.execute(signup_requests.select()).all())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped config.yaml and items, ingested once for the module."""
    return built_project(tmp_path_factory.mktemp("signup"))


@pytest.fixture
def site(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A fresh copy of the built project, served by the web app, mailing to its outbox."""
    monkeypatch.setenv("SYNDICATOR_SECRET", SECRET)
    yield from served(Site, built, tmp_path / "site")


def test_sign_up_form_is_french_labelled_and_protected(site: Site) -> None:
    """The form asks for the address, a name, the interests and the consent, every field
    labelled; it carries its CSRF token and the consent text's version."""
    page = site.client.get("/subscribe")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    document = lxml.html.fromstring(page.text)
    labelled = {str(label.get("for")) for label in document.xpath("//label[@for]")}
    for field in document.xpath("//input[not(@type='hidden')]"):
        assert field.xpath("ancestor::label") or field.get("id") in labelled, lxml.html.tostring(field)
    text = text_of(page.text)
    assert "Adresse électronique" in text and "Nom (facultatif)" in text and "J’accepte de recevoir" in text
    assert document.xpath("//input[@name='consent' and @required]")
    assert document.xpath("//input[@name='frequency' and @value='weekly' and @checked]")
    hidden = site.hidden("/subscribe")
    assert set(hidden) == {"csrf_token", "wording"}


def test_signing_up_mails_a_confirmation_and_stores_nothing_else(site: Site, run: Run) -> None:
    """The form's answer says to look in the mailbox; the outbox holds the confirmation email;
    the address is no subscriber yet."""
    answer = site.sign_up()
    assert answer.status_code == 200
    assert "Un message vient d’être envoyé à anne.martin@exemple.fr" in text_of(answer.text)
    [message] = site.outbox()
    assert message["To"].addresses[0].addr_spec == ANNE.email
    assert site.confirm_path(message).startswith("/subscribe/confirm/")
    assert site.pending() == 1
    [version] = re.findall(r'name="wording" value="([^"]+)"', site.client.get("/subscribe").text)
    assert "J’accepte de recevoir" in (archived(site.store, version) or "")  # the words agreed to, kept
    assert ANNE.email not in run("subscribers", "list", "--config", str(site.root / "config.yaml")).out


def test_following_the_link_shows_a_button_then_confirms(site: Site, run: Run) -> None:
    """GET (what link scanners do) shows the choices and a button and confirms nothing; the
    button confirms, and `subscribers list` shows the address with its interests."""
    site.sign_up()
    path = site.confirm_path(site.outbox()[0])
    page = site.client.get(path)
    assert page.status_code == 200 and "Confirmer mon inscription</button>" in page.text
    assert "Chaque jour" in text_of(page.text) and load_choice(site.store, ANNE.email) is None
    form = site.hidden(path)
    answer = site.client.post(path, data=form)
    assert answer.status_code == 200
    assert "Merci ! L’adresse anne.martin@exemple.fr recevra la lettre" in text_of(answer.text)
    listed = run("subscribers", "list", "--config", str(site.root / "config.yaml")).out
    [line] = [line for line in listed.splitlines() if line.startswith(ANNE.email)]
    assert "Anne Martin" in line and "daily" in line and "web sign-up" in line
    assert "thématiques: Éducation; territoires: Roubaix" in line
    again = site.client.post(path, data=form)  # a double click
    assert again.status_code == 200 and "était déjà confirmée" in text_of(again.text)
    assert "était déjà confirmée" in text_of(site.client.get(path).text)


def test_posts_without_the_csrf_token_are_refused(site: Site) -> None:
    """Another site's form posting the sign-up, or the confirmation, gets the French 403 page;
    no email is sent, nothing is confirmed."""
    refused = site.client.post(
        "/subscribe", data={"email": ANNE.email, "consent": "yes", "frequency": "daily"}
    )
    assert refused.status_code == 403 and "Formulaire expiré" in text_of(refused.text)
    assert site.outbox() == [] and site.pending() == 0
    site.sign_up()
    path = site.confirm_path(site.outbox()[0])
    forged = site.client.post(path, data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert load_choice(site.store, ANNE.email) is None


def test_a_form_with_problems_comes_back_with_them_in_french(site: Site) -> None:
    """A bad address, an unknown thématique and an unticked consent box are each named; what was
    typed and ticked is kept; nothing is stored or sent."""
    answer = site.sign_up("anne@", thematiques=["Éducation", "Astrologie"], consent="")
    assert answer.status_code == 400
    text = text_of(answer.text)
    assert "« anne@ » n'est pas une adresse électronique valable" in text
    assert "Thématique inconnue : « Astrologie »." in text and "Cochez la case d’accord" in text
    document = lxml.html.fromstring(answer.text)
    assert document.xpath("//input[@name='email']/@value") == ["anne@"]
    assert document.xpath("//input[@name='email']/@aria-invalid") == ["true"]
    assert document.xpath("//input[@name='thematiques' and @value='Éducation' and @checked]")
    assert site.outbox() == [] and site.pending() == 0


def test_a_consent_text_changed_while_the_page_was_open_must_be_read_again(site: Site) -> None:
    """The form names the version it showed; if the text changed since, the visitor is asked to
    tick the box again under the new text, so the proof names the words they read."""
    answer = site.sign_up(wording="2020-01-01+deadbeef")
    assert answer.status_code == 400 and "Le texte d’accord a changé" in text_of(answer.text)
    assert site.pending() == 0


def test_territoires_are_searchable_while_signing_up(site: Site) -> None:
    """The search button brings back the form with the places found, the boxes as ticked, and
    sends nothing."""
    answer = site.sign_up(action="search", q="lille")
    assert answer.status_code == 200
    assert "Territoires trouvés pour « lille »" in text_of(answer.text)
    document = lxml.html.fromstring(answer.text)
    assert document.xpath("//input[@name='territoires' and @value='Roubaix' and @checked]")
    assert document.xpath("//input[@name='email']/@value") == [ANNE.email]
    assert site.outbox() == [] and site.pending() == 0


def test_too_many_requests_get_a_french_429_page(site: Site) -> None:
    """The fourth request for one address in a day is refused with a page saying when to come
    back, and a Retry-After header; no fourth email goes."""
    for _ in range(3):
        assert site.sign_up().status_code == 200
    refused = site.sign_up()
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 24 * 3600
    text = text_of(refused.text)
    assert "Plusieurs demandes d’inscription ont déjà été faites pour cette adresse" in text
    assert re.search(r"dans \d+ heures", text)
    assert len(site.outbox()) == 3


def test_an_expired_or_tampered_link_gets_a_clear_page(site: Site) -> None:
    """A link past its 48 hours gets a 410 page offering to start again; a link with one
    character changed gets the 400 page, which shows nothing of the request."""
    site.sign_up()
    path = site.confirm_path(site.outbox()[0])
    tampered = site.client.get(path[:-2] + ("xy" if not path.endswith("xy") else "zz"))
    assert tampered.status_code == 400 and "Lien non valide" in text_of(tampered.text)
    assert ANNE.email not in tampered.text
    with site.store.engine.begin() as connection:
        connection.execute(update(signup_requests).values(expires=datetime.now(UTC) - timedelta(minutes=1)))
    for page in (site.client.get(path), site.client.post(path, data=site.hidden("/subscribe"))):
        assert page.status_code == 410
        assert "Ce lien de confirmation a expiré" in text_of(page.text)
        again = lxml.html.fromstring(page.text).xpath(
            "//a[normalize-space(.)=$text]/@href", text="Refaire ma demande d’inscription"
        )
        assert again == [site.config.web.base_url + "/subscribe"]
    assert load_choice(site.store, ANNE.email) is None


def test_a_subscriber_signing_up_again_gets_the_same_answer(site: Site) -> None:
    """The form tells no one who subscribes: an address of config.yaml gets the same page and
    a confirmation email; confirming replaces its choices with the new ones."""
    answer = site.sign_up(MARIE)
    assert answer.status_code == 200 and "Un message vient d’être envoyé" in text_of(answer.text)
    path = site.confirm_path(site.outbox()[0])
    site.client.post(path, data=site.hidden(path))
    marie = effective_subscriber(site.config, site.store, MARIE)
    assert marie is not None and marie.frequency == "daily" and marie.territoires == ("Roubaix",)
    assert marie.name == "Marie Dupont"  # config.yaml's name stays


def test_an_unsubscribed_address_that_signs_up_and_confirms_is_subscribed_again(site: Site) -> None:
    """Unsubscribing then signing up again: once the new link is followed, digests resume."""
    Ledger(site.store).suppress(ANNE.email, "unsubscribed", datetime.now(UTC))
    site.sign_up()
    path = site.confirm_path(site.outbox()[0])
    site.client.post(path, data=site.hidden(path))
    assert Ledger(site.store).suppressed() == {}


# --- through a mail server ---------------------------------------------------------------------


def _through_smtp(port: int) -> Callable[[str], str]:
    """An edit of config.yaml that mails through the test server on `port`."""

    def edit(text: str) -> str:
        for old, new in (("transport: outbox", "transport: smtp"), ("host: localhost", "host: 127.0.0.1"),
                         ("port: 587", f"port: {port}"), ("starttls: true", "starttls: false"),
                         ("timeout: 30", "timeout: 5")):  # fmt: skip
            assert old in text
            text = text.replace(old, new)
        return re.sub(r"\n +(username|password)_env: .*", "", text)

    return edit


def test_confirmation_goes_through_the_smtp_relay(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `email.transport: smtp` the confirmation is delivered to the relay; a mailbox the
    relay refuses (5.1.1) is named on the form again and nothing is kept."""
    monkeypatch.setenv("SYNDICATOR_SECRET", SECRET)
    handler = Handler(rcpt_replies={"nobody@exemple.fr": "550 5.1.1 No such user"})
    with smtp_server(handler) as port:
        for site in served(Site, built, tmp_path / "site", _through_smtp(port)):
            assert site.sign_up().status_code == 200
            [received] = handler.accepted
            assert received.recipients == (ANNE.email,)
            assert b"/subscribe/confirm/" in received.data
            refused = site.sign_up("nobody@exemple.fr")
            assert refused.status_code == 400
            assert "La messagerie de cette adresse la refuse" in text_of(refused.text)
            assert site.pending() == 1


def test_an_unreachable_relay_gets_a_503_page_and_keeps_nothing(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No mail server: the page says the message could not be sent; the request is forgotten, so
    trying again later is not held against the visitor."""
    monkeypatch.setenv("SYNDICATOR_SECRET", SECRET)
    with smtp_server(Handler()) as port:
        pass  # the port is free again: nothing listens there
    for site in served(Site, built, tmp_path / "site", _through_smtp(port)):
        answer = site.sign_up()
        assert answer.status_code == 503
        assert "Le message de confirmation n’a pas pu être envoyé" in text_of(answer.text)
        assert site.pending() == 0
