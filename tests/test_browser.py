"""End to end in headless Chromium, JavaScript off: a digest written by `syndicator run --once`
to the outbox, its unsubscribe and preferences links opened and used as a subscriber would,
and the outcome seen from the command line (`subscribers list`, `digest preview`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from syndicator.templating import french_date

from .browser_support import Project, link_in, served_project
from .support import item_text


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The shipped project after one `syndicator run --once` (digests in `outbox/`), served."""
    with served_project(tmp_path_factory.mktemp("browser"), "run", "--once") as site:
        yield site


def test_unsubscribe_link_of_a_digest_unsubscribes_in_the_browser(project: Project, page: Page) -> None:
    """The digest's "Se désabonner" link (also its List-Unsubscribe URL) opens a confirmation
    that changes nothing; its button unsubscribes, and `subscribers list` shows it."""
    email = "claire.martin@example.org"
    message = project.mail_to(email)
    link = link_in(message, "Se désabonner")
    assert link.startswith(project.base_url + "/unsubscribe/")
    assert f"<{link}>" in str(message["List-Unsubscribe"])

    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Se désabonner de la lettre d’information")
    expect(page.get_by_role("main")).to_contain_text("cl•••@example.org")  # masked
    assert project.listed(email).endswith("  active")

    page.get_by_role("button", name="Me désabonner").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Vous êtes désabonné·e")
    assert project.listed(email).endswith("  unsubscribed (web page)")


def test_preferences_changed_in_the_browser_shape_the_next_digest(project: Project, page: Page) -> None:
    """From the digest's "Gérer vos préférences" link: weekly, Santé, and Hazebrouck found
    through the search; saved, listed, and the next `digest preview` holds the new Santé news
    of Hazebrouck but not its Culture news."""
    email = "centre.social@example.org"  # config.yaml: monthly, every item
    page.goto(link_in(project.mail_to(email), "Gérer vos préférences"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Vos préférences")
    expect(page.get_by_label("Chaque mois")).to_be_checked()
    page.get_by_label("Chaque semaine").check()
    page.get_by_label("Santé", exact=True).check()
    search = page.get_by_label("Chercher un autre territoire")
    search.fill("hazebrouck")
    search.press("Enter")  # the form's first button: the search, which saves nothing
    found = page.get_by_label("Hazebrouck — commune")
    expect(found).not_to_be_checked()
    expect(page.get_by_label("Chaque semaine")).to_be_checked()
    expect(page.get_by_label("Santé", exact=True)).to_be_checked()
    assert "monthly" in project.listed(email)
    found.check()
    page.get_by_role("button", name="Enregistrer mes préférences").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Préférences enregistrées")
    row = project.listed(email)
    assert (
        "weekly" in row and "thématiques: Santé; territoires: Hazebrouck" in row and "web preferences" in row
    )

    today = french_date(datetime.now(UTC))
    for slug, body, thematique in (
        ("une-action-de-sante-a-hazebrouck", "Une action de santé à Hazebrouck.", "Santé"),
        ("un-festival-a-hazebrouck", "Un festival à Hazebrouck.", "Culture"),
    ):
        fields = f"Thématiques: [{thematique}](#) [3]\n\nTerritoires : [Hazebrouck](#) [3]\n\n"
        text = item_text(f"https://www.irev.fr/actualites-0/{slug}", body=body, fields=fields)
        (project.root / "items" / f"{slug}.txt").write_text(
            text.replace("30 novembre 2021", today), encoding="utf-8"
        )
    project.cli("ingest")
    preview = project.cli("digest", "preview", email, "--out", str(project.root / "preview"))
    digest = (project.root / "preview" / "digest-centre-social-example-org.txt").read_text(encoding="utf-8")
    assert "(1 items)" in preview
    assert "Une action de santé à Hazebrouck" in digest and "festival" not in digest
    assert "chaque semaine" in digest
