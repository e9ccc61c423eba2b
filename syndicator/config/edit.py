"""Add and remove subscribers in config.yaml, leaving the rest of the file exactly as it was.

An admin's config.yaml is a hand-written document: comments, blank lines, column-aligned remarks,
quotes. Dumping the whole document back through a YAML library re-indents and re-wraps parts the
edit never touched, so the edit here is made on the text itself:

- ruamel.yaml (round-trip mode) composes the file into nodes that carry their exact positions;
  they locate the `subscribers:` list, each entry's lines, and its indentation;
- the new entry is serialised by ruamel.yaml (so names and terms needing quotes get them), in the
  style of the existing entries: a block mapping, lists in flow style `[A, B]`, empty lists and a
  missing name left out, indented like the entry above it;
- every byte outside the added or removed lines is kept, BOM and line endings included.

Before anything is written, the new text is loaded again and checked twice: everything but the
subscribers must be equal to what it was and the subscribers exactly what was asked (a guard
against an odd layout being spliced wrongly), and `parse_config` must accept the whole file. Any
problem raises `ConfigError` and leaves the file untouched. The file is replaced atomically (a temp
file in the same folder, then `os.replace`) with its permission bits kept, and only if nobody
changed it since it was read.

What goes with a removed entry: its own lines, comment lines indented under it, and the comment
lines just above it (no blank line between, indented no deeper than its `-`). Comment lines above
the first entry are kept: they usually describe the whole list. An address listed twice (whatever
its case) loses every entry.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from syndicator.addresses import mailbox
from syndicator.config.model import parse_config
from syndicator.errors import ConfigError, Problem
from syndicator.files import staged
from syndicator.i18n import N_, joined
from syndicator.parsing.items import VOCABULARIES

__all__ = ["add_subscriber", "remove_subscriber"]

_KEY = "subscribers"
_NULL_TAG = "tag:yaml.org,2002:null"
_BOM = "\ufeff"
_DEFAULT_INDENT = 2  # `  - email: ...` under `subscribers:`, as in the shipped config.yaml
_LIST_FIELDS = VOCABULARIES  # a subscriber's interests, one list per vocabulary


def add_subscriber(
    path: Path,
    email: str,
    *,
    name: str | None = None,
    frequency: str = "weekly",
    thematiques: Sequence[str] = (),
    territoires: Sequence[str] = (),
    types: Sequence[str] = (),
) -> None:
    """Append a subscriber at the end of `subscribers:` in the config file at `path`.

    Raises `ConfigError` (and writes nothing) when the address is already listed, whatever its
    case, or when the file would not be a valid config afterwards (a bad frequency, an address
    that is not one...). Creates `subscribers:` when the file has none.
    """
    source = _Source.read(path)
    root, old = source.compose(), source.load()
    email = email.strip()
    entry = _entry(
        email, name, frequency, {"thematiques": thematiques, "territoires": territoires, "types": types}
    )
    text, newline = source.text, source.newline
    key, value = _subscribers(root, source)

    if isinstance(value, SequenceNode) and value.value:
        for item in value.value:
            existing = _email_of(item)
            if existing is not None and _same(existing, email):
                message = (
                    N_("subscriber {email} is already listed", email=email)
                    if existing == email
                    else N_(
                        "subscriber {email} is already listed (as {existing})", email=email, existing=existing
                    )
                )
                raise ConfigError([Problem(source.name, _line(text, item), message)])
        last = value.value[-1]
        dash = _dash_index(text, last, source.name)
        dash_col = dash - _line_start(text, dash)
        key_col = _column(text, last.start_mark.index)
        if _line_start(text, last.start_mark.index) != _line_start(text, dash) or key_col < dash_col + 2:
            key_col = dash_col + 2
        at = _skip_comments_under(text, _content_end(text, last), dash_col)
        spaced = len(value.value) > 1 and _is_blank(_previous_line(text, _line_start(text, dash)))
        block = (newline if spaced else "") + _entry_text(entry, dash_col, key_col, newline)
    elif key is not None and value is not None:  # `subscribers:` with nothing, `~` or `[]`
        key_col = _column(text, key.start_mark.index)
        dash_col = key_col + _guess_indent(root, text)  # before the text changes under the nodes
        text = _blank_out(text, value)
        at = _skip_comments_under(text, _next_line_start(text, key.start_mark.index), key_col)
        block = _entry_text(entry, dash_col, dash_col + 2, newline)
    else:  # no `subscribers:` at all: a new section at the end of the top-level mapping
        at = len(text) if root is None else root.end_mark.index
        key_col = _column(text, root.value[0][0].start_mark.index) if isinstance(root, MappingNode) else 0
        dash_col = key_col + _guess_indent(root, text)
        gap = newline if at > 0 and not _is_blank(text[_line_start(text, at - 1) : at]) else ""
        block = (
            gap + " " * key_col + f"{_KEY}:{newline}" + _entry_text(entry, dash_col, dash_col + 2, newline)
        )

    if at > 0 and text[at - 1] != "\n":
        block = newline + block
    new_text = text[:at] + block + text[at:]
    _commit(source, new_text, old, [*_subscriber_list(old), _plain(entry)])


def remove_subscriber(path: Path, email: str) -> None:
    """Delete the subscriber with that address (any case) from the config file at `path`.

    Its comments go with it; every other line stays as it was. Raises `ConfigError` (and writes
    nothing) when the address is not listed or the file would not be a valid config afterwards.
    """
    source = _Source.read(path)
    root, old = source.compose(), source.load()
    email = email.strip()
    key, value = _subscribers(root, source)
    items = value.value if isinstance(value, SequenceNode) else []
    matches = [
        i for i, item in enumerate(items) if (found := _email_of(item)) is not None and _same(found, email)
    ]
    if not matches:
        line = None if key is None else _line(source.text, key)
        raise ConfigError(
            [Problem(source.name, line, N_("subscriber {email} is not listed", email=email))],
            hint=N_("`syndicator subscribers list` shows who is"),
        )
    text = source.text
    for index in reversed(matches):  # from the bottom up, so the positions above stay valid
        start, end = _entry_span(
            text, items[index], first=index == 0, last=index == len(items) - 1, name=source.name
        )
        text = text[:start] + text[end:]
    kept = [
        s for s in _subscriber_list(old) if not (isinstance(s, dict) and _same(str(s.get("email")), email))
    ]
    _commit(source, text, old, kept)


# --- reading and writing ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """A config file as read: the exact bytes, and the text the edit works on."""

    path: Path  # as the caller named it, for messages
    target: Path  # the file itself, symlinks followed: the one replaced
    raw: bytes
    text: str  # without its BOM; line endings as they are
    bom: bool
    newline: str

    @classmethod
    def read(cls, path: Path) -> _Source:
        target = Path(os.path.realpath(path))
        try:
            raw = target.read_bytes()
            text = raw.decode("utf-8")
        except FileNotFoundError:
            raise ConfigError(
                [Problem(str(path), None, N_("no such file"))],
                hint=N_("pass --config PATH or copy config.yaml from the project"),
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([Problem(str(path), None, N_("cannot read: {why}", why=exc))]) from None
        bom = text.startswith(_BOM)
        text = text.removeprefix(_BOM)
        first_break = text.find("\n")
        newline = "\r\n" if first_break > 0 and text[first_break - 1] == "\r" else "\n"
        return cls(path, target, raw, text, bom, newline)

    @property
    def name(self) -> str:
        return str(self.path)

    def compose(self) -> Node | None:
        """The document's node tree, positions included; `ConfigError` when it is not YAML."""
        try:
            return _yaml().compose(self.text)  # type: ignore[no-any-return]
        except YAMLError as exc:
            raise self._not_yaml(exc) from None

    def load(self) -> Any:
        """The document loaded (round-trip types); `ConfigError` when it cannot be."""
        try:
            return _yaml().load(self.text)
        except YAMLError as exc:
            raise self._not_yaml(exc) from None

    def _not_yaml(self, exc: YAMLError) -> ConfigError:
        if isinstance(exc, MarkedYAMLError):
            try:  # the same message `syndicator check` gives
                parse_config(self.text, self.path, environment=False)
            except ConfigError as error:
                return error
        return ConfigError([Problem(self.name, None, N_("not valid YAML: {problem}", problem=exc))])


def _yaml() -> YAML:
    return YAML(typ="rt")


def _commit(source: _Source, text: str, old: Any, subscribers: list[Any]) -> None:
    """Check the new text against what was asked, validate it, then put it in place atomically."""
    unchanged = N_("{path} was not changed", path=source.name)
    try:
        new = _yaml().load(text)
    except YAMLError:
        new = None
    if not isinstance(new, dict) or _rest(new) != _rest(old) or _subscriber_list(new) != subscribers:
        raise ConfigError(
            [
                Problem(
                    source.name, None, N_("cannot edit the subscribers of this file safely; edit it by hand")
                )
            ],
            hint=unchanged,
        )
    try:
        parse_config(text, source.path, environment=False)
    except ConfigError as exc:
        raise ConfigError(
            exc.problems(), hint=joined(N_("; "), [part for part in (exc.hint, unchanged) if part])
        ) from None
    try:
        _replace(source, ((_BOM if source.bom else "") + text).encode("utf-8"))
    except OSError as exc:
        raise ConfigError(
            [Problem(source.name, None, N_("cannot write: {why}", why=exc))], hint=unchanged
        ) from None


def _replace(source: _Source, data: bytes) -> None:
    target = source.target
    mode = stat.S_IMODE(os.stat(target).st_mode)
    with staged(target.parent, data, prefix=f".{target.name}.", mode=mode) as temporary:
        if target.read_bytes() != source.raw:  # someone saved it meanwhile: theirs wins
            raise ConfigError(
                [Problem(source.name, None, N_("the file changed while it was being edited"))],
                hint=N_("nothing was written; run the command again"),
            )
        os.replace(temporary, target)
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows it
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


# --- the entry ------------------------------------------------------------------------------------


def _entry(email: str, name: str | None, frequency: str, lists: dict[str, Sequence[str]]) -> CommentedMap:
    entry = CommentedMap()
    entry["email"] = email
    if name is not None and name.strip():
        entry["name"] = name.strip()
    entry["frequency"] = frequency.strip()
    for field in _LIST_FIELDS:
        terms = list(dict.fromkeys(t.strip() for t in lists[field] if t.strip()))
        if terms:
            flow = CommentedSeq(terms)
            flow.fa.set_flow_style()
            entry[field] = flow
    return entry


def _entry_text(entry: CommentedMap, dash_col: int, key_col: int, newline: str) -> str:
    """The entry as block lines: `-` at `dash_col`, keys at `key_col`."""
    yaml = _yaml()
    yaml.indent(mapping=2, sequence=key_col, offset=dash_col)
    yaml.width = 4096  # never wrap a long name or list onto a second line
    out = io.StringIO()
    yaml.dump({_KEY: [entry]}, out)
    lines = out.getvalue().split("\n", 1)[1]  # drop the `subscribers:` line
    return lines.replace("\n", newline)


def _rest(document: Any) -> dict[str, Any]:
    """Everything in a loaded document but its subscribers, as plain values."""
    plain = _plain(document) if isinstance(document, dict) else {}
    plain.pop(_KEY, None)
    return plain


def _subscriber_list(document: Any) -> list[Any]:
    """The subscribers of a loaded document as plain values ([] when absent or null)."""
    value = document.get(_KEY) if isinstance(document, dict) else None
    return list(_plain(value)) if isinstance(value, list) else []


def _plain(value: Any) -> Any:
    """Round-trip containers as plain dicts and lists, for comparing contents."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _same(a: str, b: str) -> bool:
    return mailbox(a) == mailbox(b)


# --- finding things in the node tree -------------------------------------------------------------


def _subscribers(root: Node | None, source: _Source) -> tuple[Node | None, Node | None]:
    """The `subscribers` key and value nodes (None, None when absent), if this code can edit them."""
    if root is None:
        return None, None
    if not isinstance(root, MappingNode) or root.flow_style:
        raise ConfigError(
            [
                Problem(
                    source.name,
                    _line(source.text, root),
                    N_("the file must be a mapping of keys (site:, items:, ...)"),
                )
            ]
        )
    for key, value in root.value:
        if isinstance(key, ScalarNode) and key.value == _KEY:
            empty = (isinstance(value, ScalarNode) and value.tag == _NULL_TAG) or (
                isinstance(value, SequenceNode) and not value.value
            )
            if not empty and not (isinstance(value, SequenceNode) and not value.flow_style):
                raise ConfigError(
                    [
                        Problem(
                            source.name,
                            _line(source.text, key),
                            N_("{key} must be a list of `- email: ...` entries", key=_KEY),
                        )
                    ],
                    hint=N_("write one entry per subscriber, each starting with `- email:` on its own line"),
                )
            return key, value
    return None, None


def _email_of(item: Node) -> str | None:
    if isinstance(item, MappingNode):
        for key, value in item.value:
            if isinstance(key, ScalarNode) and key.value == "email" and isinstance(value, ScalarNode):
                return str(value.value)
    return None


def _guess_indent(root: Node | None, text: str) -> int:
    """How deep the file indents a section's content: the first nested block mapping tells."""
    if isinstance(root, MappingNode):
        for key, value in root.value:
            if isinstance(value, MappingNode) and not value.flow_style and value.value:
                depth = _column(text, value.value[0][0].start_mark.index) - _column(
                    text, key.start_mark.index
                )
                if depth > 0:
                    return depth
    return _DEFAULT_INDENT


def _content_end(text: str, item: Node) -> int:
    """Where the line holding the entry's last value ends (after its line break)."""
    node = item
    while isinstance(node, MappingNode | SequenceNode) and node.value and not node.flow_style:
        node = node.value[-1][1] if isinstance(node, MappingNode) else node.value[-1]
    end = node.end_mark.index
    while end > item.start_mark.index and text[end - 1] in " \t\r\n":
        end -= 1
    return _next_line_start(text, end)


def _dash_index(text: str, item: Node, name: str) -> int:
    """The position of the `-` that opens a block sequence entry."""
    index = item.start_mark.index
    start = _line_start(text, index)
    segment = text[start:index]
    while True:
        stripped = segment.rstrip()
        if stripped.endswith("-") and not stripped[:-1].strip():
            return start + len(stripped) - 1
        if stripped or start == 0:
            raise ConfigError(
                [
                    Problem(
                        name,
                        _line(text, item),
                        N_("cannot find where this subscriber starts; edit it by hand"),
                    )
                ]
            )
        end = start - 1
        start = _line_start(text, end)
        segment = text[start:end].split("#", 1)[0]  # a line between `-` and its mapping holds no value


def _entry_span(text: str, item: Node, *, first: bool, last: bool, name: str) -> tuple[int, int]:
    """The whole lines an entry and its comments take, with one blank separator if entries have them."""
    dash = _dash_index(text, item, name)
    start = _line_start(text, dash)
    dash_col = dash - start
    end = _skip_comments_under(text, _content_end(text, item), dash_col)
    if not first:
        while start > 0:
            above = _line_start(text, start - 1)
            line = text[above:start]
            if not (_is_comment(line) and _indent(line) <= dash_col):
                break
            start = above
    blank_above = start > 0 and _is_blank(_previous_line(text, start))
    blank_below = end < len(text) and _is_blank(_line_at(text, end))
    if blank_below and (blank_above or (first and not last)):  # entries spaced by blank lines
        while end < len(text) and _is_blank(_line_at(text, end)):
            end = _next_line_start(text, end)
    elif blank_above and end >= len(text):
        while start > 0 and _is_blank(_previous_line(text, start)):
            start = _line_start(text, start - 1)
    return start, end


def _skip_comments_under(text: str, at: int, col: int) -> int:
    """Past the comment lines starting at `at` that are indented deeper than `col`."""
    while at < len(text):
        line = _line_at(text, at)
        if not (_is_comment(line) and _indent(line) > col):
            break
        at = _next_line_start(text, at)
    return at


def _blank_out(text: str, value: Node) -> str:
    """Remove an explicit empty value (`~`, `null`, `[]`), keeping any comment in its column."""
    start: int = value.start_mark.index
    end: int = value.end_mark.index
    line_end = _next_line_start(text, end)
    rest = text[end:line_end].rstrip("\r\n")
    if not rest.strip():
        cut = start
        while cut > 0 and text[cut - 1] in " \t":
            cut -= 1
        return text[:cut] + text[end + len(rest) :]
    return text[:start] + " " * (end - start) + text[end:]


# --- text positions -------------------------------------------------------------------------------


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _next_line_start(text: str, index: int) -> int:
    found = text.find("\n", index)
    return len(text) if found < 0 else found + 1


def _line_at(text: str, index: int) -> str:
    return text[index : _next_line_start(text, index)]


def _previous_line(text: str, start: int) -> str:
    """The line before the one starting at `start` ("" at the top of the file)."""
    return "" if start == 0 else text[_line_start(text, start - 1) : start]


def _column(text: str, index: int) -> int:
    return index - _line_start(text, index)


def _line(text: str, node: Node) -> int:
    """The 1-based line a node starts on."""
    return text.count("\n", 0, node.start_mark.index) + 1


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _is_comment(line: str) -> bool:
    return line.lstrip(" \t").startswith("#")


def _is_blank(line: str) -> bool:
    return not line.strip()
