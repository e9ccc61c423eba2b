"""End to end in headless Chromium, JavaScript off: a visitor fills the sign-up form (with the
territoire search), finds the confirmation email in the outbox folder, follows its link,
confirms, and appears in `syndicator subscribers list` with the interests they chose."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import lxml.html
import pytest
from playwright.sync_api import Browser, Page, expect

from syndicator.cli import main
from syndicator.config import load_config
from syndicator.web import create_app

from .browser_support import chromium, listening_socket, serving
from .support import ITEMS, ROOT

LEA = "lea.petit@exemple.fr"


@dataclass(frozen=True)
class Project:
    """A user's folder with its items ingested, its web app serving at `base_url`."""

    root: Path
    base_url: str

    def cli(self, *args: str) -> str:
        """Run `syndicator ARGS... --config <project>` in-process; what it printed."""
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main([*args, "--config", str(self.root / "config.yaml")])
        assert code == 0, err.getvalue()
        return out.getvalue()

    def confirmation_to(self, email: str) -> EmailMessage:
        """The confirmation email the outbox transport wrote for that address."""
        for path in sorted((self.root / "outbox").glob("*-signup-*.eml")):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if isinstance(message, EmailMessage) and message["To"].addresses[0].addr_spec == email:
                return message
        raise AssertionError(f"no confirmation email to {email} in the outbox")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The shipped config.yaml (mailing to `outbox/`) and items, `web.base_url` pointing at the
    server; the items ingested, so that the form offers their terms."""
    root = tmp_path_factory.mktemp("browser-signup")
    shutil.copytree(ITEMS, root / "items")
    sock, base_url = listening_socket()
    config = (ROOT / "config.yaml").read_text(encoding="utf-8")
    assert "base_url: http://127.0.0.1:8080" in config
    config = config.replace("base_url: http://127.0.0.1:8080", f"base_url: {base_url}")
    (root / "config.yaml").write_text(config, encoding="utf-8")
    site = Project(root, base_url)
    site.cli("ingest")
    with serving(create_app(load_config(root / "config.yaml")), sock):
        yield site


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context with JavaScript off: the sign-up must work without it."""
    context = browser.new_context(java_script_enabled=False, locale="fr-FR")
    try:
        yield context.new_page()
    finally:
        context.close()


def test_sign_up_confirmed_from_the_outbox_appears_in_subscribers_list(project: Project, page: Page) -> None:
    """Fill /subscribe (a territoire found by the search), send it, open the link of the email
    the outbox holds, press the button: `subscribers list` shows the address and its choices."""
    page.goto(project.base_url + "/subscribe")
    expect(page.get_by_role("heading", level=1)).to_have_text("S'inscrire à la lettre d'information")
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
    page.get_by_label("J'accepte de recevoir par courriel").check()
    page.get_by_role("button", name="M'inscrire").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Plus qu'une étape : confirmez votre adresse")
    expect(page.get_by_role("status")).to_contain_text(LEA)
    assert LEA not in project.cli("subscribers", "list")

    message = project.confirmation_to(LEA)
    assert message["Subject"] == "Confirmez votre inscription à la lettre d'information IREV"
    html = message.get_body(("html",))
    assert html is not None
    [link] = lxml.html.fromstring(html.get_content()).xpath(
        "//a[normalize-space(.)='Confirmer mon inscription']/@href"
    )
    assert link.startswith(project.base_url + "/subscribe/confirm/")

    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirmer votre inscription")
    expect(page.get_by_role("main")).to_contain_text("Hem")
    assert LEA not in project.cli("subscribers", "list")  # opening the link confirms nothing
    page.get_by_role("button", name="Confirmer mon inscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Inscription confirmée")
    expect(page.get_by_role("status")).to_contain_text(LEA)

    [row] = [line for line in project.cli("subscribers", "list").splitlines() if line.startswith(LEA)]
    assert "Léa Petit" in row and " daily " in row and "web sign-up" in row
    assert "thématiques: Éducation; territoires: Hem" in row
    assert row.endswith("active")
