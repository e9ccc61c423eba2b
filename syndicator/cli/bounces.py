"""`syndicator bounces`: read the bounce mailbox now, and what the store knows of bounces."""

from __future__ import annotations

import argparse
import sys

from syndicator.bounces.reading import check_bounces, mailbox_name
from syndicator.cli.common import open_store, utc_now
from syndicator.config.model import load_config
from syndicator.db.tokens import secret_keys
from syndicator.errors import SyndicatorError
from syndicator.i18n import _, shown


def cmd_bounces(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    settings = config.email.bounces
    if settings is None:
        raise SyndicatorError(
            _("no bounce mailbox: email.bounces is not set"),
            path=config.source,
            hint=_("add `bounces: {{address: {address}, maildir: bounces/}}` under email:").format(
                address="bounces@your.domain"
            ),
        )
    with open_store(config) as store:
        report = check_bounces(store, config, secret_keys(store), utc_now())
    where = mailbox_name(config)
    for warning in report.warnings:
        print(shown(warning), file=sys.stderr)
    for note in report.notes:
        print(f"{where}/{note}", file=sys.stderr)
    if report.notes:
        print(
            _("hint: these messages were moved to the 'unrecognised' folder for a person to read"),
            file=sys.stderr,
        )
    for address in report.suppressed:
        print(_("suppressed: {address}").format(address=address))
    print(shown(report.summary()))
    return 0
