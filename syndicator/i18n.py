"""The admin's language: the command line's own messages and `--help`, in French when the locale is.

Messages are written in English in the code, each wrapped in `_()` (`from .i18n import _`); their
French is in `syndicator/locale/fr/LC_MESSAGES/syndicator.po`, compiled by babel into a `.mo`
when the wheel is built (setup.py), or from the `.po` itself when running from a checkout. The
language is read as gettext reads it, from LANGUAGE, LC_ALL, LC_MESSAGES and LANG, the first one
set: `fr_FR.UTF-8`, `fr_BE`, `fr` give French; anything else (`C.UTF-8` in CI, unset) English.

Messages made below the command line (a config problem, a report's summary, an explain reason)
are also logged by the daemon, and logs stay English whatever the locale: those are built with
`N_(message, **fields)`, a `Text` that is the English string everywhere (logs, `str()`, JSON) and
that remembers its message and fields, so that the command line shows it with `shown()` in the
admin's language.
"""

from __future__ import annotations

import gettext
import io
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

DOMAIN = "syndicator"
LOCALES = Path(__file__).resolve().parent / "locale"
_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
_CODE = re.compile(r"[a-z]{2,3}(?:_[A-Z]{2})?")


def languages() -> tuple[str, ...]:
    """The languages asked for, most wanted first, as gettext reads them from the environment."""
    for variable in _VARIABLES:
        value = os.environ.get(variable)
        if value:
            return tuple(part for part in value.split(":") if part)
    return ()


def _codes(language: str) -> list[str]:
    """`fr_FR.UTF-8@euro` → `fr_FR`, `fr`: the catalogue folders that may serve it."""
    base = language.split(".", maxsplit=1)[0].split("@", maxsplit=1)[0]
    if not _CODE.fullmatch(base):  # `C`, `POSIX`, or anything that is no language (`../x`)
        return []
    return [base, base.split("_")[0]] if "_" in base else [base]


@lru_cache(maxsize=8)
def catalogue(wanted: tuple[str, ...]) -> gettext.NullTranslations:
    """The translations for the first of `wanted` that has a catalogue; none: messages as written."""
    for language in wanted:
        for code in _codes(language):
            folder = LOCALES / code / "LC_MESSAGES"
            compiled, source = folder / f"{DOMAIN}.mo", folder / f"{DOMAIN}.po"
            if compiled.is_file():
                with compiled.open("rb") as file:
                    return gettext.GNUTranslations(file)
            if source.is_file():  # a checkout: nothing was built
                # Imported here: babel costs a tenth of `syndicator --help`'s start, and a wheel has the .mo.
                from babel.messages.mofile import write_mo  # noqa: PLC0415
                from babel.messages.pofile import read_po  # noqa: PLC0415

                with source.open("rb") as file:
                    buffer = io.BytesIO()
                    write_mo(buffer, read_po(file, locale=code, domain=DOMAIN))
                buffer.seek(0)
                return gettext.GNUTranslations(buffer)
    return gettext.NullTranslations()


def _(message: str) -> str:
    """`message` in the admin's language."""
    return catalogue(languages()).gettext(message)


class Text(str):
    """English text that keeps its message and fields, for a front door to show translated."""

    msgid: str
    fields: dict[str, Any]

    def __new__(cls, msgid: str, fields: dict[str, Any]) -> Text:
        text = super().__new__(cls, msgid.format(**fields) if fields else msgid)
        text.msgid = msgid
        text.fields = fields
        return text

    def __reduce__(self) -> tuple[Any, ...]:  # pickled and copied whole: its fields too
        return (Text, (self.msgid, self.fields))

    def translated(self) -> str:
        """The text in the admin's language; fields that are `Text` too are translated."""
        fields = {
            name: shown(value) if isinstance(value, str) else value for name, value in self.fields.items()
        }
        message = _(self.msgid) if self.msgid else ""  # gettext("") is the catalogue's header
        try:
            return message.format(**fields) if fields else message
        except (KeyError, IndexError, ValueError):  # a translation with a mistyped field: English
            return self.msgid.format(**fields)


def N_(message: str, **fields: Any) -> Text:
    """`message.format(**fields)`, in English, that `shown()` puts in the admin's language."""
    return Text(message, fields)


def joined(separator: str, parts: Sequence[str]) -> str:
    """`separator.join(parts)`, a `Text` whose parts (and separator, if a `Text`) are shown translated."""
    fields: dict[str, Any] = {f"part{index}": part for index, part in enumerate(parts)}
    fields["separator"] = separator
    return (
        Text("{separator}".join(f"{{part{index}}}" for index in range(len(parts))), fields) if parts else ""
    )


def text_of(error: BaseException) -> str:
    """An exception's message, the `Text` it was raised with if it was (`str()` gives English)."""
    first = error.args[0] if len(error.args) == 1 else None
    return first if isinstance(first, Text) else str(error)


def shown(text: str) -> str:
    """`text` as the admin reads it: a `Text` translated, any other string as it is."""
    return text.translated() if isinstance(text, Text) else text
