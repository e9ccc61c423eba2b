"""In Debian's Chromium: the pages keep their look under their strict Content-Security-Policy,
and an unsubscribed reader subscribes again only through the explicit button."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from .browser_support import Project, link_in, served_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The shipped project after one `syndicator run --once` (digests in `outbox/`), served."""
    with served_project(tmp_path_factory.mktemp("browser-hardening"), "run", "--once") as site:
        yield site


def test_pages_keep_their_styles_under_the_content_security_policy(project: Project, page: Page) -> None:
    """The sign-up page's own <style> applies (the grey background, the blue header) though its
    policy is `default-src 'none'`, and the browser reports no blocked style."""
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: blocked.append(message.text) if "Content Security" in message.text else None,
    )
    response = page.goto(project.base_url + "/subscribe")
    assert response is not None
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    expect(page.locator("body")).to_have_css("background-color", "rgb(238, 241, 244)")
    expect(page.locator("header")).to_have_css("background-color", "rgb(0, 89, 138)")
    assert blocked == []


def test_an_unsubscribed_reader_resubscribes_with_the_button(project: Project, page: Page) -> None:
    """From the digest's unsubscribe link: the address shows masked, "Me désabonner" then
    "Me réabonner" bring the subscriber back, as `subscribers list` shows."""
    email = "claire.martin@example.org"
    page.goto(link_in(project.mail_to(email), "Se désabonner"))
    expect(page.get_by_role("main")).to_contain_text("cl•••@example.org")
    expect(page.get_by_role("main")).not_to_contain_text(email)
    page.get_by_role("button", name="Me désabonner").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Vous êtes désabonné·e")
    assert project.listed(email).endswith("  unsubscribed (web page)")
    expect(page.get_by_role("link", name="préférences")).to_have_count(0)
    page.get_by_role("button", name="Me réabonner").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Vous êtes réabonné·e")
    assert project.listed(email).endswith("  active")
