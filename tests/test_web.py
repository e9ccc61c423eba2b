"""The subscribers' pages over HTTP, through Starlette's TestClient on the real app and a real
store: signed links, CSRF, RFC 8058's one-click POST, idempotence, tampered links, preferences
stored and used by the digests; and `syndicator serve` itself as a process."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import lxml.html
import pytest
from itsdangerous import URLSafeSerializer

from syndicator.config.subscribers import Subscriber
from syndicator.db.choices import Consent, load_choice, save_choice
from syndicator.db.ledger import Ledger
from syndicator.db.tokens import AddressTokens, Purpose
from syndicator.digests.run import DigestRun
from syndicator.web.app import create_app

from .conftest import Run
from .web_support import SECRET, TestClient, WebSite, built_project, served, text_of

MARIE = "marie.dupont@example.org"  # config.yaml: weekly, Éducation, Nord
ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}


class Site(WebSite):
    """The web app on a copy of the shipped project, with the links its emails carry."""

    def link(self, purpose: Purpose, email: str) -> str:
        return f"/{purpose}/{AddressTokens([SECRET], purpose).seal(email)}"

    def suppressed(self) -> Mapping[str, tuple[str, datetime]]:
        return Ledger(self.store).suppressed()

    def form(self, path: str) -> dict[str, str]:
        """GET a page and return the hidden fields of its form (the CSRF token)."""
        return self.hidden(path)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped config.yaml and items, ingested once for the module."""
    return built_project(tmp_path_factory.mktemp("web"))


@pytest.fixture
def site(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A fresh copy of the built project, served by the web app."""
    monkeypatch.setenv("SYNDICATOR_SECRET", SECRET)
    yield from served(Site, built, tmp_path / "site")


def one_click(client: TestClient, path: str) -> httpx.Response:
    """What a mail program does with List-Unsubscribe-Post (RFC 8058)."""
    response: httpx.Response = client.post(path, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    return response


# --- unsubscribe -----------------------------------------------------------------------------


def test_unsubscribe_link_shows_a_confirmation_and_changes_nothing(site: Site) -> None:
    """GET (what link scanners do) shows a French page with a button; the address stays subscribed."""
    page = site.client.get(site.link("unsubscribe", MARIE))
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert '<html lang="fr"' in page.text
    assert "Me désabonner</button>" in page.text
    assert "ma•••@example.org" in text_of(page.text)  # masked: whoever opens the link sees no address
    assert site.client.head(site.link("unsubscribe", MARIE)).status_code == 200
    assert site.suppressed() == {}


def test_unsubscribe_button_suppresses_the_address(site: Site) -> None:
    """The confirmation page's button (a POST with its CSRF token) unsubscribes at once."""
    link = site.link("unsubscribe", MARIE)
    answer = site.client.post(link, data=site.form(link))
    assert answer.status_code == 200
    assert "Vous êtes désabonné·e" in text_of(answer.text)
    assert site.suppressed()[MARIE][0] == "unsubscribed"


def test_unsubscribe_post_without_a_valid_csrf_token_is_refused(site: Site) -> None:
    """A POST without the token, with a forged one, or with another browser's, gets a French 403
    and unsubscribes no one."""
    link = site.link("unsubscribe", MARIE)
    token = site.form(link)["csrf_token"]
    assert site.client.post(link, data={}).status_code == 403
    assert site.client.post(link, data={"csrf_token": token + "x"}).status_code == 403
    with TestClient(site.app) as other:  # another browser: its own cookie
        other.get(link)
        refused = other.post(link, data={"csrf_token": token})
    assert refused.status_code == 403
    assert "Formulaire expiré" in refused.text
    assert site.suppressed() == {}


@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
def test_one_click_post_unsubscribes_without_cookie_or_token(site: Site, multipart: bool) -> None:
    """RFC 8058: a mail program POSTs `List-Unsubscribe=One-Click` to the link, with no cookie
    and no CSRF token; the address is unsubscribed."""
    link = site.link("unsubscribe", MARIE)
    with TestClient(site.app) as mail_program:
        if multipart:
            answer = mail_program.post(link, files={"List-Unsubscribe": (None, "One-Click")})
        else:
            answer = one_click(mail_program, link)
    assert answer.status_code == 200
    assert site.suppressed()[MARIE][0] == "unsubscribed"


def test_unsubscribing_twice_changes_nothing_more(site: Site) -> None:
    """A second unsubscribe (the button after a one-click) answers the same, and the address
    stays suppressed since the first time."""
    link = site.link("unsubscribe", MARIE)
    one_click(site.client, link)
    since = site.suppressed()[MARIE][1]
    again = one_click(site.client, link)
    assert again.status_code == 200
    assert "était déjà désabonnée" in text_of(again.text)
    assert site.client.get(link).status_code == 200
    assert site.suppressed() == {MARIE: ("unsubscribed", since)}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_tampered_link_gets_a_400_page_that_leaks_nothing(site: Site, method: str) -> None:
    """A token with a character changed, one sealed with another secret, a preferences token used
    to unsubscribe, a first-release token with its address or signature changed, or garbage: a
    French 400 page that names no address and shows no detail; nothing changes."""
    token = AddressTokens([SECRET], "unsubscribe").seal(MARIE)
    middle = len(token) // 2
    payload, signature = legacy_token(SECRET, "unsubscribe", MARIE).split(".")
    forged = legacy_token(SECRET + "x", "unsubscribe", "claire.martin@example.org").split(".")[0]
    for bad in (
        token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :],
        AddressTokens(["un-autre-secret"], "unsubscribe").seal(MARIE),
        AddressTokens([SECRET], "preferences").seal(MARIE),
        f"{payload}.{signature[:-2]}xy",
        f"{forged}.{signature}",
        "n'importe-quoi",
    ):
        answer = site.client.request(method, f"/unsubscribe/{bad}", content=b"List-Unsubscribe=One-Click",
                                     headers=ONE_CLICK)  # fmt: skip
        assert answer.status_code == 400, bad
        assert "Lien non valide" in answer.text
        assert "@" not in text_of(answer.text)
        for leak in ("example.org", "Traceback", "itsdangerous", "Signature", bad):
            assert leak not in answer.text, leak
    assert site.suppressed() == {}


def legacy_token(secret: str, purpose: str, email: str) -> str:
    """A link token as the first releases made them: the address signed, readable."""
    return str(URLSafeSerializer([secret], salt=f"syndicator.{purpose}").dumps({"e": email}))


def test_a_link_does_not_show_the_address_and_old_links_still_work(site: Site) -> None:
    """The address cannot be read from a link's token, even base64-decoded (a mail scanner
    that logs links learns nothing); links of the first releases, signed but readable, still
    unsubscribe."""
    token = AddressTokens([SECRET], "unsubscribe").seal(MARIE)
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert MARIE.encode() not in decoded and b"example" not in decoded and "example" not in token
    assert token == AddressTokens([SECRET], "unsubscribe").seal(MARIE)  # the same every time
    assert site.client.get(f"/unsubscribe/{legacy_token(SECRET, 'unsubscribe', MARIE)}").status_code == 200


def test_links_signed_before_a_key_rotation_still_work(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the former secret in `SYNDICATOR_OLD_SECRET_<name>`, a link sealed with it still
    unsubscribes; once the former secret is dropped, it no longer does."""
    former = "l'ancien secret de la lettre, avant la rotation"
    old = f"/unsubscribe/{AddressTokens([former], 'unsubscribe').seal(MARIE)}"
    assert site.client.get(old).status_code == 400
    monkeypatch.setenv("SYNDICATOR_OLD_SECRET_2025", former)
    with TestClient(create_app(site.config)) as client:
        assert client.get(old).status_code == 200


def test_digest_list_unsubscribe_header_is_the_one_click_link(site: Site, run: Run) -> None:
    """A digest's List-Unsubscribe starts with the page's URL under web.base_url (https, as
    behind a proxy), with List-Unsubscribe-Post; POSTing RFC 8058's body to it unsubscribes."""
    base = "https://lettre.example.org"
    path = site.root / "config.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("base_url: http://127.0.0.1:8080", f"base_url: {base}"), encoding="utf-8")
    out = site.root / "preview"
    result = run("digest", "preview", "centre.social@example.org", "--config", str(site.root / "config.yaml"),
                 "--out", str(out))  # fmt: skip
    assert result.code == 0, result.err
    message = message_from_bytes(next(out.glob("*.eml")).read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))[0]
    assert url == base + site.link("unsubscribe", "centre.social@example.org")
    answer = one_click(site.client, url.removeprefix(base))
    assert answer.status_code == 200
    assert "centre.social@example.org" in site.suppressed()


# --- preferences -----------------------------------------------------------------------------


def checked(html: str, name: str) -> list[str]:
    """The values of the ticked boxes (or radio) named `name`."""
    document = lxml.html.fromstring(html)
    return [str(i.get("value")) for i in document.xpath(f"//input[@name='{name}'][@checked]")]


def test_preferences_page_shows_the_current_choice(site: Site) -> None:
    """The form shows config.yaml's choice ticked: weekly, Éducation, Nord; the other terms the
    items use are offered."""
    page = site.client.get(site.link("preferences", MARIE))
    assert page.status_code == 200
    assert checked(page.text, "frequency") == ["weekly"]
    assert checked(page.text, "thematiques") == ["Éducation"]
    assert checked(page.text, "territoires") == ["Nord"]
    assert checked(page.text, "types") == []
    assert 'value="Santé"' in page.text and 'value="Région Hauts de France"' in page.text


def test_every_field_of_the_pages_has_a_label(site: Site) -> None:
    """Accessibility: every visible input of the preferences and unsubscribe pages is labelled,
    and the pages have a skip link to their main content."""
    for path in (site.link("preferences", MARIE) + "?q=lille", site.link("unsubscribe", MARIE)):
        document = lxml.html.fromstring(site.client.get(path).text)
        labelled = {str(label.get("for")) for label in document.xpath("//label[@for]")}
        for field in document.xpath("//input[not(@type='hidden')]"):
            assert field.xpath("ancestor::label") or field.get("id") in labelled, lxml.html.tostring(field)
        assert document.xpath("//a[@href='#contenu']") and document.xpath("//main[@id='contenu']")


def test_saved_preferences_win_over_config_and_drive_the_next_digest(site: Site, run: Run) -> None:
    """Daily, Santé, Métropole Européenne de Lille: saved, confirmed on the page, listed by
    `subscribers list` as the subscriber's own, and used by the digests."""
    link = site.link("preferences", MARIE)
    fields = site.form(link) | {"frequency": "daily", "action": "save"}
    answer = site.client.post(link, data={**fields, "thematiques": ["sante"],
                                          "territoires": ["MEL"]})  # fmt: skip
    assert answer.status_code == 200, answer.text
    shown = text_of(answer.text)
    assert "Préférences enregistrées" in shown
    summary = lxml.html.fromstring(answer.text).xpath("//dl")[0]
    assert dict(zip(summary.xpath("dt/text()"), summary.xpath("dd/text()"), strict=True)) == {
        "Fréquence": "Chaque jour",
        "Thématiques": "Santé",
        "Territoires": "Métropole Européenne de Lille",
        "Types d’actualités": "tous",
    }
    stored = load_choice(site.store, MARIE)
    assert stored is not None
    assert stored.subscriber.thematiques == ("Santé",)
    assert stored.subscriber.territoires == ("Métropole Européenne de Lille",)
    digests = DigestRun(site.store, site.config, now=datetime.now(UTC))
    assert digests.subscriber(MARIE) == Subscriber(
        MARIE, "Marie Dupont", "daily", ("Santé",), ("Métropole Européenne de Lille",), ()
    )
    assert [s.email for s in digests.subscribers("weekly")] == []
    listing = run("subscribers", "list", "--config", str(site.root / "config.yaml"))
    line = next(row for row in listing.out.splitlines() if row.startswith(MARIE))
    assert "daily" in line and "thématiques: Santé" in line and "web preferences" in line


def test_preferences_refuse_names_no_item_or_place_has(site: Site) -> None:
    """An unknown thématique or territoire is refused with a French message; nothing is stored."""
    link = site.link("preferences", MARIE)
    fields = site.form(link) | {"frequency": "daily", "action": "save"}
    answer = site.client.post(link, data={**fields, "thematiques": ["Astrologie"],
                                          "territoires": ["Atlantide"]})  # fmt: skip
    assert answer.status_code == 400
    shown = text_of(answer.text)
    assert "Thématique inconnue : « Astrologie »" in shown and "Territoire inconnu : « Atlantide »" in shown
    assert load_choice(site.store, MARIE) is None


def test_preferences_form_without_csrf_token_is_refused(site: Site) -> None:
    """Another site's form posting to the preferences link gets a 403; nothing is stored."""
    answer = site.client.post(site.link("preferences", MARIE), data={"frequency": "daily"})
    assert answer.status_code == 403
    assert load_choice(site.store, MARIE) is None


def test_territoires_are_searchable_without_javascript(site: Site) -> None:
    """A search (GET ?q=, or the form's Rechercher button) lists matching places as boxes to tick,
    homonyms told apart; the search button keeps what was ticked and saves nothing."""
    link = site.link("preferences", MARIE)
    page = site.client.get(link + "?q=hazebrouck")
    assert 'value="Hazebrouck"' in page.text and "Hazebrouck — commune" in page.text
    fields = site.form(link) | {"frequency": "monthly", "q": "saint-aubin", "action": "search"}
    found = site.client.post(link, data={**fields, "thematiques": ["Culture"], "territoires": ["Nord"]})
    assert found.status_code == 200
    assert checked(found.text, "frequency") == ["monthly"]
    assert checked(found.text, "thematiques") == ["Culture"]
    assert checked(found.text, "territoires") == ["Nord"]
    assert 'value="Saint-Aubin (59)"' in found.text and 'value="Saint-Aubin (62)"' in found.text
    assert load_choice(site.store, MARIE) is None
    fields = site.form(link) | {"frequency": "weekly", "action": "save"}
    saved = site.client.post(link, data={**fields, "territoires": ["Saint-Aubin (62)"]})
    assert saved.status_code == 200
    choice = load_choice(site.store, MARIE)
    assert choice is not None and choice.subscriber.territoires == ("Saint-Aubin (62)",)


def test_saving_preferences_after_unsubscribing_subscribes_again(site: Site) -> None:
    """An unsubscribed address sees it on its preferences page, whose button subscribes it again."""
    one_click(site.client, site.link("unsubscribe", MARIE))
    link = site.link("preferences", MARIE)
    page = site.client.get(link)
    assert "Vous êtes désabonné·e" in text_of(page.text) and "Me réabonner avec ces préférences" in page.text
    answer = site.client.post(link, data=site.form(link) | {"frequency": "weekly", "action": "save"})
    assert "Vous êtes de nouveau abonné·e" in text_of(answer.text)
    assert site.suppressed() == {}


def test_preferences_of_an_address_that_receives_nothing(site: Site) -> None:
    """A valid link of an address no longer in config.yaml (and never signed up) says so, and
    offers no form: removing someone from config.yaml is not undone from an old email."""
    page = site.client.get(site.link("preferences", "parti@example.org"))
    assert page.status_code == 200
    assert "Adresse non abonnée" in page.text and "<form" not in page.text
    assert site.client.post(site.link("preferences", "parti@example.org"), data={}).status_code == 200
    assert load_choice(site.store, "parti@example.org") is None


def test_web_signups_and_choices_appear_in_subscribers_list(site: Site, run: Run) -> None:
    """A confirmed sign-up is listed after config.yaml's subscribers, as a web sign-up; a stored
    choice without consent for an address config.yaml lacks is not a subscriber."""
    now = datetime.now(UTC)
    save_choice(site.store, Subscriber("Nouvelle@Example.org", "Nouvelle", "monthly", ("Culture",)),
                now=now, consent=Consent(now, "192.0.2.1", "2026-01"))  # fmt: skip
    save_choice(site.store, Subscriber("ancien@example.org", None, "daily"), now=now)
    listing = run("subscribers", "list", "--config", str(site.root / "config.yaml"))
    rows = listing.out.splitlines()
    assert rows[-1].startswith("Nouvelle@Example.org") and "web sign-up" in rows[-1]
    assert "thématiques: Culture" in rows[-1]
    assert not any(row.startswith("ancien@") for row in rows)
    assert all("config.yaml" in row for row in rows[1:-1])


def test_check_warns_about_a_listed_address_that_unsubscribed(site: Site, run: Run) -> None:
    """`check` names the config line of an address that unsubscribed: listing it does not
    subscribe it again."""
    one_click(site.client, site.link("unsubscribe", MARIE))
    result = run("check", "--config", str(site.root / "config.yaml"))
    assert result.code == 1
    [line] = [line for line in result.err.splitlines() if MARIE in line]
    lines = (site.root / "config.yaml").read_text(encoding="utf-8").splitlines()
    number = int(line.split(":")[1])
    assert MARIE in lines[number - 1]
    assert "warning:" in line and "unsubscribed on" in line and "remove it" in line


# --- errors and the server -------------------------------------------------------------------


def test_unknown_page_is_a_french_404(site: Site) -> None:
    """An address the app does not have gets a French page, not a bare error."""
    answer = site.client.get("/nulle-part")
    assert answer.status_code == 404
    assert "Page introuvable" in answer.text and '<html lang="fr"' in answer.text


def test_server_error_is_a_french_page_without_detail(site: Site, tmp_path: Path) -> None:
    """A failure inside (here an admin's template naming an unknown variable) gives a French 500
    page that shows neither the error nor the address; the pages an admin did not touch work."""
    (tmp_path / "mine" / "web").mkdir(parents=True)
    (tmp_path / "mine" / "web" / "preferences.html").write_text(
        '{% extends "web/base.html" %}{% block content %}{{ variable_inconnue }}{% endblock %}',
        encoding="utf-8",
    )
    config = site.config.model_copy(update={"templates": tmp_path / "mine"})
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        answer = client.get(site.link("preferences", MARIE))
        assert answer.status_code == 500
        assert "Erreur du serveur" in answer.text and '<html lang="fr"' in answer.text
        for leak in ("variable_inconnue", "Traceback", "example.org"):
            assert leak not in answer.text
        assert client.get(site.link("unsubscribe", MARIE)).status_code == 200


def test_serve_command_answers_on_its_port(site: Site) -> None:
    """`syndicator serve --port 0` starts uvicorn; the feeds and the pages answer; SIGTERM stops it."""
    (site.root / "feeds").mkdir(exist_ok=True)
    (site.root / "feeds" / "all.rss").write_text("<rss/>", encoding="utf-8")
    env = {**os.environ, "SYNDICATOR_SECRET": SECRET}
    process = subprocess.Popen(
        [sys.executable, "-m", "syndicator", "serve", "--config", str(site.root / "config.yaml"),
         "--port", "0"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        port = None
        for line in process.stderr:
            if found := re.search(r"running on http://127\.0\.0\.1:(\d+)", line):
                port = found[1]
                break
        assert port, "uvicorn did not say where it listens"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            rss = client.get("/feeds/all.rss")
            assert rss.headers["content-type"] == "application/rss+xml; charset=utf-8"
            assert client.get(site.link("unsubscribe", MARIE)).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(10)
        if process.stderr:
            process.stderr.close()
    # uvicorn stops cleanly, then ends by the signal it caught, as systemd expects
    assert code in (0, -signal.SIGTERM)
