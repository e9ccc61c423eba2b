"""The Jinja2 environment for every page and email: admins' templates first, then the shipped ones.

Templates live in `templates/` beside config.yaml (the `templates` key); a file missing there is
taken from the templates shipped with syndicator: inside the installed package (a wheel holds the
repository's `templates/` as `syndicator/templates`), else, in a source checkout or an editable
install, the repository's `templates/` itself. Autoescape is on. French formatting of dates
and sizes comes from babel, as filters; French typography from `typography`: the `typo` filter
each shipped template wraps its output in, `de` and `a` before a noun with its article, and
typographic apostrophes in the templates' own text (an extension, applied when they compile).
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache, partial
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.numbers import format_decimal
from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateSyntaxError,
    pass_environment,
)
from jinja2.filters import do_wordwrap

from syndicator.errors import Problem
from syndicator.parsing.french_dates import DEFAULT_ZONE
from syndicator.typography import Apostrophes, a, capfirst, de, french_day, french_time, typo


def shipped_templates() -> Path:
    """The folder of the default templates: the package's own in a wheel, else the checkout's."""
    packaged = resources.files("syndicator") / "templates"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "templates"


SHIPPED = shipped_templates()
_PLAIN = Environment(autoescape=False)  # what cached wrapping runs in: plain text, "\n" lines
LOCALE = "fr_FR"


def french_date(value: date | datetime | None, style: str = "long", *, zone: ZoneInfo = DEFAULT_ZONE) -> str:
    """`30 novembre 2021`, `1er mars 2022` (long), `mardi 30 novembre 2021` (full); an instant
    shows its day in `zone` (the site's)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(zone).date()
    return french_day(value, style)


def french_datetime(value: datetime | None, *, zone: ZoneInfo = DEFAULT_ZONE) -> str:
    """`vendredi 19 novembre 2021 à 9 h`, `lundi 1er mars 2021 à 14 h 30`, in `zone` (the site's)."""
    if value is None:
        return ""
    local = value.astimezone(zone)
    return f"{french_day(local.date(), 'full')} à {french_time(local.time())}"


def french_size(size: int | None) -> str:
    """`1,8 Mo`, `350 Ko`: the units the website uses, 1 Ko being 1024 octets."""
    if size is None:
        return ""
    for unit, factor in (("Go", 1024**3), ("Mo", 1024**2), ("Ko", 1024)):
        if size >= factor:
            return f"{format_decimal(size / factor, format='#,##0.#', locale=LOCALE)}\u00a0{unit}"
    return f"{size}\u00a0octets"


@lru_cache(maxsize=65536)
def _wrapped(
    text: str, width: int, break_long_words: bool, wrapstring: str | None, break_on_hyphens: bool
) -> str:
    return str(do_wordwrap(_PLAIN, text, width, break_long_words, wrapstring, break_on_hyphens))


@pass_environment
def cached_wordwrap(  # noqa: PLR0917 -- the positional signature of Jinja's wordwrap
    env: Environment,
    text: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    """Jinja's `wordwrap`, remembered: the same item text is wrapped for thousands of digests."""
    if type(text) is not str or env.newline_sequence != _PLAIN.newline_sequence:
        return str(do_wordwrap(env, text, width, break_long_words, wrapstring, break_on_hyphens))
    return _wrapped(text, width, break_long_words, wrapstring, break_on_hyphens)


def environment(override: Path | None, zone: ZoneInfo = DEFAULT_ZONE) -> Environment:
    """The template environment, looking in `override` first, then in the shipped templates;
    its date filters show instants in `zone` (the site's)."""
    folders = [override] if override is not None and override != SHIPPED else []
    loader = ChoiceLoader([FileSystemLoader([str(f) for f in folders]), FileSystemLoader(str(SHIPPED))])
    env = Environment(
        loader=loader,
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        extensions=[Apostrophes],
    )
    env.filters.update(
        french_date=partial(french_date, zone=zone), french_datetime=partial(french_datetime, zone=zone)
    )
    env.filters.update(french_size=french_size)
    env.filters.update(typo=typo, de=de, a=a, capfirst=capfirst)
    env.filters["wordwrap"] = cached_wordwrap
    return env


def template_problems(env: Environment) -> list[Problem]:
    """Syntax errors in every template the environment can load, located."""
    problems = []
    for name in env.list_templates(filter_func=lambda n: not n.startswith(".")):
        source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        try:
            env.parse(source, name, filename)
        except TemplateSyntaxError as exc:
            problems.append(Problem(filename or name, exc.lineno, f"template error: {exc.message}"))
    return problems
