"""Crontab times (`minute hour day month weekday`): checked field by field, read as cron reads them.

`cron_fields` turns a line into the arguments of APScheduler's `CronTrigger`, or raises
`ValueError` with a message an admin can act on (the field, the value, what to write instead).
Every field is also handed to APScheduler's own parser, so what passes here is what runs.

Two things differ from feeding the line to `CronTrigger.from_crontab`:
- cron numbers weekdays from Sunday (0, and 7 too), APScheduler 3 from Monday = 0: the weekday
  field is rewritten with day names, so `1-5` is Monday to Friday, as in crontab(5);
- names are English abbreviations only; a French one (`lundi`, `lun`, `janvier`) is refused
  with the English name to write instead, rather than read in a second dialect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC

from syndicator.folding import fold
from syndicator.i18n import N_, text_of

DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron's numbers: sun = 0 (and 7)
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_FRENCH_DAYS = ("dimanche", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi")
_FRENCH_MONTHS = (
    "janvier", "fevrier", "mars", "avril", "mai", "juin",
    "juillet", "aout", "septembre", "octobre", "novembre", "decembre",
)  # fmt: skip
_PART = re.compile(r"^(?:(?P<star>\*)|(?P<first>\w+)(?:-(?P<last>\w+))?)(?:/(?P<step>\w+))?$")
EXAMPLE = N_("'30 7 * * mon' (Mondays at 07:30)")


@dataclass(frozen=True, slots=True)
class _Field:
    arg: str  # CronTrigger's argument
    label: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_named: int = 0  # the number of names[0]


_FIELDS = (
    _Field("minute", N_("minute"), 0, 59),
    _Field("hour", N_("hour"), 0, 23),
    _Field("day", N_("day of the month"), 1, 31),
    _Field("month", N_("month"), 1, 12, MONTHS, 1),
    _Field("day_of_week", N_("weekday"), 0, 7, DAYS, 0),
)


def _plain(word: str) -> str:
    """Lower case without accents or a final dot: 'Févr.' -> 'fevr'."""
    return fold(word.rstrip("."))


def _french(field: _Field, word: str) -> str | None:
    """The English name for a French day or month name (whole, or its first letters)."""
    french = _FRENCH_DAYS if field.names is DAYS else _FRENCH_MONTHS if field.names is MONTHS else ()
    plain = _plain(word)
    found = [index for index, name in enumerate(french) if len(plain) >= 3 and name.startswith(plain)]
    return field.names[found[0]] if len(found) == 1 else None


def _value(field: _Field, word: str, *, end: bool = False) -> int:
    """The number a field's value stands for; `end` reads 'sun' as 7, so 'fri-sun' works."""
    if word.isascii() and word.isdigit():
        number = int(word)
        if not field.low <= number <= field.high:
            raise ValueError(
                N_("{label} {number} is out of range {low}-{high}", label=field.label, number=number,
                   low=field.low, high=field.high)
            )  # fmt: skip
        return number
    lower = word.lower()
    if lower in field.names:
        number = field.names.index(lower) + field.first_named
        return 7 if end and field.names is DAYS and number == 0 else number
    english = _french(field, word)
    if english is not None:
        number = field.names.index(english) + field.first_named
        raise ValueError(
            N_("'{word}' is French; cron takes English {label} names: write '{english}' (or {number})",
               word=word, label=field.label, english=english, number=number)
        )  # fmt: skip
    if field.names:
        listed = f"{field.names[0]}…{field.names[-1]}"
        raise ValueError(
            N_("'{word}' is not a {label}; write {listed} or {low}-{high}", word=word, label=field.label,
               listed=listed, low=field.low, high=field.high)
        )  # fmt: skip
    raise ValueError(
        N_("{label} '{word}' is not a number ({low}-{high})", label=field.label, word=word, low=field.low,
           high=field.high)
    )  # fmt: skip


def _values(field: _Field, part: str) -> set[int]:
    """The numbers one comma-separated part of a field names."""
    if not part:
        raise ValueError(N_("the {label} field has an empty value between commas", label=field.label))
    if field.arg == "day" and part.lower() == "last":
        return set()  # APScheduler's 'last day of the month': kept as it is
    match = _PART.match(part)
    if not match:
        raise ValueError(
            N_("{label} '{part}' is not a value, a range a-b or a step */n", label=field.label, part=part)
        )
    step = 1
    if match["step"] is not None:
        if not match["step"].isdigit() or int(match["step"]) == 0:
            raise ValueError(
                N_(
                    "{label} '{part}': the step after '/' must be a number of 1 or more",
                    label=field.label,
                    part=part,
                )
            )
        step = int(match["step"])
    if match["star"]:
        first, last = field.low, field.high
    else:
        first = _value(field, match["first"])
        if match["last"] is not None:
            last = _value(field, match["last"], end=True)
        else:
            last = field.high if match["step"] is not None else first
    if first > last:
        raise ValueError(
            N_(
                "{label} range '{part}' goes backwards; write the smaller value first",
                label=field.label,
                part=part,
            )
        )
    return set(range(first, last + 1, step))


def cron_fields(expression: str) -> dict[str, str]:
    """The `CronTrigger` arguments of a crontab time; ValueError saying what is wrong and how
    to write it."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(
            N_(
                "{expression!r} has {count} fields; a cron time has five, minute hour day month weekday, "
                "like {example}",
                expression=expression, count=len(parts), example=EXAMPLE,
            )
        )  # fmt: skip
    arguments: dict[str, str] = {}
    for field, text in zip(_FIELDS, parts, strict=True):
        days: set[int] = set()
        try:
            for part in text.split(","):
                days |= _values(field, part)
        except ValueError as exc:
            raise ValueError(
                N_("{expression!r}: {problem}", expression=expression, problem=text_of(exc))
            ) from None
        # cron's Sunday is 0 or 7; APScheduler's names are unambiguous, its numbers are not.
        named = field.names is DAYS and text != "*"
        arguments[field.arg] = ",".join(DAYS[d] for d in sorted({d % 7 for d in days})) if named else text
    # Imported here: APScheduler costs 45 ms that a command with no schedule to check (`digest
    # send`: bench/rss2email.py, at 0 ms) need not pay.
    from apscheduler.triggers.cron import CronTrigger  # noqa: PLC0415

    try:
        CronTrigger(**arguments, timezone=UTC)
    except ValueError as exc:  # something the checks above let through, in APScheduler's words
        raise ValueError(f"{expression!r}: {exc}") from None
    return arguments
