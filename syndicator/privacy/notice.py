"""The RGPD notice (articles 13 and 14) as pages and emails show it, made from `privacy:`.

Pure: a `Notice` is built from the config alone. Templates get it as `privacy`: the short form
goes under the sign-up form, in the confirmation email and in every digest's footer, the whole
of it on `/confidentialite` (syndicator/web/privacy.py). The retention periods it states are
the ones `syndicator purge` applies (syndicator/privacy/retention.py), read from the same config.
"""

from __future__ import annotations

from dataclasses import dataclass

from syndicator.config.model import Config, RetentionConfig

POLICY_PATH = "/confidentialite"
NBSP = "\u00a0"  # before « : » and inside « »
NNBSP = "\u202f"  # before « ; », « ? », « ! »


def _years(count: int) -> str:
    return f"{count}{NBSP}an" + ("s" if count > 1 else "")


def _days(count: int) -> str:
    return f"{count}{NBSP}jour" + ("s" if count > 1 else "")


def retention_periods(retention: RetentionConfig) -> tuple[tuple[str, str], ...]:
    """What is kept and for how long, in French, one (data, period) pair each."""
    return (
        ("Votre adresse, votre nom et vos choix", "tant que vous êtes abonné ou abonnée"),
        (
            "La preuve de votre consentement (date, adresse IP, texte accepté)",
            f"la durée de l’abonnement, puis {_years(retention.consent_years)}",
        ),
        ("Une demande d’inscription", f"{_days(retention.signup_requests_days)} au plus"),
        (
            "Le détail des lettres envoyées (date et actualités)",
            f"{retention.ledger_months}{NBSP}mois, puis seulement des totaux par mois, sans adresse",
        ),
        (
            "Une adresse désabonnée ou refusée par sa messagerie, pour ne plus lui écrire",
            f"{_years(retention.suppressions_years)}, puis seulement sous forme d’empreinte chiffrée, "
            "illisible",
        ),
    )


@dataclass(frozen=True, slots=True)
class Notice:
    """The privacy notice; `complete` is False while a key the RGPD requires is unset."""

    controller: str
    postal_address: str
    contact: str  # as shown: an address or a URL
    contact_url: str  # mailto: or the URL
    purpose: str
    url: str  # the full notice
    version: str
    periods: tuple[tuple[str, str], ...]
    complete: bool

    @property
    def short(self) -> str:
        """The short form, in plain text (emails' text parts)."""
        contact = f" en écrivant à {self.contact}" if self.contact else ""
        return (
            f"Vos données sont traitées par {self.controller} pour {self.purpose}. Vous pouvez y "
            f"accéder, les faire rectifier ou effacer et vous opposer à leur traitement{contact}. "
            f"Durées de conservation et vos droits{NBSP}: {self.url}"
        )


DEFAULT_PURPOSE = (
    "vous envoyer {newsletter}, selon les thématiques, territoires et types d’actualités que vous "
    "avez choisis"
)


def notice(config: Config) -> Notice:
    """The notice of this config; the controller defaults to the site's title."""
    privacy = config.privacy
    contact = privacy.dpo_contact or ""
    if contact and not contact.startswith(("http://", "https://")):
        contact_url = f"mailto:{contact}"
    else:
        contact_url = contact
    url = privacy.policy_url or config.web.base_url.rstrip("/") + POLICY_PATH
    return Notice(
        controller=privacy.controller or config.site.title,
        postal_address=privacy.postal_address or "",
        contact=contact,
        contact_url=contact_url,
        purpose=(privacy.purpose or DEFAULT_PURPOSE.format(newsletter=config.site.newsletter))
        .strip()
        .rstrip("."),
        url=url,
        version=privacy.notice_version,
        periods=retention_periods(privacy.retention),
        complete=not privacy.missing(),
    )
