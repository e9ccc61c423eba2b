"""The `syndicator` command line: parses arguments, calls the modules, prints, sets the exit code.

Exit codes: 0 success, 1 bad input (each problem printed as `file:line: message`), 2 usage error.
Every `SyndicatorError` is caught here and nowhere else; `--verbose` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from . import __version__
from .checks import check
from .config import Config, load_config
from .cycle import run_cycle
from .errors import Problem, SyndicatorError
from .feeds import update_feeds
from .ingest import IngestReport, ingest, parse_many
from .items import ParsedItem
from .progress import progress_bar
from .store import Store

log = logging.getLogger("syndicator")
Command = Callable[[argparse.Namespace], int]


def _print_problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def _open(config: Config) -> Store:
    return Store.open(config.database_url)


def _ingest_report(report: IngestReport) -> int:
    _print_problems(report.warnings)
    _print_problems(report.errors)
    print(report.summary())
    return 1 if report.errors else 0


def cmd_parse(args: argparse.Namespace) -> int:
    failed = False
    for result in parse_many(args.files):
        if not isinstance(result, ParsedItem):
            _print_problems(result.problems())
            failed = True
            continue
        _print_problems(result.warnings)
        item = result.item
        if args.json:
            print(json.dumps(item.to_json(), ensure_ascii=False), flush=True)
        else:
            print(f"{item.file}: {item.title}\n  {item.url}", flush=True)
    return 1 if failed else 0


def cmd_ingest(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    paths = args.paths or [config.items_path]
    with _open(config) as store, progress_bar("Ingesting") as progress:
        report = ingest(store, paths, progress=progress)
    return _ingest_report(report)


def cmd_check(args: argparse.Namespace) -> int:
    report = check(args.config)
    _print_problems(report.problems)
    for hint in report.hints:
        print(f"hint: {hint}", file=sys.stderr)
    if report.config is not None:
        state = "OK" if report.ok else f"{len(report.problems)} problem(s)"
        print(f"{report.config.source}: {report.item_files} item files checked, {state}")
    return 0 if report.ok else 1


def cmd_feeds(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with _open(config) as store:
        report = update_feeds(store, config)
    print(report.summary())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if not args.once:
        print("syndicator run: the daemon is not built yet; use 'syndicator run --once'", file=sys.stderr)
        return 2
    config = load_config(args.config)
    with _open(config) as store, progress_bar("Ingesting") as progress:
        report = run_cycle(config, store, progress=progress)
    code = _ingest_report(report.ingest)
    print(f"feeds: {report.feeds.summary()}")
    return code


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", help="config file (default: $SYNDICATOR_CONFIG, else ./config.yaml)"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log more, and show tracebacks")

    parser = argparse.ArgumentParser(
        prog="syndicator", description="News items into RSS/Atom feeds and email digests."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    sub = add("parse", cmd_parse, "print parsed item files, the store untouched")
    sub.add_argument("files", nargs="+", metavar="FILE")
    sub.add_argument("--json", action="store_true", help="one JSON object a line")

    sub = add("ingest", cmd_ingest, "read item files into the store (default: items.path)")
    sub.add_argument("paths", nargs="*", metavar="PATH")

    add("feeds", cmd_feeds, "(re)build the feeds and their indexes from the store")

    add("check", cmd_check, "validate config.yaml and the item files; exit 1 on any problem")

    sub = add("run", cmd_run, "run the service (with --once: one full cycle, then exit)")
    sub.add_argument("--once", action="store_true", help="one cycle now, then exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `syndicator` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Command = args.handler
    try:
        return handler(args)
    except SyndicatorError as exc:
        if args.verbose:
            traceback.print_exc()
        _print_problems(exc.problems())
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
