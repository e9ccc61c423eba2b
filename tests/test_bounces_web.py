"""What a person whose address bounced or complained sees on their preferences page, and that
saving preferences there does not lift a complaint (only a new confirmed sign-up does)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syndicator.db.bounces import COMPLAINT, HARD, BounceRecords
from syndicator.db.tokens import AddressTokens

from .web_support import SECRET, WebSite, built_project, served, text_of

MARIE = "marie.dupont@example.org"  # listed in the shipped config.yaml
NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_project(tmp_path_factory.mktemp("bounces-web"))


@pytest.fixture
def site(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebSite]:
    monkeypatch.setenv("SYNDICATOR_SECRET", SECRET)
    yield from served(WebSite, built, tmp_path / "site")


def _preferences(site: WebSite) -> str:
    page = site.client.get(f"/preferences/{AddressTokens([SECRET], 'preferences').seal(MARIE)}")
    assert page.status_code == 200
    return text_of(page.text)


def test_a_complaint_is_explained_and_saving_preferences_does_not_lift_it(site: WebSite) -> None:
    """After a complaint the page says so in French and points to a new sign-up, not to us;
    saving the form keeps the address suppressed."""
    records = BounceRecords(site.store)
    records.suppress(MARIE, COMPLAINT, NOW, status=None, diagnostic="Feedback-Type: abuse")
    text = _preferences(site)
    assert "Vous avez signalé notre lettre comme indésirable" in text and "Écrivez-nous" not in text
    page = site.client.get(f"/preferences/{AddressTokens([SECRET], 'preferences').seal(MARIE)}")
    form = site.hidden(f"/preferences/{AddressTokens([SECRET], 'preferences').seal(MARIE)}")
    site.client.post(page.url.path, data={**form, "action": "save", "frequency": "weekly"})
    entry = records.suppression(MARIE)
    assert entry is not None and entry.reason == COMPLAINT


def test_a_bounce_says_the_messages_were_refused(site: WebSite) -> None:
    """After a hard bounce the page says our messages were refused and sending is paused."""
    BounceRecords(site.store).suppress(MARIE, HARD, NOW, status="5.1.1", diagnostic="User unknown")
    assert "ont été refusés par votre messagerie" in _preferences(site)
