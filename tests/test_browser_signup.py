"""End to end in headless Chromium, JavaScript off: a visitor fills the sign-up form (with the
territoire search), finds the confirmation email in the outbox folder, follows its link,
confirms, and appears in `syndicator subscribers list` with the interests they chose."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from .browser_support import Project, link_in, served_project

LEA = "lea.petit@exemple.fr"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The shipped project (mailing to `outbox/`), its items ingested so that the form offers
    their terms, served."""
    with served_project(tmp_path_factory.mktemp("browser-signup"), "ingest") as site:
        yield site


def test_sign_up_confirmed_from_the_outbox_appears_in_subscribers_list(project: Project, page: Page) -> None:
    """Fill /subscribe (a territoire found by the search), send it, open the link of the email
    the outbox holds, press the button: `subscribers list` shows the address and its choices."""
    page.goto(project.base_url + "/subscribe")
    expect(page.get_by_role("heading", level=1)).to_have_text("S’inscrire à la lettre d’information")
    page.get_by_label("Adresse électronique").fill(LEA)
    page.get_by_label("Nom (facultatif)").fill("Léa Petit")
    page.get_by_label("Chaque jour").check()
    page.get_by_label("Éducation", exact=True).check()
    page.get_by_label("Chercher un autre territoire").fill("Hem")
    page.get_by_role("button", name="Rechercher").click()
    expect(page.get_by_text("Territoires trouvés pour « Hem »")).to_be_visible()
    expect(page.get_by_label("Adresse électronique")).to_have_value(LEA)  # kept across the search
    expect(page.get_by_label("Éducation", exact=True)).to_be_checked()
    page.get_by_label("Hem — commune", exact=True).check()
    page.get_by_label("J’accepte de recevoir par courriel").check()
    page.get_by_role("button", name="M’inscrire").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Plus qu’une étape : confirmez votre adresse")
    expect(page.get_by_role("status")).to_contain_text(LEA)
    assert LEA not in project.cli("subscribers", "list")

    message = project.mail_to(LEA, "*-signup-*.eml")
    assert message["Subject"] == "Confirmez votre inscription à la lettre d’information IREV"
    link = link_in(message, "Confirmer mon inscription")
    assert link.startswith(project.base_url + "/subscribe/confirm/")

    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirmer votre inscription")
    expect(page.get_by_role("main")).to_contain_text("Hem")
    assert LEA not in project.cli("subscribers", "list")  # opening the link confirms nothing
    page.get_by_role("button", name="Confirmer mon inscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Inscription confirmée")
    expect(page.get_by_role("status")).to_contain_text(LEA)

    row = project.listed(LEA)
    assert "Léa Petit" in row and " daily " in row and "web sign-up" in row
    assert "thématiques: Éducation; territoires: Hem" in row
    assert row.endswith("active")
