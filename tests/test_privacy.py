"""The RGPD notice: the `privacy:` block, `check`'s warning, the notice on the sign-up page, in
the confirmation email and in every digest, the `/confidentialite` page, and the notice version
kept with each proof of consent."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import inspect

from syndicator.db.choices import load_choice
from syndicator.db.schema import MIGRATIONS
from syndicator.db.store import Store
from syndicator.db.tokens import AddressTokens

from .conftest import Run
from .databases import database_for
from .test_signup import ANNE, MARIE, Site
from .web_support import SECRET, built_project, served, text_of

NOTICE = "Vos données sont traitées par IREV pour vous envoyer la lettre d’information"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped config.yaml and items, ingested once for the module."""
    return built_project(tmp_path_factory.mktemp("privacy"))


@pytest.fixture
def site(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("SYNDICATOR_SECRET", SECRET)
    yield from served(Site, built, tmp_path / "site")


def _parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def test_a_privacy_block_with_an_unknown_key_gets_file_and_line(run: Run, project: Path) -> None:
    """A misspelt key under `privacy:` (or its `retention:`) is named with its line and the key
    meant, like every other key; nothing runs on a guess."""
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("  controller: IREV", "  controler: IREV")
    text = text.replace("    ledger_months: 13", "    ledger_month: 13")
    config.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    line = next(i for i, row in enumerate(lines, 1) if row.startswith("  controler:"))
    retention = next(i for i, row in enumerate(lines, 1) if row.startswith("    ledger_month:"))
    result = run("check")
    assert result.code == 1
    assert f"config.yaml:{line}: privacy: unknown key 'controler'; did you mean 'controller'?" in result.err
    meant = "unknown key 'ledger_month'; did you mean 'ledger_months'?"
    assert f"config.yaml:{retention}: privacy.retention: {meant}" in result.err


def test_check_warns_when_the_web_app_has_no_privacy_notice(run: Run, project: Path) -> None:
    """With `web:` configured and no controller, postal address or contact, `check` says which
    are missing and where; the shipped config.yaml, which has them, passes."""
    assert run("check").code == 0
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    start, end = text.index("privacy:\n"), text.index("\nsubscribers:")
    config.write_text(text[:start] + "privacy:\n  controller: IREV\n" + text[end:], encoding="utf-8")
    line = config.read_text(encoding="utf-8").splitlines().index("privacy:") + 1
    result = run("check")
    assert result.code == 1
    assert f"config.yaml:{line}: warning: privacy: postal_address, dpo_contact not set" in result.err


def test_a_contact_that_is_neither_an_address_nor_a_url_is_refused(run: Run, project: Path) -> None:
    """`dpo_contact` takes an email address or an http(s) URL; anything else is located."""
    config = project / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("dpo_contact: dpo@example.org", "dpo_contact: le DPO"),
        encoding="utf-8",
    )
    result = run("check")
    assert result.code == 1
    assert "privacy.dpo_contact: 'le DPO' is neither an email address nor an http(s) URL" in result.err


def test_the_sign_up_page_and_its_email_carry_the_notice(site: Site) -> None:
    """The form shows the short notice with a link to the full one; the confirmation email's
    text and HTML parts carry it too."""
    page = text_of(site.client.get("/subscribe").text)
    assert NOTICE in page and "en écrivant à dpo@example.org" in page
    assert 'href="http://127.0.0.1:8080/confidentialite">Vos données personnelles et vos droits' in (
        site.client.get("/subscribe").text
    )
    site.sign_up()
    [message] = site.outbox()
    text, html = _parts(message)
    assert NOTICE in " ".join(text.split()) and "http://127.0.0.1:8080/confidentialite" in text
    assert 'href="mailto:dpo@example.org"' in html and 'href="http://127.0.0.1:8080/confidentialite"' in html


def test_the_privacy_page_renders_the_whole_notice_in_the_pages_layout(site: Site) -> None:
    """`/confidentialite` names the controller, its address, the contact, the purpose, each
    retention period from config.yaml, the right to complain to the CNIL, the notice's version;
    it has the pages' layout (the footer links it)."""
    response = site.client.get("/confidentialite")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    page = text_of(response.text)
    for expected in (
        "Le responsable du traitement est IREV, 1 rue de l’Exemple, 59000 Lille.",
        "dpo@example.org",
        "Vos données servent à vous envoyer la lettre d’information, selon les thématiques",
        "Une demande d’inscription 30 jours au plus",
        "13 mois, puis seulement des totaux par mois, sans adresse",
        "la durée de l’abonnement, puis 3 ans",
        "CNIL",
        "Version 2026-12 de cette notice.",
        "Flux d’actualités · Données personnelles",
    ):
        assert expected in page, expected
    assert "30\u00a0jours" in response.text and "13\u00a0mois" in response.text  # never cut there


def test_every_digest_carries_the_notice_in_both_parts(run: Run, project: Path) -> None:
    """Each digest's footer, in its text and HTML parts, has the short notice and the link."""
    assert run("ingest").code == 0 and run("digest", "send").code == 0
    sent = sorted((project / "outbox").glob("*.eml"))
    assert sent
    for path in sent:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        text, html = _parts(message)
        assert NOTICE in " ".join(text.split()), path
        joined = text.replace("\r\n", " ")  # the text part wraps, never at a no-break space
        assert "Durées de conservation et vos droits\u00a0: http://127.0.0.1:8080/confidentialite" in joined
        assert NOTICE in " ".join(html.split()) and 'href="http://127.0.0.1:8080/confidentialite"' in html


def test_a_policy_url_of_ones_own_replaces_the_apps_page(run: Run, project: Path) -> None:
    """With `policy_url` set, the emails link to it instead of `/confidentialite`."""
    config = project / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "  # policy_url: https://www.irev.fr/donnees-personnelles",
            "  policy_url: https://www.irev.fr/rgpd",
        ),
        encoding="utf-8",
    )
    assert run("ingest").code == 0 and run("digest", "send").code == 0
    path = sorted((project / "outbox").glob("*.eml"))[0]
    body = path.read_bytes().decode("utf-8", "replace")
    assert "https://www.irev.fr/rgpd" in re.sub(r"=\r?\n", "", body)
    assert "/confidentialite" not in re.sub(r"=\r?\n", "", body)


def test_the_consent_record_keeps_the_notice_version(site: Site, run: Run) -> None:
    """A confirmed sign-up's proof names the consent wording and the notice version shown, and
    the export says both."""
    site.sign_up()
    path = site.confirm_path(site.outbox()[0])
    assert site.client.post(path, data=site.hidden(path)).status_code == 200
    choice = load_choice(site.store, ANNE.email)
    assert choice is not None and choice.consent is not None
    assert choice.consent.notice == "2026-12" and choice.consent.wording
    exported = run("subscribers", "export", ANNE.email, "--config", str(site.root / "config.yaml"))
    [consent] = [entry["consent"] for entry in json.loads(exported.out)["web_choices"]]
    assert consent["notice_version"] == "2026-12" and "J’accepte de recevoir" in consent["wording"]


def test_a_database_of_the_previous_version_gets_the_notice_column(tmp_path: Path) -> None:
    """A store made before this change is brought up to date: its consent records gain the
    notice version column, and the monthly counts table appears."""
    url = database_for(tmp_path)
    with Store.open(url, MIGRATIONS[:-1]) as old, old.engine.begin() as connection:
        # The earlier migrations build today's tables: drop what the released code did not have.
        for table in ("subscriber_choices", "signup_requests"):
            connection.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN consent_notice")
        columns = {c["name"] for c in inspect(connection).get_columns("subscriber_choices")}
        old_version = old.version
    with Store.open(url) as store:
        inspector = inspect(store.engine)
        now = {c["name"] for c in inspector.get_columns("subscriber_choices")}
        assert now - columns == {"consent_notice"}
        assert "consent_notice" in {c["name"] for c in inspector.get_columns("signup_requests")}
        assert "ledger_counts" in inspector.get_table_names()
        assert store.version == old_version + 1


def _exports(site: Site) -> list[EmailMessage]:
    found = []
    for path in sorted((site.root / "outbox").glob("*-export-*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def _export_path(site: Site, email: str) -> str:
    """The export link of the address's preferences page, as the page gives it."""
    page = site.client.get(f"/preferences/{AddressTokens([SECRET], 'preferences').seal(email)}")
    [link] = re.findall(
        r'href="([^"]+/export/[^"]+)">Recevoir par courriel une copie de mes données', page.text
    )
    assert link.startswith(site.config.web.base_url)
    return str(link)[len(site.config.web.base_url) :]


def test_the_preferences_page_mails_the_subscriber_their_data(site: Site) -> None:
    """The preferences page links to a page whose button (GET changes nothing) mails the
    address, and only it, its export as a JSON attachment."""
    path = _export_path(site, MARIE)
    shown = site.client.get(path)
    assert shown.status_code == 200 and "M’envoyer mes données</button>" in shown.text
    assert _exports(site) == []
    answer = site.client.post(path, data=site.hidden(path))
    assert answer.status_code == 200 and f"Un message vient d’être envoyé à {MARIE}" in text_of(answer.text)
    [message] = _exports(site)
    assert [a.addr_spec for a in message["To"].addresses] == [MARIE]
    assert message["Subject"] == "Vos données personnelles — IREV"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "donnees-personnelles.json"
    data = json.loads(attachment.get_content())
    assert data["address"] == MARIE and data["config_entry"]["territoires"] == ["Nord"]


def test_the_export_link_is_sealed_and_rate_limited(site: Site) -> None:
    """A preferences token does not open the export page (400); a mailbox gets at most three
    exports a day, then a 429 page with Retry-After, and nothing more is mailed."""
    preferences_token = AddressTokens([SECRET], "preferences").seal(MARIE)
    assert site.client.get(f"/export/{preferences_token}").status_code == 400
    path = _export_path(site, MARIE)
    for _ in range(3):
        assert site.client.post(path, data=site.hidden(path)).status_code == 200
    refused = site.client.post(path, data=site.hidden(path))
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 3600
    assert "Trop de demandes" in text_of(refused.text)
    assert len(_exports(site)) == 3
