"""The one error root of the project and the problem records that commands report.

Every error a user can cause derives from `SyndicatorError`; the CLI catches it in one place and
prints it as `file:line: message`. Subclasses also inherit the builtin they resemble, so library
callers can catch `ValueError` or `OSError` as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from syndicator.i18n import _, shown

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one input, located at a file and line."""

    path: str
    line: int | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {prefix}{self.message}"

    def translated(self) -> str:
        """The problem in the admin's language (`str()` stays English, for logs)."""
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        message = shown(self.message)
        if self.severity == "warning":
            return _("{where}: warning: {message}").format(where=where, message=message)
        return f"{where}: {message}"


class SyndicatorError(Exception):
    """Root of every error caused by bad input or a bad environment, never by a bug."""

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.hint = hint

    def problems(self) -> list[Problem]:
        """The located problems this error stands for (one, unless a subclass holds several)."""
        return [Problem(self.path or "syndicator", self.line, self.message)]

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems())


class ItemError(SyndicatorError, ValueError):
    """An item file that cannot be read as an item (empty, binary, no source URL...)."""


class ConfigError(SyndicatorError, ValueError):
    """config.yaml is unreadable or invalid; holds every problem found, not just the first."""

    def __init__(self, problems: list[Problem], *, hint: str | None = None) -> None:
        first = problems[0]
        super().__init__(first.message, path=first.path, line=first.line, hint=hint)
        self._problems = problems

    def problems(self) -> list[Problem]:
        return list(self._problems)


class StoreError(SyndicatorError, RuntimeError):
    """The database cannot be opened or is at a schema version this code does not know."""
