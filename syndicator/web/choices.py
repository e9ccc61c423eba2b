"""What a subscriber may choose on the web, and the forms that choose it (preferences, sign-up).

The thématiques and types are those the store knows (its `terms`); territoires are any place
of the hierarchy (3,900 of them: searched by name or code, without JavaScript) or a
territoire the store knows. Submitted names are validated against these and stored as the
store spells them (`Région Hauts de France`); a place the items never named is stored under
its official name, qualified when several places share it (`Saint-Aubin (59)`), so that
matching reads it back as the same place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from starlette.datastructures import FormData

from syndicator.config.frequencies import Frequency
from syndicator.config.subscribers import Subscriber
from syndicator.db.store import Store
from syndicator.taxonomy.terms import slugify, term_key
from syndicator.taxonomy.territoires import Hierarchy, Place

FREQUENCY_LABELS: Mapping[Frequency, str] = {
    "immediate": "Dès qu’une actualité paraît",
    "daily": "Chaque jour",
    "weekly": "Chaque semaine",
    "monthly": "Chaque mois",
}
LEVEL_LABELS = {
    "region": "région",
    "departement": "département",
    "epci": "intercommunalité",
    "commune": "commune",
    "local": "quartier",
}
SEARCH_LIMIT = 30
_LEVEL_ORDER = {level: rank for rank, level in enumerate(LEVEL_LABELS)}


@dataclass(frozen=True, slots=True)
class Chosen:
    """A frequency and three lists of names: what a form chose."""

    frequency: Frequency
    thematiques: tuple[str, ...] = ()
    territoires: tuple[str, ...] = ()
    types: tuple[str, ...] = ()

    @classmethod
    def of(cls, subscriber: Subscriber) -> Chosen:
        return cls(subscriber.frequency, subscriber.thematiques, subscriber.territoires, subscriber.types)

    def applied(self, subscriber: Subscriber) -> Subscriber:
        """The subscriber with these choices."""
        return replace(subscriber, frequency=self.frequency, thematiques=self.thematiques,
                       territoires=self.territoires, types=self.types)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Option:
    """One checkbox or radio button: the value sent and stored, the label shown."""

    value: str
    label: str
    checked: bool = False


@dataclass(frozen=True, slots=True)
class ChoiceForm:
    """The interests part of a form, ready for `templates/web/_interests.html`."""

    frequencies: list[Option]
    thematiques: list[Option]
    types: list[Option]
    territoires: list[Option]  # the chosen ones, then those the items name
    query: str  # the territoire search, as typed
    found: list[Option]  # places matching the search that the list above lacks
    more: int  # matches beyond those shown


def display_name(hierarchy: Hierarchy, place: Place) -> str:
    """The name that resolves to this place alone: `Roubaix`, `Saint-Aubin (59)`, else its code."""
    if hierarchy.resolve(place.name).place == place:
        return place.name
    departement = next(
        (a for a in hierarchy.ancestors(place.code) if hierarchy.get(a).level == "departement"), None
    )
    qualified = f"{place.name} ({departement})" if departement else place.code
    return qualified if hierarchy.resolve(qualified).place == place else place.code


class TerritoireSearch:
    """Every place of a hierarchy, folded once for searching by name or code."""

    def __init__(self, hierarchy: Hierarchy) -> None:
        self.hierarchy = hierarchy
        self._places = sorted(
            ((slugify(p.name), p) for p in hierarchy.places()),
            key=lambda entry: (_LEVEL_ORDER[entry[1].level], entry[0]),
        )

    def find(self, query: str, limit: int = SEARCH_LIMIT) -> tuple[list[Place], int]:
        """Places whose name holds the query (accents, case and hyphens aside), or whose code
        starts with it: exact names first, then names starting with it, then the others; the
        first `limit`, and how many more there are."""
        wanted = slugify(query)
        if not wanted:
            return [], 0
        ranked = []
        for slug, place in self._places:
            if slug == wanted or place.code == query.strip():
                ranked.append((0, place))
            elif slug.startswith(wanted) or place.code.startswith(wanted):
                ranked.append((1, place))
            elif wanted in slug:
                ranked.append((2, place))
        ranked.sort(key=lambda entry: entry[0])  # stable: level, then name, within a rank
        return [place for _, place in ranked[:limit]], max(0, len(ranked) - limit)


@lru_cache(maxsize=4)
def territoire_search(hierarchy: Hierarchy) -> TerritoireSearch:
    """The search of a hierarchy, built once (a few milliseconds for 3,900 places)."""
    return TerritoireSearch(hierarchy)


def known_terms(store: Store) -> dict[str, dict[str, str]]:
    """The store's term names by vocabulary, then by key, sorted by name."""
    known: dict[str, dict[str, str]] = {"thematiques": {}, "territoires": {}, "types": {}}
    for term in sorted(store.terms().values(), key=lambda t: slugify(t.name)):
        known[term.vocabulary].setdefault(term_key(term.name), term.name)
    return known


def _place_key(hierarchy: Hierarchy, name: str) -> str:
    """What makes two territoire names the same choice: their place, else their term key."""
    place = hierarchy.resolve(name).place
    return place.code if place else "term:" + term_key(name)


def choice_form(store: Store, hierarchy: Hierarchy, chosen: Chosen, *, query: str = "") -> ChoiceForm:
    """The options of a form, with `chosen` checked and the territoires matching `query`."""
    known = known_terms(store)

    def listed(vocabulary: str, picked: Sequence[str]) -> list[Option]:
        keys = {term_key(name) for name in picked}
        options = [Option(name, name, key in keys) for key, name in known[vocabulary].items()]
        options += [Option(name, name, True) for name in picked if term_key(name) not in known[vocabulary]]
        return options

    territoires: dict[str, Option] = {}
    for name in chosen.territoires:
        territoires.setdefault(_place_key(hierarchy, name), Option(name, _label(hierarchy, name), True))
    for name in sorted(known["territoires"].values(), key=lambda n: _rank(hierarchy, n)):
        territoires.setdefault(_place_key(hierarchy, name), Option(name, _label(hierarchy, name)))
    found: list[Option] = []
    places, more = territoire_search(hierarchy).find(query)
    for place in places:
        if place.code not in territoires:
            name = display_name(hierarchy, place)
            found.append(Option(name, _label(hierarchy, name)))
    return ChoiceForm(
        frequencies=[Option(f, label, f == chosen.frequency) for f, label in FREQUENCY_LABELS.items()],
        thematiques=listed("thematiques", chosen.thematiques),
        types=listed("types", chosen.types),
        territoires=list(territoires.values()),
        query=query.strip(),
        found=found,
        more=more,
    )


def _rank(hierarchy: Hierarchy, name: str) -> tuple[int, str]:
    """Territoires listed from the largest to the smallest, then by name."""
    place = hierarchy.resolve(name).place
    return (_LEVEL_ORDER[place.level] if place else len(_LEVEL_ORDER), slugify(name))


def _label(hierarchy: Hierarchy, name: str) -> str:
    """A territoire as a checkbox shows it: `Roubaix — commune`, `Nord — département 59`."""
    place = hierarchy.resolve(name).place
    if place is None:
        return name
    if place.level == "departement":
        return f"{name} — département {place.code}"
    return f"{name} — {LEVEL_LABELS[place.level]}"


def _values(form: FormData, field: str) -> list[str]:
    seen: dict[str, str] = {}
    for value in form.getlist(field):
        if isinstance(value, str) and value.strip():
            seen.setdefault(" ".join(value.split()), "")
    return list(seen)


def read_choice(
    form: FormData, store: Store, hierarchy: Hierarchy, previous: Chosen | None = None
) -> tuple[Chosen, list[str]]:
    """The choice a form sent (fields `frequency`, `thematiques`, `territoires`, `types`),
    names checked against the store's terms and the hierarchy, and the problems in French.
    Names the subscriber had already (`previous`) pass as they are, known or not."""
    known = known_terms(store)
    problems: list[str] = []
    kept = previous or Chosen("weekly")
    raw = form.get("frequency")
    frequency = next((f for f in FREQUENCY_LABELS if f == raw), None)
    if frequency is None:
        problems.append("Choisissez la fréquence des messages.")

    def terms(vocabulary: str, before: Iterable[str], unknown: str) -> tuple[str, ...]:
        had = {term_key(name): name for name in before}
        names: dict[str, str] = {}
        for value in _values(form, vocabulary):
            key = term_key(value)
            name = known[vocabulary].get(key) or had.get(key)
            if name is None:
                problems.append(f"{unknown} : « {value} ».")
            else:
                names.setdefault(key, name)
        return tuple(names.values())

    territoires: dict[str, str] = {}
    had = {_place_key(hierarchy, name): name for name in kept.territoires}
    spelt = {_place_key(hierarchy, name): name for name in known["territoires"].values()}
    for value in _values(form, "territoires"):
        resolution = hierarchy.resolve(value)
        key = _place_key(hierarchy, value)
        if key in had:
            name = had[key]
        elif key in spelt:
            name = spelt[key]
        elif resolution.place is not None:
            name = display_name(hierarchy, resolution.place)
        else:
            problems.append(f"Territoire inconnu : « {value} ».")
            continue
        territoires.setdefault(key, name)
    chosen = Chosen(
        frequency=frequency or kept.frequency,
        thematiques=terms("thematiques", kept.thematiques, "Thématique inconnue"),
        territoires=tuple(territoires.values()),
        types=terms("types", kept.types, "Type d’actualité inconnu"),
    )
    return chosen, problems
