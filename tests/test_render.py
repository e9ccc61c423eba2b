"""Digest rendering: subject, plain text and HTML, escaping, size, inlined CSS, golden files.

Set UPDATE_GOLDEN=1 to rewrite tests/golden/digest.txt and digest.html after an intended change,
then read the diff before committing it.
"""

from __future__ import annotations

import os
import re
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import Environment

from syndicator.config.model import SiteConfig
from syndicator.config.subscribers import Subscriber
from syndicator.digests.render import event_dates, render_digest
from syndicator.digests.select import Digest, DigestLinks, Section
from syndicator.mail.messages import (
    Envelope,
    RenderedEmail,
    build_message,
    digest_bytes,
    header_text,
    message_id,
    to_bytes,
)
from syndicator.parsing.items import Attachment, NewsItem, Term, parse_file
from syndicator.templating import SHIPPED, environment

from .support import ITEMS

PARIS = ZoneInfo("Europe/Paris")
GOLDEN = Path(__file__).resolve().parent / "golden"
ISSUED = datetime(2026, 11, 26, 7, 30, tzinfo=PARIS)
LINKS = DigestLinks(
    feeds_index="https://www.irev.fr/feeds/index.html",
    unsubscribe="https://lettre.example.org/desabonnement/marie.dupont%40example.org?sig=0123456789abcdef",
    preferences="https://lettre.example.org/preferences/marie.dupont%40example.org?sig=0123456789abcdef",
)
MARIE = Subscriber(
    email="marie.dupont@example.org",
    name="Marie Dupont",
    frequency="weekly",
    thematiques=("Politique de la ville - DSU", "Éducation"),
    territoires=("Nord",),
)
SITE = SiteConfig()


def sample(name: str) -> NewsItem:
    """A shipped sample item, parsed."""
    return parse_file(next(ITEMS.glob(f"{name}_*.txt"))).item


def make_item(number: int = 0, **fields: object) -> NewsItem:
    """A small item built directly, any field overridden."""
    values: dict[str, object] = {
        "url": f"https://www.irev.fr/actualites-0/actualite-{number}",
        "file": f"items/{number:03}.txt",
        "title": f"Actualité numéro {number}",
        "type": Term("types", "Actu de l'IREV"),
        "thematiques": (Term("thematiques", "Politique de la ville - DSU"),),
        "territoires": (Term("territoires", "Nord"),),
        "published": date(2026, 11, 20),
        "summary": "Un résumé court.",
    }
    values.update(fields)
    return NewsItem(**values)  # type: ignore[arg-type]


def make_digest(
    items: tuple[NewsItem, ...],
    *,
    more: int = 0,
    subscriber: Subscriber = MARIE,
    issued: datetime = ISSUED,
    sections: tuple[Section, ...] | None = None,
) -> Digest:
    """A digest of `items`, all shown under one section unless `sections` says otherwise."""
    extra = tuple(make_item(1000 + n) for n in range(more))
    shown = sections if sections is not None else (Section("Politique de la ville - DSU", items),)
    return Digest(
        subscriber=subscriber, items=items + extra, sections=shown, more=more, issued=issued, since=None
    )


def render(digest: Digest, env: Environment | None = None, site: SiteConfig = SITE) -> RenderedEmail:
    """The digest through the shipped templates."""
    return render_digest(env or environment(None), digest, LINKS, site)


def golden_digest() -> Digest:
    """The fixed digest of the golden files: three sample items shown in two sections, two more."""
    assembly, lens, jobs = sample("000"), sample("004"), sample("008")
    return Digest(
        subscriber=MARIE,
        items=(jobs, lens, assembly, sample("009"), sample("026")),
        sections=(
            Section("Politique de la ville - DSU", (jobs, assembly)),
            Section("Éducation", (lens,)),
        ),
        more=2,
        issued=ISSUED,
        since=datetime(2026, 11, 19, 7, 30, tzinfo=PARIS),
    )


def test_subject_plural_with_french_date() -> None:
    """The subject counts every delivered item, in the plural, dated in French."""
    digest = make_digest(tuple(make_item(n) for n in range(3)), more=2)
    assert render(digest).subject == "IREV — 5 actualités du 26 novembre 2026"


def test_subject_singular_and_date_in_paris() -> None:
    """One item is 'actualité'; the date is Paris's, here already the 1st of December ('1er')."""
    issued = datetime(2026, 11, 30, 23, 30, tzinfo=ZoneInfo("UTC"))  # 00:30 on 1 December in Paris
    digest = make_digest((make_item(),), issued=issued)
    assert render(digest).subject == "IREV — 1 actualité du 1er décembre 2026"


def test_subject_is_one_line() -> None:
    """Line breaks and control characters never reach the subject header."""
    site = SiteConfig(title="IREV\r\nBcc: intrus@example.org\x00\x1b")
    subject = render(make_digest((make_item(),)), site=site).subject
    assert subject == "IREV Bcc: intrus@example.org — 1 actualité du 26 novembre 2026"
    assert header_text("  a\n\tb\u2028c\x85d  ") == "a b c d"


def test_every_field_of_an_item_appears() -> None:
    """Title, type, publication date, event date, territoires, summary, link, attachment size."""
    item = sample("000")
    rendered = render(make_digest((item,)))
    expected = [
        "L'Assemblée générale du GIP IREV adopté le programme d'actions 2022",
        "Actu de l'IREV",
        "Publié le 30 novembre 2021",
        "Le vendredi 19 novembre 2021 à 9\u00a0h",
        "Territoires\u00a0: Région Hauts de France",
        item.url,
        item.attachments[0].url,
        "PDF, 1,8\u00a0Mo",
    ]
    text_summary = re.sub(r"[ \n]+", " ", rendered.text)  # summaries are wrapped; no-break spaces stay
    html_summary = re.sub(r"[ \n]+", " ", rendered.html.replace("&nbsp;", "\u00a0"))
    for fragment in [*expected, item.summary]:
        assert fragment in text_summary
        assert fragment.replace("'", "&#39;") in html_summary or fragment in html_summary
    assert f"Pièce jointe\u00a0: {item.attachments[0].url} (PDF, 1,8\u00a0Mo)" in rendered.text
    assert f"Lire l’actualité\u00a0: {item.url}" in rendered.text


def test_event_dates_in_french() -> None:
    """One moment, a same-day span, a span of days, and a date the website gave without time."""
    start = datetime(2023, 10, 12, 9, 30, tzinfo=PARIS)
    assert event_dates(start, None, PARIS) == "Le jeudi 12 octobre 2023 à 9\u00a0h\u00a030"
    assert (
        event_dates(start, start.replace(hour=17, minute=0), PARIS)
        == "Le jeudi 12 octobre 2023, de 9\u00a0h\u00a030 à 17\u00a0h"
    )
    assert (
        event_dates(start, datetime(2023, 10, 13, 16, 30, tzinfo=PARIS), PARIS)
        == "Du jeudi 12 octobre 2023 à 9\u00a0h\u00a030 au vendredi 13 octobre 2023 à 16\u00a0h\u00a030"
    )
    assert event_dates(datetime(2023, 12, 1, tzinfo=PARIS), None, PARIS) == "Le vendredi 1er décembre 2023"
    assert event_dates(None, None, PARIS) == ""


def test_more_line_links_the_feeds_index() -> None:
    """Items delivered but not shown are counted, with the feeds index; none, no line."""
    items = (make_item(1), make_item(2))
    rendered = render(make_digest(items, more=3))
    assert f"… et 3 autres actualités\u00a0: {LINKS.feeds_index}" in rendered.text
    assert "Voici 2 des 5 nouvelles actualités" in rendered.text
    assert "… et 3 autres actualités" in rendered.html
    assert f'href="{LINKS.feeds_index}"' in rendered.html
    assert "… et 1 autre actualité\u00a0:" in render(make_digest(items, more=1)).text
    plain = render(make_digest(items))
    assert "autres actualités" not in plain.text
    assert "autres actualités" not in plain.html


def test_titles_escaped_in_html_raw_in_text() -> None:
    """Item text is plain text: escaped in the HTML, left as it is in the text part."""
    item = make_item(title="<b>& co", summary='Un "résumé" <script>alert(1)</script> & fin')
    env = environment(None)
    env.get_template("digest.txt")  # compiled with autoescape on: render_digest must not reuse it
    rendered = render(make_digest((item,)), env=env)
    assert "<b>& co" in rendered.text
    assert 'Un "résumé" <script>alert(1)</script> & fin' in rendered.text
    assert "&lt;b&gt;&amp; co" in rendered.html
    assert "<b>&" not in rendered.html
    assert "<script" not in rendered.html
    assert "&amp;" not in rendered.text
    assert "&lt;" not in rendered.text


def test_greeting_with_and_without_a_name() -> None:
    """A subscriber with a name is greeted by it; one without, plainly."""
    assert render(make_digest((make_item(),))).text.startswith("Bonjour Marie Dupont,\n")
    anonymous = Subscriber(email="anonyme@example.org")
    rendered = render(make_digest((make_item(),), subscriber=anonymous))
    assert rendered.text.startswith("Bonjour,\n")
    assert "toutes les actualités" in rendered.text
    assert "Bonjour," in rendered.html


def test_footer_says_why_and_links_preferences_and_unsubscribe() -> None:
    """Both parts say why the message came and give the preferences and unsubscribe links."""
    rendered = render(make_digest((make_item(),)))
    text = " ".join(rendered.text.split())
    assert "l’adresse marie.dupont@example.org est abonnée" in text
    assert "envoyée chaque semaine" in text
    assert "thématiques Politique de la ville - DSU, Éducation ; territoire Nord" in text
    assert f"Gérer vos préférences\u00a0: {LINKS.preferences}" in rendered.text
    assert f"Se désabonner\u00a0: {LINKS.unsubscribe}" in rendered.text
    assert f'href="{LINKS.preferences}"' in rendered.html
    assert f'href="{LINKS.unsubscribe}"' in rendered.html


def long_items(count: int = 30, summary_length: int = 1000) -> tuple[NewsItem, ...]:
    """Items as heavy as items get: long title and summary, six territoires, an event, two files."""
    summary = ("Les membres du GIP IREV se sont réunis pour l'assemblée générale annuelle. " * 20)[
        :summary_length
    ]
    return tuple(
        make_item(
            n,
            url=f"https://www.irev.fr/actualites-0/une-actualite-au-titre-assez-long-pour-les-vrais-{n}",
            title=("Égalité femmes-hommes : un cycle de qualification pour les quartiers " * 3)[:150],
            territoires=tuple(
                Term("territoires", t)
                for t in ("Région Hauts de France", "Nord", "Pas-de-Calais", "Aisne", "Oise", "Somme")
            ),
            event_start=datetime(2026, 12, 1, 9, 30, tzinfo=PARIS),
            event_end=datetime(2026, 12, 2, 17, 0, tzinfo=PARIS),
            attachments=(
                Attachment("https://www.irev.fr/sites/default/files/rapport.pdf", 4823450, "application/pdf"),
                Attachment("https://www.irev.fr/sites/default/files/donnees_par_epci.xlsx", 49152, None),
            ),
            summary=summary,
        )
        for n in range(count)
    )


def test_html_stays_small_with_30_long_items() -> None:
    """Gmail clips messages over 102 KB: 30 heavy items (1,000-character summaries) stay < 90 KB."""
    items = long_items()
    sections = tuple(Section(f"Thématique {k}", items[k * 5 : (k + 1) * 5]) for k in range(6))
    rendered = render(make_digest(items, sections=sections))
    assert rendered.html.count("Lire l’actualité") == 30
    assert len(rendered.html.encode()) < 90_000


def test_text_lines_are_short() -> None:
    """Text lines stay within 78 characters except those carrying a URL, and never pass 998."""
    items = long_items(count=5)
    rendered = render(make_digest(items, more=4))
    for line in rendered.text.splitlines():
        assert len(line) <= 998
        assert len(line) <= 78 or "https://" in line, line
    assert rendered.text.endswith("\n")
    assert not rendered.text.endswith("\n\n")
    huge = make_item(attachments=(Attachment("https://www.irev.fr/" + "x" * 2000 + ".pdf"),))
    assert max(len(line) for line in render(make_digest((huge,))).text.splitlines()) == 998


def test_item_with_only_a_title_renders() -> None:
    """An item with no type, date, territoire, summary or attachment leaves no empty line or block."""
    bare = NewsItem(url="https://www.irev.fr/actualites-0/nue", file="nue.txt", title="Nue")
    rendered = render(make_digest((bare,)))
    assert "* Nue\n\n  Lire l’actualité\u00a0: https://www.irev.fr/actualites-0/nue\n" in rendered.text
    assert 'class="meta"' not in rendered.html


def test_css_is_inlined() -> None:
    """Rules become style= attributes; only the @media rules stay in a <style> element."""
    html = render(make_digest((make_item(),))).html
    assert re.search(r'<td class="entry" style="[^"]*padding:', html)
    assert re.search(r'<a href="https://www\.irev\.fr/actualites-0/actualite-0" style="color:#00507c"', html)
    outside_comments = re.sub(r"<!--.*?-->", "", html, flags=re.DOTALL)  # Outlook's own <style>
    styles = re.findall(r"<style>(.*?)</style>", outside_comments, flags=re.DOTALL)
    assert styles
    assert all(s.strip().startswith("@media") for s in styles)


def test_html_is_email_safe() -> None:
    """French, layout tables marked presentational, no script or image, every link absolute."""
    html = render(golden_digest()).html
    assert '<html lang="fr"' in html
    assert html.count("<table") == html.count('role="presentation"')
    assert "<script" not in html
    assert "<img" not in html
    assert "max-width:600px" in html
    assert 'class="preheader"' in html
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs
    assert all(h.startswith(("https://", "http://")) for h in hrefs)


def test_admin_template_overrides_the_shipped_one(tmp_path: Path) -> None:
    """A digest_subject.txt in the admin's folder wins; the other templates come from syndicator."""
    (tmp_path / "digest_subject.txt").write_text("Lettre {{ site.title }} : {{ count }}\n", encoding="utf-8")
    rendered = render(make_digest((make_item(),)), env=environment(tmp_path))
    assert rendered.subject == "Lettre IREV : 1"
    assert "Bonjour Marie Dupont," in rendered.text


def test_subjects_follow_each_digest_through_one_environment(tmp_path: Path) -> None:
    """Subjects made once per count and date still change with them; one naming the subscriber
    is made for each subscriber."""
    env = environment(None)
    assert render(make_digest((make_item(),)), env=env).subject.startswith("IREV — 1 actualité")
    assert render(make_digest((make_item(),), more=2), env=env).subject.startswith("IREV — 3 actualités")
    (tmp_path / "digest_subject.txt").write_text("Pour {{ subscriber.email }}", encoding="utf-8")
    env = environment(tmp_path)
    other = Subscriber(email="autre@example.org")
    assert render(make_digest((make_item(),)), env=env).subject == "Pour marie.dupont@example.org"
    assert render(make_digest((make_item(),), subscriber=other), env=env).subject == "Pour autre@example.org"


def test_rendering_is_repeatable() -> None:
    """The same digest renders the same twice with one environment (templates are cached)."""
    env = environment(None)
    digest = golden_digest()
    assert render(digest, env=env) == render(digest, env=env)


@pytest.mark.parametrize(("name", "part"), [("digest.txt", "text"), ("digest.html", "html")])
def test_golden(name: str, part: str) -> None:
    """A fixed digest of three sample items renders exactly as the golden file (UPDATE_GOLDEN=1)."""
    rendered = render(golden_digest())
    actual: str = getattr(rendered, part)
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="")
    assert path.read_bytes().decode("utf-8") == actual, f"{name} changed; UPDATE_GOLDEN=1 rewrites it"


def golden_envelope() -> Envelope:
    """The headers of the golden digest's email that do not come from its content."""
    sender = "IREV <lettre@example.org>"
    return Envelope(
        sender=sender,
        recipient=MARIE.email,
        recipient_name=MARIE.name,
        message_id="<digest.42.1f69c376f615@example.org>",  # the golden file's
        date=ISSUED,
        list_name="IREV",
        unsubscribe_url=LINKS.unsubscribe,
    )


def test_golden_eml() -> None:
    """The golden digest's email is byte for byte tests/golden/digest.eml (UPDATE_GOLDEN=1): its
    Message-ID, MIME boundary and date are fixed, so nothing needs normalising."""
    actual = to_bytes(build_message(render(golden_digest()), golden_envelope()))
    path = GOLDEN / "digest.eml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_bytes(actual)
    assert path.read_bytes() == actual, "digest.eml changed; UPDATE_GOLDEN=1 rewrites it"


def test_golden_digest_is_what_it_claims() -> None:
    """The golden digest is the one the golden files describe (guards the fixture itself)."""
    digest = golden_digest()
    assert [len(s.items) for s in digest.sections] == [2, 1]
    assert len(digest.items) == 3 + digest.more
    assert render(digest).subject == "IREV — 5 actualités du 26 novembre 2026"


# --- entries rendered once per run; emails made without EmailMessage ---------------------------


def whole_templates(folder: Path) -> Environment:
    """The shipped digest templates without their `entry` block: rendered whole every time."""
    for name in ("digest.txt", "digest.html"):
        lines = (SHIPPED / name).read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if line.strip() not in ("{% block entry scoped %}", "{% endblock %}")]
        assert len(kept) == len(lines) - 2
        (folder / name).write_text("".join(kept), encoding="utf-8")
    return environment(folder)


def shuffled_digests(count: int) -> list[Digest]:
    """Digests sharing the sample items in ever other orders, sections, subscribers and counts."""
    items = [sample(f"{n:03}") for n in range(12)]
    digests = []
    for number in range(count):
        chosen = [items[(number * 5 + k * 7) % len(items)] for k in range(2 + number % 6)]
        half = len(chosen) // 2
        sections = (Section("Éducation", tuple(chosen[:half])), Section("Culture", tuple(chosen[half:])))
        subscriber = Subscriber(email=f"s{number}@example.org", name=None if number % 3 else f"Nom {number}")
        digests.append(make_digest(tuple(chosen), more=number % 3, subscriber=subscriber, sections=sections))
    return digests


def test_entries_rendered_once_give_the_bytes_of_the_whole_template(tmp_path: Path) -> None:
    """Each item's block is rendered and inlined once, then reused: every digest is still byte
    for byte the templates rendered whole and the whole page inlined."""
    env, whole = environment(None), whole_templates(tmp_path)
    for digest in shuffled_digests(12):
        assert render(digest, env=env) == render(digest, env=whole)


def test_an_entry_block_using_more_than_the_entry_is_rendered_for_each_digest(tmp_path: Path) -> None:
    """An admin's entry block that numbers entries (`loop.index`) still numbers them right."""
    text = (SHIPPED / "digest.txt").read_text(encoding="utf-8")
    (tmp_path / "digest.txt").write_text(text.replace("* {{ entry.title", "{{ loop.index }}. {{ entry.title"))
    env = environment(tmp_path)
    first, second = (make_item(n) for n in range(2))
    assert "1. Actualité numéro 0" in render(make_digest((first, second)), env=env).text
    assert "1. Actualité numéro 1" in render(make_digest((second, first)), env=env).text


def test_css_that_selects_by_position_is_inlined_whole(tmp_path: Path) -> None:
    """A rule such as `tr:nth-child(5)` styles an item by its place in each digest."""
    page = (SHIPPED / "digest.html").read_text(encoding="utf-8")
    css = ".more { padding: 20px 32px 12px;"
    (tmp_path / "digest.html").write_text(page.replace(css, "tr:nth-child(5) .entry { color: red; }\n" + css))
    env = environment(tmp_path)
    first, second = (make_item(n) for n in range(2))
    # Rows: masthead, intro, section, then the entries: the 2nd entry is the 5th row.
    assert render(make_digest((first, second)), env=env).html.count("color:red") == 1
    again = render(make_digest((second, first)), env=env).html
    assert re.search(r'color:red">\s*<h3[^>]*><a href="[^"]*actualite-0"', again)


def test_a_style_that_depends_on_the_digest_around_an_entry_is_caught(tmp_path: Path) -> None:
    """CSS no check can foresee (here, through an ancestor whose class varies by digest): the
    first digests that reuse entries are compared with the whole page, and the template is then
    rendered whole."""
    page = (SHIPPED / "digest.html").read_text(encoding="utf-8")
    page = page.replace(
        '<table role="presentation" class="card"',
        '<table role="presentation" class="card {{ "long" if more }}"',
    ).replace(".more {", ".long .entry { color: red; }\n.more {")
    (tmp_path / "digest.html").write_text(page)
    env = environment(tmp_path)
    item = make_item(1)
    assert "color:red" not in render(make_digest((item,)), env=env).html
    assert "color:red" in render(make_digest((item,), more=2), env=env).html


def test_digest_bytes_are_the_golden_eml() -> None:
    """The quick way of making the email gives the golden file's bytes too."""
    assert digest_bytes(render(golden_digest()), golden_envelope()) == (GOLDEN / "digest.eml").read_bytes()


_TEXT = st.text(st.characters(codec="utf-8"), max_size=300)  # any character but surrogates
_NAMES = st.one_of(
    st.none(),
    st.sampled_from(
        ["Marie Dupont", "Hélène Lefèvre", "J. Dupont", "O'Neil", "Anne-Sophie", "Dupont, Marie"]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=0x24F), max_size=60),
)
_RECIPIENTS = st.one_of(
    st.emails(),
    st.sampled_from(["marie.dupont@example.org", "a@b.c", "x.y-z+tag@mairie.example.fr", "é@example.org"]),
)
_IDS = st.one_of(
    st.builds(message_id, st.sampled_from(["IREV <lettre@example.org>", "lettre@mairie-évry.fr", "x"])),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=90).map(
        lambda t: f"<{t}>"
    ),
)
_URLS = st.one_of(
    st.just(LINKS.unsubscribe),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=120).map(lambda t: "https://x/" + t),
    _TEXT,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=_TEXT,
    html=_TEXT,
    subject=_TEXT,
    name=_NAMES,
    recipient=_RECIPIENTS,
    mid=_IDS,
    url=_URLS,
    list_name=st.sampled_from(["IREV", "Lettre d'actualités — IREV", ""]),
    sender=st.sampled_from(["IREV <lettre@example.org>", "Lettre d'actualités <lettre@irev.fr>", "a@b.c"]),
    date=st.datetimes(timezones=st.just(PARIS)),
)
def test_digest_bytes_are_the_stdlib_bytes(  # noqa: PLR0917 -- one argument per field
    text: str, html: str, subject: str, name: str | None, recipient: str, mid: str, url: str,
    list_name: str, sender: str, date: datetime,
) -> None:  # fmt: skip
    """Whatever the content and the headers, the quick way gives the stdlib's bytes, or fails
    where the stdlib fails."""
    rendered = RenderedEmail(subject=subject, text=text, html=html)
    envelope = Envelope(sender, recipient, name, mid, date, list_name, url)
    try:
        expected = to_bytes(build_message(rendered, envelope))
    except Exception:  # an address the stdlib cannot carry, say
        with pytest.raises(Exception):  # noqa: B017, PT011 -- whatever the stdlib raised
            digest_bytes(rendered, envelope)
        return
    assert digest_bytes(rendered, envelope) == expected
