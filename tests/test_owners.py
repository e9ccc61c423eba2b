"""One owner per concept: each thing the code knows (a transport, a frequency, a name's folded
form, the look-back, who subscribes) is decided in one module that every user of it imports."""

from __future__ import annotations

import ast
import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from syndicator.config import edit as config_edit
from syndicator.config.frequencies import FREQUENCIES, as_frequency
from syndicator.config.model import LookbackConfig, load_config
from syndicator.config.subscribers import Subscriber, from_config
from syndicator.db.choices import Consent, save_choice
from syndicator.db.ledger import Ledger
from syndicator.db.store import Store
from syndicator.db.subscribers import Roster, effective_subscriber
from syndicator.db.tokens import AddressTokens
from syndicator.digests.explain import explain
from syndicator.digests.render import FREQUENCY_PHRASES
from syndicator.digests.run import DigestRun
from syndicator.digests.select import lookback_start
from syndicator.feeds import build as feeds_build
from syndicator.ingest.reading import Parsed
from syndicator.parsing import items, titles
from syndicator.parsing.items import parse_file
from syndicator.service.scheduler import JOB_OF
from syndicator.taxonomy import territoires
from syndicator.taxonomy.terms import slugify
from syndicator.taxonomy.territoires import Hierarchy
from syndicator.web.choices import FREQUENCY_LABELS

from .conftest import Run
from .support import ITEMS
from .test_digests import Project, subscriber_yaml
from .test_layers import PACKAGE, graph

PARIS = ZoneInfo("Europe/Paris")


def _imports_of(package: str) -> set[str]:
    edges = graph()
    return {target for source, targets in edges.items() if source.startswith(package) for target in targets}


def test_the_web_app_needs_no_digest_code_for_the_dkim_key_or_the_transport() -> None:
    """The web app signs and sends its own emails with the mail layer's DKIM loader and
    transport factory: it imports nothing of digests (selection, rendering, the send run)."""
    assert not {m for m in _imports_of("syndicator.web") if m.startswith("syndicator.digests")}
    assert "syndicator.digests.send" not in graph()["syndicator.cli.checks"]


def test_explaining_an_item_needs_none_of_the_send_machinery() -> None:
    """`digest explain` and `digest preview` use the run context alone: the claims, the workers,
    the transports and the tallies of a send are not imported to explain an item."""
    edges = graph()
    sending = {
        "syndicator.digests.send",
        "syndicator.db.runs",
        "syndicator.mail.smtp",
        "syndicator.digests.tally",
    }
    assert not (edges["syndicator.digests.explain"] | edges["syndicator.digests.run"]) & sending


def test_explain_and_the_selection_apply_the_same_look_back(tmp_path: Path) -> None:
    """Day after day, an item is within the look-back for `digest explain` exactly when the
    selection puts it in the digest, and both cut where `lookback_start` says."""
    project = Project(
        tmp_path, subscriber_yaml("all@example.org", "weekly", [], [], []),
        lookback="{immediate: 2, daily: 2, weekly: 14, monthly: 62}",
    )  # fmt: skip
    urls = {parse_file(p).item.url: parse_file(p).item.published for p in sorted(ITEMS.glob("*.txt"))}
    cuts = set()
    for days in range(20):
        now = datetime(2026, 11, 26, 23, 30, tzinfo=PARIS) + timedelta(days=days)
        run = project.digests(now)
        subscriber = run.subscriber("all@example.org")
        assert subscriber is not None
        digest = run.next_digest(subscriber)
        chosen = {i.url for i in digest.items} if digest else set()
        for url, published in urls.items():
            _, lines = explain(run, subscriber, url)
            within = any(line.startswith("passes: published") for line in lines)
            assert within == (url in chosen), (now, url, lines)
            assert published is not None
            assert within == (published >= lookback_start(now, 14, PARIS)), (now, url)
            cuts.add(within)
    assert cuts == {True, False}, "the look-back cut through the sample items"


def test_every_list_of_frequencies_is_the_one_tuple(run: Run) -> None:
    """The French phrases of digests and pages, the schedule's jobs, config.yaml's look-back
    keys and the command line's `--frequency` all list `FREQUENCIES`, in its order."""
    assert FREQUENCIES == ("immediate", "daily", "weekly", "monthly")
    assert tuple(FREQUENCY_PHRASES) == tuple(FREQUENCY_LABELS) == tuple(JOB_OF) == FREQUENCIES
    assert tuple(LookbackConfig.model_fields) == FREQUENCIES
    refused = run("digest", "send", "--frequency", "yearly")
    assert refused.code == 2
    assert "choose from " + ", ".join(f"'{f}'" for f in FREQUENCIES) in refused.err
    assert as_frequency("monthly") == "monthly"
    assert as_frequency("fortnightly") == "weekly"  # a row written by a newer version


def test_the_vocabularies_are_listed_once() -> None:
    """Parsing owns the three vocabularies; the feeds (one group each) and config.yaml's editor
    (one interest list each) read its tuple, and the feeds' labels cover exactly it."""
    assert vars(feeds_build)["VOCABULARIES"] is items.VOCABULARIES
    assert config_edit._LIST_FIELDS is items.VOCABULARIES
    assert tuple(feeds_build.LABELS) == tuple(feeds_build.GROUP_TITLES) == items.VOCABULARIES


def _holds_a_hash_named_digest(node: ast.AST) -> bool:
    if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "digest" for t in node.targets):
        return "digest()" in ast.unparse(node.value)
    if isinstance(node, ast.arg) and node.annotation is not None:
        return node.arg == "digest" and ast.unparse(node.annotation) == "str"
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id == "digest" and ast.unparse(node.annotation) == "str"
    return False


def test_digest_in_a_name_means_the_email_never_a_hash() -> None:
    """ "digest" names the email (`Digest`) and its run (`DigestRun`); a content hash is a
    `content_hash` or `hashed`: no variable, field or argument named `digest` holds a hash."""
    found = [
        f"{path.name}:{getattr(node, 'lineno', 0)}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if _holds_a_hash_named_digest(node)
    ]
    assert found == []
    assert "content_hash" in Parsed.__slots__


def test_terms_territoires_and_titles_fold_names_alike() -> None:
    """One fold: a territoire's label key is its feed slug's words, for every shipped place and
    for letters NFKD keeps whole (ø, ß, œ); a title's word folds the same way."""
    hierarchy, _ = Hierarchy.load({})
    names = [place.name for place in hierarchy.places()]
    names += ["Bjørn Straße", "Œuvres d’Æsop", "Saint-Amand-les-Eaux", "L’Haÿ-les-Roses"]
    for name in names:
        assert territoires._label_key(name) == slugify(name).replace("-", " "), name
    assert [titles.fold(word) for word in ("Straße", "Œuvre", "l’Élysée")] == ["strasse", "oeuvre", "lelysee"]
    assert slugify("Bjørn Straße") == "bj-rn-strasse"  # feed slugs as before: the fold of terms


def test_cli_digests_and_web_see_the_same_subscribers(run: Run, project: Path) -> None:
    """config.yaml's subscribers with their web choices, confirmed sign-ups (not pending ones)
    and the suppression list: `subscribers list`, a digest run and the web pages resolve them
    alike, and `explain` reports the same suppression."""
    assert run("ingest").code == 0
    config = load_config(project / "config.yaml")
    now = datetime.now(UTC)
    consent = Consent(at=now, ip="192.0.2.1", wording="J’accepte")
    with Store.open(config.database_url) as store:
        save_choice(store, Subscriber("Karim.Benali@example.org", frequency="monthly"), now=now)
        save_choice(store, Subscriber("new@example.org", frequency="daily"), now=now, consent=consent)
        save_choice(store, Subscriber("pending@example.org", frequency="daily"), now=now)
        Ledger(store).suppress("claire.martin@example.org", "unsubscribed", now)
        roster = Roster(config, store)
        run_subscribers = DigestRun(store, config, now=now).subscribers()
        web = {s.key: effective_subscriber(config, store, s.email) for s in roster.subscribers}
        assert effective_subscriber(config, store, "pending@example.org") is None
        assert list(roster.suppressed) == ["claire.martin@example.org"]
    keys = [s.key for s in roster.subscribers]
    listed = [s.key for s in from_config(config)]
    assert keys == [s.key for s in run_subscribers] == [*listed, "new@example.org"]
    assert web == {s.key: s for s in roster.subscribers}
    assert roster.sources["karim.benali@example.org"] == "preferences"
    assert roster.sources["new@example.org"] == "signup"
    assert roster.sources["marie.dupont@example.org"] == "config"
    listing = run("subscribers", "list")
    assert listing.code == 0, listing.err
    rows = {line.split()[0]: line for line in listing.out.splitlines()[1:]}
    assert list(rows) == keys
    karim = rows["karim.benali@example.org"]
    assert "monthly" in karim and "web preferences" in karim
    assert "web sign-up" in rows["new@example.org"] and "config.yaml" in rows["marie.dupont@example.org"]
    assert "unsubscribed" in rows["claire.martin@example.org"]
    explained = run("explain", "claire.martin@example.org", next(iter(urls_of_items())))
    assert "suppressed since" in explained.out, explained.out


def urls_of_items() -> list[str]:
    return [parse_file(p).item.url for p in sorted(ITEMS.glob("*.txt"))]


def test_an_address_token_is_sealed_so_the_address_cannot_be_read_from_it() -> None:
    """`AddressTokens` encrypts: the link's token shows nothing of the address, opens back to it
    for its own purpose only, and is the same each time (a digest built again is the same)."""
    secret = "un secret de trente-deux octets au moins, pour les tests"
    tokens = AddressTokens([secret], "unsubscribe")
    token = tokens.seal("Marie.Dupont@Example.org")
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"marie" not in decoded.lower() and "marie" not in token.lower()
    assert tokens.open(token) == "marie.dupont@example.org"
    assert tokens.seal("marie.dupont@example.org") == token
    assert AddressTokens([secret], "preferences").open(token) is None


def test_no_type_is_named_a_stamp() -> None:
    """An item's light header, a file's version and config.yaml's version are named for what
    they hold, not all "stamps"."""
    stamps = [
        f"{path.name}: {node.name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and "stamp" in node.name.lower()
    ]
    assert stamps == [], stamps
