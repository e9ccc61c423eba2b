"""End to end in headless Chromium, JavaScript off: a digest written by `syndicator run --once`
to the outbox, its unsubscribe and preferences links opened and used as a subscriber would,
and the outcome seen from the command line (`subscribers list`, `digest preview`)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import lxml.html
import pytest
from playwright.sync_api import Browser, Page, expect

from syndicator.cli import main
from syndicator.config import load_config
from syndicator.templating import french_date
from syndicator.web import create_app

from .browser_support import chromium, listening_socket, serving
from .support import ITEMS, ROOT, item_text


@dataclass(frozen=True)
class Project:
    """A user's folder after `run --once`, its web app serving at `base_url`."""

    root: Path
    base_url: str

    def cli(self, *args: str) -> str:
        """Run `syndicator ARGS... --config <project>` in-process; what it printed."""
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main([*args, "--config", str(self.root / "config.yaml")])
        assert code == 0, err.getvalue()
        return out.getvalue()

    def listed(self, email: str) -> str:
        """The subscriber's row in `syndicator subscribers list`."""
        return next(row for row in self.cli("subscribers", "list").splitlines() if row.startswith(email))

    def digest_to(self, email: str) -> EmailMessage:
        """The digest the outbox transport wrote for that address."""
        for path in sorted((self.root / "outbox").glob("*.eml")):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if isinstance(message, EmailMessage) and message["To"].addresses[0].addr_spec == email:
                return message
        raise AssertionError(f"no digest to {email} in the outbox")


def link_in(message: EmailMessage, text: str) -> str:
    """The address of the link a reader clicks in the digest's HTML part."""
    body = message.get_body(("html",))
    assert body is not None
    document = lxml.html.fromstring(body.get_content())
    [href] = document.xpath("//a[normalize-space(.)=$text]/@href", text=text)
    return str(href)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The shipped config.yaml and items, `web.base_url` pointing at the server, after one
    `syndicator run --once`; then the web app serving the project."""
    root = tmp_path_factory.mktemp("browser")
    shutil.copytree(ITEMS, root / "items")
    sock, base_url = listening_socket()
    config = (ROOT / "config.yaml").read_text(encoding="utf-8")
    assert "base_url: http://127.0.0.1:8080" in config
    config = config.replace("base_url: http://127.0.0.1:8080", f"base_url: {base_url}")
    (root / "config.yaml").write_text(config, encoding="utf-8")
    site = Project(root, base_url)
    site.cli("run", "--once")
    with serving(create_app(load_config(root / "config.yaml")), sock):
        yield site


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context with JavaScript off: every flow must work without it."""
    context = browser.new_context(java_script_enabled=False, locale="fr-FR")
    try:
        yield context.new_page()
    finally:
        context.close()


def test_unsubscribe_link_of_a_digest_unsubscribes_in_the_browser(project: Project, page: Page) -> None:
    """The digest's "Se désabonner" link (also its List-Unsubscribe URL) opens a confirmation
    that changes nothing; its button unsubscribes, and `subscribers list` shows it."""
    email = "claire.martin@example.org"
    message = project.digest_to(email)
    link = link_in(message, "Se désabonner")
    assert link.startswith(project.base_url + "/unsubscribe/")
    assert f"<{link}>" in str(message["List-Unsubscribe"])

    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Se désabonner de la lettre d'information")
    expect(page.get_by_role("main")).to_contain_text(email)
    assert project.listed(email).endswith("  active")

    page.get_by_role("button", name="Me désabonner").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Vous êtes désabonné·e")
    assert project.listed(email).endswith("suppressed (unsubscribed)")


def test_preferences_changed_in_the_browser_shape_the_next_digest(project: Project, page: Page) -> None:
    """From the digest's "Gérer vos préférences" link: weekly, Santé, and Hazebrouck found
    through the search; saved, listed, and the next `digest preview` holds the new Santé news
    of Hazebrouck but not its Culture news."""
    email = "centre.social@example.org"  # config.yaml: monthly, every item
    page.goto(link_in(project.digest_to(email), "Gérer vos préférences"))
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
