"""The territoire hierarchy: the shipped official data, label resolution, config.yaml's additions."""

from __future__ import annotations

import csv
import re
import time
from collections import Counter
from importlib import resources

import pytest

from syndicator.taxonomy.territoires import Hierarchy, Place, Resolution

from .support import ITEMS, ROOT

ROUBAIX, TOURCOING, AMIENS, FLEURBAIX = "59512", "59599", "80021", "62338"
MEL, FLANDRE_LYS, VILLES_SOEURS = "200093201", "245900758", "247600588"
NORD, PAS_DE_CALAIS, SOMME, REGION = "59", "62", "80", "32"


@pytest.fixture(scope="module")
def official() -> Hierarchy:
    hierarchy, messages = Hierarchy.load()
    assert messages == []
    return hierarchy


def load(extra: dict[str, str]) -> tuple[Hierarchy, list[str]]:
    return Hierarchy.load(extra)


def csv_rows() -> list[dict[str, str]]:
    text = (
        resources.files("syndicator.taxonomy.data")
        .joinpath("territoires-hauts-de-france.csv")
        .read_text("utf-8")
    )
    return list(csv.DictReader(text.splitlines()))


# --- the official data -------------------------------------------------------------------


def test_the_shipped_csv_has_one_region_five_departements_92_epci_and_3782_communes(
    official: Hierarchy,
) -> None:
    """Every row of the packaged CSV becomes a place, at the level its row gives."""
    levels = Counter(official.get(row["code"]).level for row in csv_rows())
    assert levels == {"region": 1, "departement": 5, "epci": 92, "commune": 3782}


def test_the_data_ships_with_its_attribution() -> None:
    """The package data carries the Etalab source and the Licence Ouverte beside the CSV."""
    readme = resources.files("syndicator.taxonomy.data").joinpath("README.md").read_text("utf-8")
    assert "Licence Ouverte" in readme
    assert "decoupage-administratif" in readme


def test_every_place_but_the_region_lies_under_the_region(official: Hierarchy) -> None:
    """Each ancestor chain ends at the région 32, and a place's parent is its nearest ancestor."""
    for row in csv_rows():
        place = official.get(row["code"])
        if place.level == "region":
            assert official.ancestors(place.code) == ()
            continue
        assert official.ancestors(place.code)[-1] == REGION
        assert official.ancestors(place.code)[0] == place.parent


def test_roubaix_lies_under_the_mel_then_nord_then_the_region(official: Hierarchy) -> None:
    """Ancestors come nearest first: the commune's EPCI, its département, the région."""
    assert official.get(ROUBAIX) == Place(ROUBAIX, "Roubaix", "commune", MEL)
    assert official.ancestors(ROUBAIX) == (MEL, NORD, REGION)


def test_nord_holds_roubaix_and_the_mel_but_not_amiens(official: Hierarchy) -> None:
    """Descendants go down every level; places of other départements stay out."""
    below = official.descendants(NORD)
    assert {ROUBAIX, TOURCOING, MEL} <= below
    assert AMIENS not in below
    assert NORD not in below
    assert official.descendants(ROUBAIX) == frozenset()
    assert len(official.descendants(REGION)) == 5 + 92 + 3782


def test_related_is_the_matching_rule_for_nord(official: Hierarchy) -> None:
    """A Nord subscriber follows Nord, the région above it and Roubaix below it, not Amiens."""
    related = official.related(NORD)
    assert {NORD, REGION, ROUBAIX, MEL} <= related
    assert AMIENS not in related
    assert SOMME not in related


def test_related_is_symmetric(official: Hierarchy) -> None:
    """If Roubaix news reaches a Nord subscriber, Nord news reaches a Roubaix subscriber."""
    assert ROUBAIX in official.related(NORD)
    assert NORD in official.related(ROUBAIX)
    assert REGION in official.related(ROUBAIX)
    assert TOURCOING not in official.related(ROUBAIX)  # a sibling is neither above nor below


def test_a_commune_lies_under_its_own_departement_even_when_its_epci_sits_in_another(
    official: Hierarchy,
) -> None:
    """Fleurbaix (62) is in CC Flandre Lys (seat in Nord): it is under Pas-de-Calais, not Nord;
    the EPCI itself is under both départements."""
    assert official.ancestors(FLEURBAIX) == (FLANDRE_LYS, PAS_DE_CALAIS, REGION)
    assert FLEURBAIX not in official.related(NORD)
    assert official.ancestors(FLANDRE_LYS) == (NORD, PAS_DE_CALAIS, REGION)
    assert FLANDRE_LYS in official.related(NORD) and FLANDRE_LYS in official.related(PAS_DE_CALAIS)


def test_an_epci_straddling_another_region_gets_its_departement_here(official: Hierarchy) -> None:
    """CC des Villes Soeurs has no parent in the CSV (it reaches Normandie): its communes here
    are in the Somme, so it is under the Somme."""
    assert official.get(VILLES_SOEURS).parent == SOMME
    assert official.ancestors(VILLES_SOEURS) == (SOMME, REGION)


def test_an_unknown_code_is_a_key_error(official: Hierarchy) -> None:
    """Codes come from resolutions; an unknown one is a programming error, not a silent empty set."""
    for query in (official.get, official.ancestors, official.descendants, official.related):
        with pytest.raises(KeyError):
            query("99999")


# --- resolving labels --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "code"),
    [
        ("Roubaix", ROUBAIX),
        ("ROUBAIX", ROUBAIX),
        ("  roubaix ", ROUBAIX),
        ("59512", ROUBAIX),
        ("59", NORD),
        ("32", REGION),
        (MEL, MEL),
        ("Pas-de-Calais", PAS_DE_CALAIS),
        ("pas de calais", PAS_DE_CALAIS),
        ("Hauts-de-France", REGION),
        ("Hauts de France", REGION),
        ("Région Hauts de France", REGION),
        ("region hauts-de-france", REGION),
        ("HDF", REGION),
        ("MEL", MEL),
        ("mel", MEL),
        ("Métropole Européenne de Lille", MEL),
        ("Metropole europeenne de Lille", MEL),
        ("Métropole  Européenne de  Lille", MEL),
        ("CA de Lens - Liévin", "246200364"),
        ("CA de Lens-Lievin", "246200364"),
        ("CU d'Arras", "200033579"),
        ("CU d’Arras", "200033579"),  # typographic apostrophe
        ("Cœur de Flandre", "200040947"),  # ligature, and the name without its "CA"
        ("Communauté urbaine de Dunkerque", "245900428"),
        ("Communauté d'agglomération du Beauvaisis", "200067999"),
        ("Amiens Métropole", "248000531"),
        ("Villeneuve-d'Ascq", "59009"),
        ("villeneuve d ascq", "59009"),
        ("Étaples", "62318"),
        ("etaples", "62318"),
    ],
)
def test_labels_resolve_by_name_code_or_alias_whatever_their_spelling(
    official: Hierarchy, label: str, code: str
) -> None:
    """Case, accents, hyphens, apostrophes and extra spaces do not matter; codes and aliases work."""
    found = official.resolve(label)
    assert found == Resolution(label, official.get(code), ())
    assert not found.ambiguous


def test_an_unknown_label_resolves_to_nothing(official: Hierarchy) -> None:
    """The caller keeps such a label as a term of its own."""
    for label in ("Quartier inconnu", "", "Paris", "Roubaix (62)"):
        found = official.resolve(label)
        assert found == Resolution(label, None, ())
        assert not found.ambiguous


def test_a_name_shared_by_communes_of_several_departements_is_ambiguous(official: Hierarchy) -> None:
    """Bare `Saint-Aubin` names three communes: no place, the three as candidates."""
    found = official.resolve("Saint-Aubin")
    assert found.place is None
    assert found.ambiguous
    assert [p.code for p in found.candidates] == ["02671", "59529", "62742"]


@pytest.mark.parametrize(
    "label", ["Saint-Aubin (59)", "saint aubin (59)", "Saint-Aubin(59)", "Saint-Aubin (Nord)"]
)
def test_a_departement_in_brackets_picks_one_homonym(official: Hierarchy, label: str) -> None:
    """`Name (dd)`, or the département's name in brackets, resolves an ambiguous commune name."""
    found = official.resolve(label)
    assert found.place is not None and found.place.code == "59529"
    assert not found.ambiguous


def test_every_commune_resolves_by_its_name_and_departement(official: Hierarchy) -> None:
    """All 3,782 communes, homonyms included, resolve as `Name (dd)`; 56 bare names are ambiguous."""
    ambiguous: set[str] = set()
    for row in csv_rows():
        if row["niveau"] != "commune":
            continue
        qualified = official.resolve(f"{row['nom']} ({row['code'][:2]})")
        assert qualified.place is not None and qualified.place.code == row["code"], row
        bare = official.resolve(row["nom"])
        if bare.ambiguous:
            assert row["code"] in {p.code for p in bare.candidates}
            ambiguous.add(bare.candidates[0].name.lower())
        else:
            assert bare.place is not None and bare.place.code == row["code"], row
    assert len(ambiguous) == 56
    assert {"saint-aubin", "fleury", "dury", "bailleul", "senlis"} <= ambiguous


def test_every_territoire_label_of_the_sample_items_resolves(official: Hierarchy) -> None:
    """The labels the website puts on `Territoires :` lines all name one official place."""
    labels = {
        label
        for path in ITEMS.glob("*.txt")
        for line in path.read_text("utf-8").splitlines()
        if line.startswith("Territoires")
        for label in re.findall(r"\[([^\]]+)\]\(#\)", line)
    }
    assert len(labels) >= 15
    unresolved = [label for label in sorted(labels) if official.resolve(label).place is None]
    assert unresolved == []


def test_suggestions_are_close_official_names(official: Hierarchy) -> None:
    """A misspelt name gets its likely meaning; homonyms come with their département."""
    assert official.suggest("Roubiax") == ["Roubaix"]
    assert official.suggest("Saint-Aubn") == ["Saint-Aubin (02)", "Saint-Aubin (59)", "Saint-Aubin (62)"]
    assert official.suggest("Metropole Europeene de Lile", n=1) == ["Métropole Européenne de Lille"]
    assert official.suggest("zzzz") == []


# --- config.yaml's territoires: ----------------------------------------------------------


def test_a_quartier_under_roubaix_is_a_local_place_related_to_nord() -> None:
    """An unknown child becomes a local place under its parent, and matching follows it."""
    hierarchy, messages = load({"Alma - Gare": "Roubaix"})
    assert messages == []
    found = hierarchy.resolve("alma gare")
    assert found.place == Place("local:alma-gare", "Alma - Gare", "local", ROUBAIX)
    assert hierarchy.ancestors("local:alma-gare") == (ROUBAIX, MEL, NORD, REGION)
    assert "local:alma-gare" in hierarchy.related(NORD)
    assert "local:alma-gare" in hierarchy.descendants(ROUBAIX)
    assert NORD in hierarchy.related("local:alma-gare")
    assert "local:alma-gare" not in hierarchy.related(TOURCOING)


def test_local_places_nest_whatever_the_order_of_the_entries() -> None:
    """A local place may sit under another one defined further down the mapping."""
    hierarchy, messages = load({"Îlot Nord": "Alma - Gare", "Alma - Gare": "Roubaix"})
    assert messages == []
    assert hierarchy.ancestors("local:ilot-nord") == ("local:alma-gare", ROUBAIX, MEL, NORD, REGION)
    assert "local:ilot-nord" in hierarchy.related(REGION)


def test_config_entries_do_not_leak_into_other_hierarchies() -> None:
    """Each load starts from the official data: one config's places are not another's."""
    with_local, _ = load({"Alma - Gare": "Roubaix"})
    plain, _ = Hierarchy.load()
    assert with_local.resolve("Alma - Gare").place is not None
    assert plain.resolve("Alma - Gare").place is None
    assert "local:alma-gare" not in plain.related(NORD)


def test_an_equals_sign_makes_the_key_an_alias() -> None:
    """`alias: "= place"` gives a place another name; an alias can pick one homonym."""
    hierarchy, messages = load({"La Métropole": "= Métropole Européenne de Lille", "Fleury": "= Fleury (60)"})
    assert messages == []
    assert hierarchy.resolve("la metropole").place == hierarchy.get(MEL)
    fleury = hierarchy.resolve("Fleury").place
    assert fleury is not None and fleury.code == "60239"
    other = hierarchy.resolve("Fleury (80)").place
    assert other is not None and other.code == "80317"  # the brackets still reach the others


def test_an_ambiguous_child_under_a_parent_picks_the_homonym_there() -> None:
    """`Fleury: Oise` says which Fleury the admin means, so bare `Fleury` resolves to it."""
    hierarchy, messages = load({"Fleury": "Oise"})
    assert messages == []
    fleury = hierarchy.resolve("Fleury").place
    assert fleury is not None and fleury.code == "60239"


def test_entries_agreeing_with_the_official_hierarchy_are_accepted_as_they_are() -> None:
    """The example entries of an early config.yaml restate the official hierarchy: no message,
    nothing moves."""
    hierarchy, messages = load(
        {
            "Nord": "Région Hauts de France",
            "Métropole Européenne de Lille": "Nord",
            "Roubaix": "Métropole Européenne de Lille",
            "Tourcoing": "Nord",  # a grandparent agrees too
        }
    )
    assert messages == []
    assert hierarchy.ancestors(ROUBAIX) == (MEL, NORD, REGION)


def test_an_unknown_parent_is_reported_with_a_suggestion() -> None:
    """The message names the entry and offers the close official name; other entries still apply."""
    hierarchy, messages = load({"Alma - Gare": "Roubiax", "Pile": "Roubaix"})
    assert messages == ["territoires: 'Alma - Gare': parent 'Roubiax' is unknown; did you mean 'Roubaix'?"]
    assert hierarchy.resolve("Alma - Gare").place is None
    assert hierarchy.resolve("Pile").place is not None


def test_an_entry_contradicting_the_official_hierarchy_is_reported() -> None:
    """Official places are never moved: Roubaix stays in the MEL, whatever the config says."""
    hierarchy, messages = load({"Roubaix": "Pas-de-Calais"})
    assert messages == [
        "territoires: 'Roubaix': Roubaix is a commune under Métropole Européenne de Lille, Nord, "
        "Hauts-de-France, not under Pas-de-Calais; a place keeps its parent"
    ]
    assert hierarchy.ancestors(ROUBAIX) == (MEL, NORD, REGION)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"Quartier": "Saint-Aubin"}, "territoires: 'Quartier': parent 'Saint-Aubin' names several places"),
        ({"Nord": "= Pas-de-Calais"}, "territoires: 'Nord': already names Nord"),
        ({"Dury": "Nord"}, "territoires: 'Dury': names several places, none under Nord"),
        ({"MEL2": "= Métropole Europ"}, "territoires: 'MEL2': alias of 'Métropole Europ' is unknown"),
        ({"Quartier": ""}, "territoires: 'Quartier': has no parent"),
        (
            {"Nord": "Nord"},
            "territoires: 'Nord': Nord is a département under Hauts-de-France, not under Nord",
        ),
        ({"A": "B", "B": "A"}, "territoires: 'A': parent 'B' is unknown"),
    ],
)
def test_entries_that_cannot_be_used_say_why(extra: dict[str, str], message: str) -> None:
    """Ambiguous or unknown parents, renaming an official place, cycles: one message each."""
    _, messages = load(extra)
    assert messages and messages[0].startswith(message)


def test_the_example_config_territoires_load_cleanly() -> None:
    """The shipped config.yaml's `territoires:` section is usable as it is."""
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load((ROOT / "config.yaml").read_text("utf-8"))
    extra = {str(k): str(v) for k, v in (data.get("territoires") or {}).items()}
    _, messages = Hierarchy.load(extra)
    assert messages == []


def test_loading_again_reuses_the_parsed_data() -> None:
    """The CSV is parsed once per process: a further load with config entries is quick."""
    Hierarchy.load()
    start = time.perf_counter()
    for _ in range(5):
        Hierarchy.load({"Alma - Gare": "Roubaix", "La Métropole": "= MEL"})
    assert (time.perf_counter() - start) / 5 < 0.05
