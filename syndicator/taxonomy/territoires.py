"""The territoires of Hauts-de-France: région → départements → EPCI → communes, and admins' places.

The official hierarchy comes from `syndicator/data/territoires-hauts-de-france.csv` (see the
README beside it): the région 32, its 5 départements, its 92 EPCI (intercommunalités, SIREN
code) and its 3,782 communes (INSEE code). It is parsed once per process and shared.

Labels (in item files and in config.yaml) resolve by official name, by code (`59512`, `59`,
`32`, an EPCI's SIREN) or by alias, whatever their case, accents, hyphens, apostrophes and
spacing: `Région Hauts de France`, `region hauts-de-france` and `Hauts de France` are all the
région 32. Built-in aliases:

- `Région Hauts de France` (the website's label) and `HDF` → the région 32;
- `MEL` → Métropole Européenne de Lille;
- every EPCI by its long form (`Communauté d'agglomération du Beauvaisis` for `CA du
  Beauvaisis`, likewise `CC` → `Communauté de communes`, `CU` → `Communauté urbaine`), and
  by its name without `CA`/`CC`/`CU` when what is left does not start with de/du/des/d'
  and names no other place (`Amiens Métropole`, `Flandre Lys`, but not `de Dunkerque`).

Some commune names exist in several départements (`Saint-Aubin`, `Fleury`…): such a bare
name is ambiguous and resolves to no place, with its candidates listed. A qualifier in
brackets picks one: `Saint-Aubin (59)`, or `Saint-Aubin (Nord)`; so can an alias.

Admins extend the hierarchy with config.yaml's `territoires:` mapping, `child: parent`:

- a child that names no place yet is a new place of level "local" (a quartier prioritaire,
  say) under its parent, coded `local:<slug>`; local places may nest;
- `alias: "= place"` makes `alias` another name of that place;
- an entry about two official places is accepted when it agrees with the official
  hierarchy (`Nord: Région Hauts de France`) and reported when it contradicts it: official
  places are never moved;
- an ambiguous child under a parent that holds exactly one of its candidates
  (`Fleury: Oise`) makes the bare name mean that candidate.

Matching (docs/architecture.md, "Matching rule") uses `Hierarchy.related`: a place, everything above it
and everything below it. Above a commune are its EPCI, its own département (the first two
digits of its INSEE code) and the région. Above an EPCI are the département of its seat (its
`parent`) and every other département holding one of its communes, then the région: so a
commune of Pas-de-Calais in an EPCI seated in Nord (Fleurbaix in CC Flandre Lys) is not
under Nord, while the EPCI is under both. The two EPCI that straddle another région (their
CSV row has no parent) get as `parent` the département holding most of their communes here.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Literal, get_args

from syndicator.taxonomy.terms import is_close

Level = Literal["region", "departement", "epci", "commune", "local"]
REGION = "32"
LOCAL_PREFIX = "local:"
DATA_FILE = "territoires-hauts-de-france.csv"
OUTSIDE_FILE = "places-outside-hauts-de-france.csv"  # not a hierarchy: for messages only

# Built-in aliases, label → code. `Hauts de France` needs none: it is the official name once
# hyphens are ignored. The EPCI long and prefix-less forms are derived in `_official`.
BUILTIN_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "Région Hauts de France": REGION,  # the label the IREV website uses
        "HDF": REGION,
        "MEL": "200093201",  # Métropole Européenne de Lille
    }
)
_EPCI_PREFIXES = {
    "CA": "Communauté d'agglomération",
    "CC": "Communauté de communes",
    "CU": "Communauté urbaine",
}
_ARTICLE = re.compile(r"(de|du|des|d)\b", re.IGNORECASE)
_QUALIFIED = re.compile(r"(?P<name>.+?)\s*\((?P<qualifier>[^()]+)\)")
# Ligatures NFKD keeps whole, and punctuation that ASCII folding would drop without a space.
_FOLD = str.maketrans(
    {"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss"} | dict.fromkeys("’‘‛ʼ´`«»“”‐‑‒–—―·\u00a0", " ")
)
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_NO_EXTRA: Mapping[str, str] = MappingProxyType({})
_LEVELS: Mapping[str, Level] = MappingProxyType({level: level for level in get_args(Level)})
_LEVEL_WORDS: Mapping[str, str] = MappingProxyType(
    {
        "region": "the région",
        "departement": "a département",
        "epci": "an EPCI",
        "commune": "a commune",
        "local": "a local place",
    }
)


def _label_key(label: str) -> str:
    """A label as matching sees it: lower-case ASCII words, without accents or punctuation."""
    if not label.isascii():
        label = unicodedata.normalize("NFKD", label.translate(_FOLD)).encode("ascii", "ignore").decode()
    return _NOT_ALNUM.sub(" ", label.lower()).strip()


@dataclass(frozen=True, slots=True)
class Place:
    """One territoire: its code, its name as written, its level and its parent's code."""

    code: str
    name: str
    level: Level
    parent: str | None


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a label means: one place, several candidates (ambiguous), or nothing known."""

    label: str
    place: Place | None
    candidates: tuple[Place, ...] = ()  # non-empty only when ambiguous

    @property
    def ambiguous(self) -> bool:
        """True when the label names several places and none was chosen."""
        return bool(self.candidates)


@dataclass(frozen=True, slots=True)
class _Official:
    """The parsed CSV and what is derived from it; shared, never mutated."""

    places: Mapping[str, Place]
    names: Mapping[str, tuple[str, ...]]  # label key → codes (several: ambiguous)
    aliases: Mapping[str, str]  # label key → code
    alias_labels: Mapping[str, str]  # label key → the alias as written
    ancestors: Mapping[str, tuple[str, ...]]
    descendants: Mapping[str, frozenset[str]]


class Hierarchy:
    """The official territoires plus config.yaml's; build it with `Hierarchy.load`."""

    __slots__ = ("_alias_labels", "_aliases", "_ancestors", "_descendants", "_names", "_places", "_related")

    def __init__(self, official: _Official) -> None:
        # Copies (a millisecond) so that config entries never touch the shared official data.
        self._places = dict(official.places)
        self._names = dict(official.names)
        self._aliases = dict(official.aliases)
        self._alias_labels = dict(official.alias_labels)
        self._ancestors = dict(official.ancestors)
        self._descendants = dict(official.descendants)
        self._related: dict[str, frozenset[str]] = {}

    @classmethod
    def load(cls, extra: Mapping[str, str] = _NO_EXTRA) -> tuple[Hierarchy, list[str]]:
        """The hierarchy with config.yaml's `territoires:` entries (child: parent) applied.

        Returns it with one message per entry it could not use, each naming the entry's key
        (`territoires: 'Alma - Gare': parent 'Roubiax' is unknown; did you mean 'Roubaix'?`);
        the other entries still apply. Entries may come in any order.
        """
        hierarchy = cls(_official())
        return hierarchy, hierarchy._apply(extra)

    # --- queries -------------------------------------------------------------------------

    def resolve(self, label: str) -> Resolution:
        """The place a label names: by code, alias or name; `Name (qualifier)` picks among homonyms."""
        text = " ".join(label.split())
        codes = self._lookup(text)
        if not codes and (qualified := _QUALIFIED.fullmatch(text)):
            codes = self._qualified(qualified["name"], qualified["qualifier"])
        if len(codes) == 1:
            return Resolution(label, self._places[codes[0]])
        return Resolution(label, None, tuple(self._places[c] for c in sorted(codes)))

    def get(self, code: str) -> Place:
        """The place of that code; KeyError when there is none."""
        return self._places[code]

    def label(self, code: str) -> str:
        """How to write a place so that it names it alone: its name, with its département in
        brackets when other places share the name (`Saint-Aubin (59)`)."""
        return self._display(code)

    def places(self) -> list[Place]:
        """Every place, official and config.yaml's (for the web pages' search)."""
        return list(self._places.values())

    def ancestors(self, code: str) -> tuple[str, ...]:
        """The codes of the places above, nearest first, up to the région (see the module doc)."""
        return self._ancestors[code]

    def descendants(self, code: str) -> frozenset[str]:
        """The codes of every place below, at any depth."""
        if code not in self._places:
            raise KeyError(code)
        return self._descendants.get(code, frozenset())

    def related(self, code: str) -> frozenset[str]:
        """The place itself, its ancestors and its descendants: what a subscriber to it follows."""
        if code not in self._related:
            self._related[code] = frozenset((code, *self.ancestors(code))) | self.descendants(code)
        return self._related[code]

    def suggest(self, label: str, n: int = 3) -> list[str]:
        """Up to n names close to a label, for "did you mean"; homonyms come with their `(dd)`.

        Close means a few typos away (`taxonomy.is_close`), or, for a label of several words,
        a name holding all of them (`Lille Métropole` → Métropole Européenne de Lille): never a
        place that merely looks alike (`Paris` is not `Paars`)."""
        key = _label_key(label)
        if not key or n <= 0:
            return []
        words = set(key.split())
        scored: list[tuple[int, str]] = []
        for candidate in (*self._names, *self._aliases):
            if is_close(key, candidate):
                scored.append((0, candidate))
            elif len(words) > 1 and words <= set(candidate.split()):
                scored.append((1, candidate))
        found: dict[str, str] = {}  # code → its closest spelling
        for _, close in sorted(scored):
            if close in self._aliases:
                found.setdefault(self._aliases[close], self._alias_labels[close])
            for code in sorted(self._names.get(close, ())):
                found.setdefault(code, self._display(code))
        return list(found.values())[:n]

    def outside(self, label: str) -> list[str]:
        """What a label names outside Hauts-de-France, from a short shipped list of régions,
        départements and large communes (`Marseille` → `a commune of Bouches-du-Rhône (13)`);
        empty when it names nothing there or a place of this hierarchy."""
        if self.resolve(label).place is not None:
            return []
        return list(_outside().get(_label_key(label), ()))

    # --- internals -----------------------------------------------------------------------

    def _lookup(self, text: str) -> tuple[str, ...]:
        if text in self._places:
            return (text,)
        key = _label_key(text)
        if key in self._aliases:
            return (self._aliases[key],)
        return self._names.get(key, ())

    def _qualified(self, name: str, qualifier: str) -> tuple[str, ...]:
        """The places called `name` that lie under the place `qualifier` names."""
        if qualifier.isdigit() and len(qualifier) == 1:
            qualifier = qualifier.zfill(2)  # `(2)` for Aisne
        within = self._lookup(qualifier)
        if len(within) != 1:
            return ()
        key = _label_key(name)
        homonyms = self._names.get(key) or ((self._aliases[key],) if key in self._aliases else ())
        return tuple(c for c in homonyms if within[0] in self._ancestors[c])

    def _display(self, code: str) -> str:
        """A place's name, with its département in brackets when other places share the name."""
        place = self._places[code]
        if len(self._names.get(_label_key(place.name), ())) > 1:
            departement = next(
                (a for a in self._ancestors[code] if self._places[a].level == "departement"), None
            )
            if departement:
                return f"{place.name} ({departement})"
        return place.name

    def _describe(self, code: str) -> str:
        place = self._places[code]
        if place.level == "region":
            return f"{place.name} is the région, under no other place"
        above = ", ".join(self._places[a].name for a in self._ancestors[code])
        return f"{self._display(code)} is {_LEVEL_WORDS[place.level]} under {above}"

    def _not_one(self, role: str, text: str) -> str:
        """Why `text` names no single place: unknown (with suggestions) or ambiguous."""
        found = self.resolve(text)
        if found.ambiguous:
            options = ", ".join(f"'{self._display(p.code)}'" for p in found.candidates)
            return f"{role} '{text}' names several places: write one of {options}"
        message = f"{role} '{text}' is unknown"
        if close := self.suggest(text):
            quoted = [f"'{s}'" for s in close]
            listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
            message += f"; did you mean {listed}?"
        return message

    def _apply(self, extra: Mapping[str, str]) -> list[str]:
        """Apply config entries until none more can be; the messages, in the file's order."""
        pending = list(enumerate(extra.items()))
        messages: dict[int, str] = {}
        while pending:
            waiting: list[tuple[int, tuple[str, str]]] = []
            for index, (key, value) in pending:
                outcome = self._add(" ".join(str(key).split()), " ".join(str(value).split()))
                if outcome is None:
                    messages.pop(index, None)  # a later entry gave it what it waited for
                    continue
                message, retry = outcome
                messages[index] = f"territoires: '{key}': {message}"
                if retry:
                    waiting.append((index, (key, value)))
            if len(waiting) == len(pending):
                break  # no progress: what waits for a parent will never get one
            pending = waiting
        self._related.clear()
        return [messages[i] for i in sorted(messages)]

    def _add(self, child: str, value: str) -> tuple[str, bool] | None:
        """Apply one entry; else the message and whether a later entry could still unblock it."""
        if not _label_key(child):
            return "is not a place name: it holds no letter or digit", False
        if value.startswith("="):
            return self._add_alias(child, value[1:].strip())
        if not value:
            return "has no parent: write 'place: parent', or 'alias: = place' for another name", False
        parent_found = self.resolve(value)
        if parent_found.place is None:
            return self._not_one("parent", value), True
        parent = parent_found.place
        found = self.resolve(child)
        if found.place is not None:
            if parent.code in self._ancestors[found.place.code]:
                return None  # agrees with what is known already
            return (
                f"{self._describe(found.place.code)}, not under {parent.name}; a place keeps its parent",
                False,
            )
        if found.ambiguous:
            under = [p for p in found.candidates if parent.code in self._ancestors[p.code]]
            if len(under) == 1:
                self._aliases[_label_key(child)] = under[0].code
                self._alias_labels[_label_key(child)] = child
                return None
            options = ", ".join(f"'{self._display(p.code)}'" for p in found.candidates)
            how_many = "more than one" if under else "none"
            return f"names several places, {how_many} under {parent.name}: write one of {options}", False
        self._add_local(child, parent.code)
        return None

    def _add_alias(self, alias: str, target_text: str) -> tuple[str, bool] | None:
        if not target_text:
            return "is an alias of nothing: write 'alias: = place'", False
        target_found = self.resolve(target_text)
        if target_found.place is None:
            return self._not_one("alias of", target_text), True
        target = target_found.place
        found = self.resolve(alias)
        if found.place is not None:
            if found.place.code == target.code:
                return None
            return f"already names {self._display(found.place.code)}; it cannot also be {target.name}", False
        if found.ambiguous and target not in found.candidates:
            options = ", ".join(f"'{self._display(p.code)}'" for p in found.candidates)
            return f"names several places already ({options}); an alias may pick one of them", False
        self._aliases[_label_key(alias)] = target.code
        self._alias_labels[_label_key(alias)] = alias
        return None

    def _add_local(self, name: str, parent: str) -> None:
        code = LOCAL_PREFIX + _label_key(name).replace(" ", "-")
        self._places[code] = Place(code, name, "local", parent)
        self._names[_label_key(name)] = (code,)
        ancestors = (parent, *self._ancestors[parent])
        self._ancestors[code] = ancestors
        for above in ancestors:
            self._descendants[above] = self._descendants.get(above, frozenset()) | {code}


@cache
def _official() -> _Official:
    """Parse the shipped CSV once per process (some 25 ms) and derive the indexes."""
    text = resources.files("syndicator.taxonomy.data").joinpath(DATA_FILE).read_text(encoding="utf-8")
    rows = csv.reader(io.StringIO(text))
    if next(rows)[:4] != ["code", "nom", "niveau", "parent_code"]:
        raise ValueError(f"{DATA_FILE}: the columns are not code,nom,niveau,parent_code,…")
    raw: dict[str, tuple[str, Level, str | None]] = {}
    for code, name, niveau, parent_code, *_ in rows:
        level = _LEVELS.get(niveau)
        if level is None or level == "local":
            raise ValueError(f"{DATA_FILE}: {code}: unknown niveau {niveau!r}")
        raw[code] = (name, level, parent_code or None)

    departements = {code for code, (_, level, _) in raw.items() if level == "departement"}
    # How many communes each EPCI has in each département.
    spread: dict[str, dict[str, int]] = {}
    for code, (_, level, parent) in raw.items():
        if level == "commune" and parent is not None and code[:2] in departements:
            counts = spread.setdefault(parent, {})
            counts[code[:2]] = counts.get(code[:2], 0) + 1

    places: dict[str, Place] = {}
    ancestors: dict[str, tuple[str, ...]] = {}
    for code, (name, level, parent) in raw.items():
        if level == "epci":
            counts = spread.get(code, {})
            seat = parent
            if seat is None and counts:  # straddles another région: its main département here
                seat = min(counts, key=lambda d: (-counts[d], d))
            others = sorted(d for d in counts if d != seat)
            ancestors[code] = (*((seat,) if seat else ()), *others, REGION)
            places[code] = Place(code, name, level, seat)
            continue
        if level == "departement":
            ancestors[code] = (REGION,)
        elif level == "region":
            ancestors[code] = ()
        places[code] = Place(code, name, level, parent)
    for code, place in places.items():
        if place.level == "commune":  # its EPCI, its own département (INSEE code), the région
            above: tuple[str, ...]
            if code[:2] in departements:
                above = (code[:2], REGION)
            else:
                above = ancestors[place.parent] if place.parent else (REGION,)
            ancestors[code] = (place.parent, *above) if place.parent and place.parent not in above else above

    names: dict[str, tuple[str, ...]] = {}
    for code, place in places.items():
        key = _label_key(place.name)
        names[key] = (*names.get(key, ()), code)

    alias_labels = dict(BUILTIN_ALIASES.items())
    for code, place in places.items():
        prefix, _, rest = place.name.partition(" ")
        if place.level != "epci" or prefix not in _EPCI_PREFIXES:
            continue
        alias_labels[f"{_EPCI_PREFIXES[prefix]} {rest}"] = code
        if not _ARTICLE.match(rest):
            alias_labels[rest] = code
    meanings: dict[str, set[str]] = {}
    for label, code in alias_labels.items():
        meanings.setdefault(_label_key(label), set()).add(code)
    aliases: dict[str, str] = {}
    labels: dict[str, str] = {}
    for label, code in alias_labels.items():
        key = _label_key(label)
        if key not in names and len(meanings[key]) == 1:  # an alias never shadows nor guesses
            aliases[key] = code
            labels.setdefault(key, label)

    descendants: dict[str, set[str]] = {}
    for code, above in ancestors.items():
        for ancestor in above:
            descendants.setdefault(ancestor, set()).add(code)
    return _Official(
        places=MappingProxyType(places),
        names=MappingProxyType(names),
        aliases=MappingProxyType(aliases),
        alias_labels=MappingProxyType(labels),
        ancestors=MappingProxyType(ancestors),
        descendants=MappingProxyType({code: frozenset(below) for code, below in descendants.items()}),
    )


@cache
def _outside() -> Mapping[str, tuple[str, ...]]:
    """Label key → descriptions of the places of that name outside the région (see the data README)."""
    text = resources.files("syndicator.taxonomy.data").joinpath(OUTSIDE_FILE).read_text(encoding="utf-8")
    rows = csv.DictReader(io.StringIO(text))
    departements = {row["departement"]: row["nom"] for row in rows if row["niveau"] == "departement"}
    found: dict[str, tuple[str, ...]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        name, level, code = row["nom"], row["niveau"], row["departement"]
        if level == "region":
            what = f"a région of France ({name})"
        elif level == "departement":
            what = f"a département ({name}, {code})"
        else:
            what = f"a commune of {departements.get(code, code)} ({code})"
        key = _label_key(name)
        found[key] = (*found.get(key, ()), what)
    return MappingProxyType(found)
