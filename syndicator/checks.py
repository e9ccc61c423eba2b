"""`syndicator check`: every problem with config.yaml, the templates and the item files."""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import Config, load_config
from .errors import ConfigError, Problem
from .ingest import IngestReport, parse_many, scan
from .items import ParsedItem
from .templating import environment, template_problems


@dataclass(slots=True)
class CheckReport:
    """The problems found, and how much was looked at."""

    problems: list[Problem] = field(default_factory=list)
    item_files: int = 0
    config: Config | None = None
    hints: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(config_file: str | None) -> CheckReport:
    """Validate config.yaml and, when it loads, every item file it points at."""
    report = CheckReport()
    try:
        report.config = load_config(config_file)
    except ConfigError as exc:
        report.problems.extend(exc.problems())
        report.hints.extend([exc.hint] if exc.hint else [])
        return report
    report.problems.extend(template_problems(environment(report.config.templates_path)))
    scanned = IngestReport()
    files = scan([report.config.items_path], scanned)
    report.problems.extend(scanned.errors)
    report.item_files = len(files)
    first_file: dict[str, str] = {}
    for file, result in zip(files, parse_many([f.path for f in files]), strict=True):
        if not isinstance(result, ParsedItem):
            report.problems.extend(result.problems())
            continue
        report.problems.extend(result.warnings)
        url = result.item.url
        if url in first_file:
            report.problems.append(
                Problem(
                    file.path,
                    result.source_line,
                    f"same source URL as {first_file[url]}; only the one modified last is kept",
                    "warning",
                )
            )
        first_file.setdefault(url, file.path)
    return report
