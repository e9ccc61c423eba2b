"""French typography, in one place: the spaces before `; ? ! :` and inside « », never inside URLs,
addresses, times or markup; typographic apostrophes in the templates' own text only; `1er` and
`9 h 30`; `de` and `à` before a noun with its article."""

from __future__ import annotations

from datetime import date, datetime, time

from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup

from syndicator.parsing.french_dates import DEFAULT_ZONE as PARIS
from syndicator.templating import environment, french_date, french_datetime
from syndicator.typography import (
    NBSP,
    NNBSP,
    a,
    de,
    french_day,
    french_markup,
    french_text,
    french_time,
    typo,
    with_article,
)


def test_spaces_before_punctuation_become_no_break_spaces() -> None:
    """A written space before `; ? !` becomes narrow, before `:` a no-break one; « » get theirs."""
    assert french_text("Voici ; vraiment ? Oui ! Note : « citation »") == (
        f"Voici{NNBSP}; vraiment{NNBSP}? Oui{NNBSP}! Note{NBSP}: «{NBSP}citation{NBSP}»"
    )
    assert french_text("«serré»") == f"«{NBSP}serré{NBSP}»"  # guillemets always get their space


def test_urls_addresses_times_and_glued_punctuation_are_left_alone() -> None:
    """Nothing without a space before it changes: a URL's `?` and `;`, an address, 09:30, `Yahoo!`."""
    text = "https://x.org/a?b=1;c=2 mailto:marie@example.org 09:30 Yahoo! a;b"
    assert french_text(text) == text


def test_markup_keeps_tags_attributes_comments_and_styles() -> None:
    """Only the text between tags changes: attributes, comments, <style> and <code> stay as written."""
    html = (
        '<p title="a : b" style="color : red">Texte : <a href="/x?y=1">lien</a> !</p>'
        "<!-- note : ici --><style>a :hover { color : red ; }</style><code>x : y</code> &amp; ;"
    )
    assert french_markup(html) == (
        f'<p title="a : b" style="color : red">Texte{NBSP}: <a href="/x?y=1">lien</a>{NNBSP}!</p>'
        f"<!-- note : ici --><style>a :hover {{ color : red ; }}</style><code>x : y</code> &amp;{NNBSP};"
    )


@given(st.text(alphabet=st.sampled_from("ab ;:?!«»\u00a0\u202f<>\"'=/&#\n"), max_size=40))
def test_the_filter_is_idempotent_and_only_changes_spaces(text: str) -> None:
    """Applied twice it gives what once gave; and it only ever turns spaces into no-break ones
    (or adds one inside « »): the other characters stay, in order."""
    once = french_text(text)
    assert french_text(once) == once
    assert once.replace(NBSP, "").replace(NNBSP, "").replace(" ", "").replace("\t", "") == (
        text.replace(NBSP, "").replace(NNBSP, "").replace(" ", "").replace("\t", "")
    )
    marked = french_markup(text)
    assert french_markup(marked) == marked


def test_the_jinja_filter_keeps_markup_markup_and_escapes_text() -> None:
    """`typo` on markup leaves its tags and returns markup; on text, the text is escaped after."""
    env = environment(None)
    template = env.from_string("{% filter typo %}<b>Titre</b> : {{ value }}{% endfilter %}")
    assert template.render(value="<i>x</i> ?") == f"<b>Titre</b>{NBSP}: &lt;i&gt;x&lt;/i&gt;{NNBSP}?"
    assert isinstance(typo(Markup("<b>a</b> !")), Markup)
    assert not isinstance(typo("a !"), Markup)


def test_templates_own_text_gets_typographic_apostrophes_values_do_not() -> None:
    """The apostrophes written in a template become ’; a value's (an item's title) stay as typed,
    and so do quotes around attributes."""
    env = environment(None)
    template = env.from_string("<p class='x'>Lire l'actualité {{ title }}</p>")
    assert template.render(title="L'IREV") == "<p class='x'>Lire l’actualité L&#39;IREV</p>"


def test_first_days_are_1er_and_times_9_h_30() -> None:
    """`1er mars 2022` everywhere a date is written; times as `9 h 30`, `14 h`."""
    assert french_day(date(2022, 3, 1)) == "1er mars 2022"
    assert french_day(date(2022, 3, 11)) == "11 mars 2022"
    assert french_day(date(2022, 3, 21), "full") == "lundi 21 mars 2022"
    assert french_date(date(2022, 3, 1), "full") == "mardi 1er mars 2022"
    assert french_time(time(9, 30)) == f"9{NBSP}h{NBSP}30"
    assert french_time(time(14, 0)) == f"14{NBSP}h"
    moment = datetime(2021, 11, 19, 9, 5, tzinfo=PARIS)
    assert french_datetime(moment) == f"vendredi 19 novembre 2021 à 9{NBSP}h{NBSP}05"


def test_de_and_a_contract_with_the_article() -> None:
    """`de l’IREV`, `du Cerema`, `des communes`, `d’Amiens`; `à la lettre`, `au Cerema`."""
    assert de("l’IREV") == "de l’IREV"
    assert de("la CNIL") == "de la CNIL"
    assert de("le Cerema") == "du Cerema"
    assert de("les communes") == "des communes"
    assert de("Amiens") == "d’Amiens"
    assert de("Lille") == "de Lille"
    assert a("la lettre d’information") == "à la lettre d’information"
    assert a("le Cerema") == "au Cerema"
    assert a("les élus") == "aux élus"
    assert a("l’infolettre") == "à l’infolettre"
    assert with_article("IREV") == "l’IREV" and with_article("Lille") == "Lille"
    assert with_article("Hauts-de-France") == "Hauts-de-France"  # an h may be aspirated: say it in config
