"""Parsing of the French dates the source website writes, into values aware of the site's zone.

Handles `Vendredi 19 novembre 2021 - 09:00`, `1er décembre 2021`, `05/04/2023 - 14:00`, times as
`09:00`, `9h`, `9h30`, and ranges `Du ... au ...` where the start may omit what the end gives
(year, month). Local times are resolved through zoneinfo: a time that does not exist (the hour
skipped in spring) is read with the winter offset, an ambiguous one (the hour repeated in autumn)
as its first occurrence, which is what the website's editors meant. The website writes local
dates: the zone is the site's (`site.timezone`), given by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from syndicator.i18n import N_

# The zone `site.timezone` defaults to: the one place that names it. Callers with a config
# pass the site's zone; this default serves library use without one.
DEFAULT_ZONE = ZoneInfo("Europe/Paris")

MONTHS = {
    "janvier": 1, "fevrier": 2, "février": 2, "mars": 3, "avril": 4, "mai": 5, "juin": 6,
    "juillet": 7, "aout": 8, "août": 8, "septembre": 9, "octobre": 10, "novembre": 11,
    "decembre": 12, "décembre": 12,
    # abbreviations seen in French typography
    "janv": 1, "fevr": 2, "févr": 2, "avr": 4, "juil": 7, "sept": 9, "oct": 10, "nov": 11,
    "dec": 12, "déc": 12,
}  # fmt: skip

_WEEKDAY = r"(?:lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche)"
_TIME = r"(?P<hour>\d{1,2})\s*(?:[:h]\s*(?P<minute>\d{2})?|heures?)"
_WORD_DATE = re.compile(
    rf"^(?:{_WEEKDAY}\.?\s+)?(?:le\s+)?(?P<day>\d{{1,2}})\s*(?:er)?\s+(?P<month>[^\W\d_]+)\.?"
    rf"(?:\s+(?P<year>\d{{4}}))?(?:\s*(?:-|à|,)?\s*{_TIME})?$",
    re.IGNORECASE,
)
_NUMERIC_DATE = re.compile(
    rf"^(?P<day>\d{{1,2}})/(?P<month>\d{{1,2}})/(?P<year>\d{{4}})(?:\s*(?:-|à|,)?\s*{_TIME})?$",
    re.IGNORECASE,
)
_TIME_ONLY = re.compile(rf"^(?:à\s+)?{_TIME}$", re.IGNORECASE)
_RANGE = re.compile(r"^(?:du\s+)?(?P<start>.+?)\s+(?:au|jusqu'au|jusqu’au)\s+(?P<end>.+)$", re.IGNORECASE)


class DateSyntaxError(ValueError):
    """A French date the parser does not understand; the caller adds the file and line."""


@dataclass(frozen=True, slots=True)
class _Parts:
    day: int
    month: int | None
    year: int | None
    clock: time | None


def _clean(text: str) -> str:
    return " ".join(text.replace("\u00a0", " ").split()).strip(" .;")


def _clock(match: re.Match[str]) -> time | None:
    if match.group("hour") is None:
        return None
    hour, minute = int(match.group("hour")), int(match.group("minute") or 0)
    if hour > 23 or minute > 59:
        raise DateSyntaxError(N_("no such time of day: {hour:02d}:{minute:02d}", hour=hour, minute=minute))
    return time(hour, minute)


def _parts(text: str) -> _Parts:
    if match := _NUMERIC_DATE.match(text):
        return _Parts(int(match["day"]), int(match["month"]), int(match["year"]), _clock(match))
    if match := _WORD_DATE.match(text):
        month_name = match["month"].lower()
        if month_name not in MONTHS:
            raise DateSyntaxError(N_("unknown month {month!r}", month=match["month"]))
        year = int(match["year"]) if match["year"] else None
        return _Parts(int(match["day"]), MONTHS[month_name], year, _clock(match))
    raise DateSyntaxError(N_("not a French date: {text!r}", text=text))


def _to_date(parts: _Parts) -> date:
    if parts.month is None or parts.year is None:
        raise DateSyntaxError(N_("the date has no year"))
    try:
        return date(parts.year, parts.month, parts.day)
    except ValueError as exc:
        raise DateSyntaxError(
            N_("no such day: {day}/{month}/{year}", day=parts.day, month=parts.month, year=parts.year)
        ) from exc


def localize(day: date, clock: time | None, zone: ZoneInfo = DEFAULT_ZONE) -> datetime:
    """`day` at `clock` (midnight when None) in `zone`, normalised to a real instant."""
    naive = datetime.combine(day, clock or time(0, 0))
    # Going through UTC turns a time skipped in spring into the instant the wall clock showed.
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)


def parse_date(text: str) -> date:
    """A calendar date such as `30 novembre 2021`, `1er mars 2022` or `05/04/2023`."""
    return _to_date(_parts(_clean(text)))


def parse_datetime(text: str, zone: ZoneInfo = DEFAULT_ZONE) -> datetime:
    """A date with an optional time, such as `Vendredi 19 novembre 2021 - 09:00`, in `zone`."""
    parts = _parts(_clean(text))
    return localize(_to_date(parts), parts.clock, zone)


def parse_event(text: str, zone: ZoneInfo = DEFAULT_ZONE) -> tuple[datetime, datetime | None]:
    """An event's `Dates:` value in `zone`: one date, or a `Du ... au ...` range giving start and end."""
    cleaned = _clean(text)
    match = _RANGE.match(cleaned)
    if match is None:
        return parse_datetime(cleaned, zone), None
    end_text, start_text = match["end"], match["start"]
    end = _parts(end_text)
    end_day = _to_date(end)
    if time_only := _TIME_ONLY.match(start_text):
        start = _Parts(end.day, end.month, end.year, _clock(time_only))
    else:
        start = _parts(start_text)
    start_day = _to_date(_Parts(start.day, start.month or end.month, start.year or end.year, start.clock))
    if start.year is None and start_day > end_day:
        # "Du 28 décembre au 3 janvier 2023": the start lies in the previous year.
        start_day = start_day.replace(year=start_day.year - 1)
    start_at = localize(start_day, start.clock, zone)
    end_at = localize(end_day, end.clock, zone)
    if end_at < start_at:
        raise DateSyntaxError(N_("the event ends before it starts"))
    return start_at, end_at


def parse_modified(text: str, zone: ZoneInfo = DEFAULT_ZONE) -> datetime:
    """The `modifié le dd/mm/yyyy - hh:mm` stamp of the source URL line, in `zone`."""
    return parse_datetime(text, zone)
