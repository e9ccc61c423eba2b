"""Email addresses: the one validation (email-validator) that config.yaml, `subscribers add` and
the web sign-up share, and the forms an address takes on the way out.

An internationalised domain (`contact@mairie-évry.fr`) goes on the wire in IDNA
(`contact@xn--mairie-vry-h7a.fr`), in the SMTP envelope and in the `To:` header alike, and is
shown to people as they typed it. A local part that is not ASCII (`éléonore@exemple.fr`) is
accepted, but only a relay offering SMTPUTF8 (RFC 6531) can carry it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from syndicator.i18n import N_


class AddressError(ValueError):
    """Not an address mail can be sent to; the message says why, in English (a `Text` the
    command line shows in the admin's language)."""


# email-validator's messages (in English only), so that the command line can translate them.
_KNOWN = (
    N_("An email address must have an @-sign."),
    N_("There must be something after the @-sign."),
    N_("There must be something before the @-sign."),
    N_("The part after the @-sign is not valid. It should have a period."),
    N_("An email address cannot have two periods in a row."),
    N_("An email address cannot have a period immediately before the @-sign."),
    N_("An email address cannot end with a period."),
    N_("An email address cannot start with a period."),
    N_("An email address cannot have a hyphen immediately after the @-sign."),
    N_("The email address is too long before the @-sign (1 character too many)."),
)
_CHARACTERS = re.compile(
    r"(The email address contains invalid characters before the @-sign"
    r"|The part after the @-sign contains invalid characters): (.+)\."
)


def _reason(message: str) -> str:
    """email-validator's message, as a `Text` when the catalogue has its French."""
    match = _CHARACTERS.fullmatch(message)
    if match and match[1].startswith("The email"):
        return N_(
            "The email address contains invalid characters before the @-sign: {characters}.",
            characters=match[2],
        )
    if match:
        return N_("The part after the @-sign contains invalid characters: {characters}.", characters=match[2])
    return next((known for known in _KNOWN if known == message), message)


@dataclass(frozen=True, slots=True)
class Checked:
    """A valid address and the forms it takes."""

    normalized: str  # Unicode (NFC), domain lower-case: `contact@mairie-évry.fr`
    wire: str  # the domain in IDNA: `contact@xn--mairie-vry-h7a.fr`


@lru_cache(maxsize=65_536)  # config.yaml is read again by each command and on each edit
def check(text: str) -> Checked:
    """`text` (surrounding spaces ignored) as a valid address, or `AddressError` saying why.

    No DNS look-up: an admin's config and a visitor's form are checked the same, offline."""
    try:
        info = validate_email(text.strip(), check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as error:
        raise AddressError(_reason(str(error))) from None
    if "=?" in info.local_part:  # valid in RFC 5322, but an encoded word to mail programs
        raise AddressError(
            N_(
                "The part before the @-sign holds '=?', which mail programs read as the start of an "
                "encoded word in the To: header."
            )
        )
    return Checked(
        normalized=info.normalized,
        wire=f"{info.local_part}@{info.ascii_domain}",
    )


def on_the_wire(address: str) -> str:
    """The address with its domain in IDNA, for the SMTP envelope and the `To:` header; the
    address as it is when it is ASCII already or is not valid (the relay then says what is
    wrong with it, for that message alone)."""
    address = address.strip()
    if address.isascii():
        return address
    try:
        return check(address).wire
    except AddressError:
        return address


def mailbox(address: str) -> str:
    """What tells two subscribers apart: the address on the wire, lower-case, so that
    `contact@mairie-évry.fr` and `contact@xn--mairie-vry-h7a.fr` (as the sign-up stores it) are
    one mailbox, and one subscriber."""
    return on_the_wire(address).lower()


def as_typed(address: str) -> str:
    """The address for people to read: an IDNA domain (`xn--…`) shown in Unicode again."""
    if "xn--" not in address.lower():
        return address
    try:
        info = validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return address
    return f"{info.local_part}@{info.domain}"


def needs_smtputf8(address: str) -> bool:
    """Whether the local part of `address` is not ASCII (the domain can always be made so)."""
    return not address.rpartition("@")[0].isascii()
