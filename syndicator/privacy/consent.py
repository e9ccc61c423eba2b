"""The consent text of the sign-up form, its version, and the archive of every text agreed to.

The text is a template admins may edit (`templates/web/subscribe_consent.html`), which declares
its version (`{% set version = "2026-11-26" %}`). The version a proof of consent names is that
declared version followed by a fingerprint of the exact text shown (`2026-11-26+3f9a1c2b`): a
text changed without a new version still gets a name of its own. The first time a text is
agreed to, it is kept in the store (`state` table, key `consent:<version>`), so that each
proof can be read back with the very words it refers to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from jinja2 import Environment
from markupsafe import Markup

from syndicator.config.model import SiteConfig
from syndicator.db.store import Store

CONSENT_TEMPLATE = "web/subscribe_consent.html"
VERSION_LENGTH = 40  # the declared part; the column holds 50 with the fingerprint
STATE_PREFIX = "consent:"


@dataclass(frozen=True, slots=True)
class Wording:
    """The consent text as the form shows it, and the version a proof names."""

    version: str
    html: Markup


def consent_wording(env: Environment, site: SiteConfig) -> Wording:
    """The current consent text, rendered for `site`, and its version."""
    module = env.get_template(CONSENT_TEMPLATE).make_module({"site": site})
    html = str(module).strip()
    declared = " ".join(str(getattr(module, "version", "")).split())[:VERSION_LENGTH]
    fingerprint = hashlib.sha256(html.encode()).hexdigest()[:8]
    return Wording(f"{declared}+{fingerprint}" if declared else fingerprint, Markup(html))


def archive(store: Store, wording: Wording) -> None:
    """Keep the text of this version in the store, once (the first text under a name stays)."""
    store.ensure_state(STATE_PREFIX + wording.version, lambda: str(wording.html))


def archived(store: Store, version: str) -> str | None:
    """The text of a version a proof of consent names, if it was kept."""
    return store.get_state(STATE_PREFIX + version)
