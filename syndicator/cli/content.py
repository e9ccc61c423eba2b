"""`syndicator parse`, `ingest` and `feeds`: item files into the store, the store into feeds."""

from __future__ import annotations

import argparse
import json

from syndicator.cli.common import open_store, print_ingest_report, print_problems
from syndicator.cli.progress import progress_bar
from syndicator.config.model import load_config
from syndicator.feeds.build import update_feeds
from syndicator.i18n import _, shown
from syndicator.ingest.reading import ingest, parse_many
from syndicator.parsing.items import ParsedItem


def cmd_parse(args: argparse.Namespace) -> int:
    failed = False
    config = load_config(args.config)
    for result in parse_many(args.files, config.items.max_size, config.site.zone):
        if not isinstance(result, ParsedItem):
            print_problems(result.problems())
            failed = True
            continue
        print_problems(result.warnings)
        item = result.item
        if args.json:
            print(json.dumps(item.to_json(), ensure_ascii=False), flush=True)
        else:
            print(f"{item.file}: {item.title}\n  {item.url}", flush=True)
    return 1 if failed else 0


def cmd_ingest(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    paths = args.paths or [config.items_path]
    with open_store(config) as store, progress_bar(_("Ingesting")) as progress:
        report = ingest(
            store, paths, progress=progress, max_size=config.items.max_size, zone=config.site.zone
        )
    return print_ingest_report(report)


def cmd_feeds(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with open_store(config) as store:
        report = update_feeds(store, config)
    print(shown(report.summary()))
    return 0
