"""The `syndicator` command line: parses arguments, calls the modules, prints, sets the exit code.

Exit codes: 0 success, 1 bad input (each problem printed as `file:line: message`), 2 usage error.
Every `SyndicatorError` is caught here and nowhere else; `--verbose` adds the traceback.
Every message and help text written here goes through `_()` (syndicator/i18n.py), in English:
French when the admin's locale is; `scripts/update-catalogue` then adds it to the catalogue.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence

from syndicator import __version__
from syndicator.config.frequencies import FREQUENCIES
from syndicator.errors import SyndicatorError
from syndicator.i18n import _, shown

Command = Callable[[argparse.Namespace], int]


def _one_line_name(text: str) -> str:
    """`--name` as given, when emails can show it as it is: one line, no `=?`."""
    from syndicator.mail.messages import shows_as_written  # noqa: PLC0415 (only when --name is given)

    if not shows_as_written(text):
        raise argparse.ArgumentTypeError(
            _(
                "{text} has a line break, a control character or '=?', which emails cannot show; "
                "give the name on one line, as readers should see it"
            ).format(text=repr(text))
        )
    return text


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", help=_("config file (default: $SYNDICATOR_CONFIG, else ./config.yaml)")
    )
    common.add_argument("-v", "--verbose", action="store_true", help=_("log more, and show tracebacks"))

    parser = argparse.ArgumentParser(
        prog="syndicator", description=_("News items into RSS/Atom feeds and email digests.")
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Also before the command (`syndicator --config c.yaml check`); given after it too, that wins.
    parser.add_argument("--config", dest="config_before", metavar="PATH", help=_("as after COMMAND"))
    parser.add_argument("-v", "--verbose", dest="verbose_before", action="store_true", help=_("idem"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    sub = add("parse", "content:cmd_parse", _("print parsed item files, the store untouched"))
    sub.add_argument("files", nargs="+", metavar="FILE")
    sub.add_argument("--json", action="store_true", help=_("one JSON object a line"))

    sub = add("ingest", "content:cmd_ingest", _("read item files into the store (default: items.path)"))
    sub.add_argument("paths", nargs="*", metavar="PATH")

    add("feeds", "content:cmd_feeds", _("(re)build the feeds and their indexes from the store"))

    add(
        "status",
        "status:cmd_status",
        _("jobs' last and next runs, deliveries pending, failed and suppressed"),
    )

    add("check", "checks:cmd_check", _("validate config.yaml and the item files; exit 1 on any problem"))

    add(
        "bounces",
        "bounces:cmd_bounces",
        _("read the bounce mailbox: suppress hard bounces and complaints, count soft ones"),
    )

    sub = add("explain", "digest:cmd_explain", _("why an item goes, or does not go, to a subscriber"))
    sub.add_argument("email", metavar="EMAIL", type=_address_given)
    sub.add_argument("url", metavar="URL")

    digest = commands.add_parser(
        "digest", help=_("preview or send digests"), description=_("preview or send digests")
    )
    digest_commands = digest.add_subparsers(dest="digest_command", required=True, metavar="COMMAND")
    sub = digest_commands.add_parser(
        "preview", parents=[common], help=_("write a subscriber's next digest to files")
    )
    sub.set_defaults(handler="digest:cmd_digest_preview")
    sub.add_argument("email", metavar="EMAIL", type=_address_given)
    sub.add_argument("--out", metavar="DIR", default=".", help=_("folder for the .html, .txt and .eml files"))
    sub = digest_commands.add_parser("send", parents=[common], help=_("build and deliver digests now"))
    sub.set_defaults(handler="digest:cmd_digest_send")
    sub.add_argument("--frequency", choices=FREQUENCIES, help=_("only the subscribers of this frequency"))
    sub.add_argument("--dry-run", action="store_true", help=_("build and count, record and deliver nothing"))
    sub.add_argument(
        "--workers", type=_positive, default=1, metavar="N",
        help=_("N worker processes share the send (more may run on other machines against the same "
               "database)"),
    )  # fmt: skip
    sub.add_argument("--worker-label", default="", help=argparse.SUPPRESS)
    sub.add_argument("--run", type=int, default=None, help=argparse.SUPPRESS)  # the run --workers opened

    subscribers = commands.add_parser(
        "subscribers", help=_("list, add or remove subscribers in config.yaml; export or erase one's data")
    )
    subscriber_commands = subscribers.add_subparsers(
        dest="subscribers_command", required=True, metavar="COMMAND"
    )
    sub = subscriber_commands.add_parser("list", parents=[common], help=_("every subscriber and their state"))
    sub.set_defaults(handler="subscribers:cmd_subscribers_list")
    sub = subscriber_commands.add_parser(
        "add", parents=[common], help=_("add a subscriber, keeping comments")
    )
    sub.set_defaults(handler="subscribers:cmd_subscribers_add")
    sub.add_argument("email", metavar="EMAIL", type=_address_given)
    sub.add_argument("--name", type=_one_line_name)
    sub.add_argument("--frequency", choices=FREQUENCIES, default="weekly")
    sub.add_argument(
        "--thematique", action="append", default=[], metavar="NAME", help=_("repeat for several")
    )
    sub.add_argument(
        "--territoire", action="append", default=[], metavar="NAME", help=_("repeat for several")
    )
    sub.add_argument("--type", action="append", default=[], metavar="NAME", help=_("repeat for several"))
    sub = subscriber_commands.add_parser(
        "remove", parents=[common], help=_("remove a subscriber, keeping comments")
    )
    sub.set_defaults(handler="subscribers:cmd_subscribers_remove")
    sub.add_argument("email", metavar="EMAIL", type=_address_given)
    sub = subscriber_commands.add_parser(
        "reactivate", parents=[common], help=_("lift a bounce suppression (never a complaint)")
    )
    sub.set_defaults(handler="subscribers:cmd_subscribers_reactivate")
    sub.add_argument("email", metavar="EMAIL", type=_address_given)

    sub = subscriber_commands.add_parser(
        "export", parents=[common], help=_("everything held about an address, as JSON (RGPD access)")
    )
    sub.set_defaults(handler="subscribers:cmd_subscribers_export")
    sub.add_argument("email", metavar="EMAIL", type=_address_given)
    sub.add_argument(
        "-o", "--output", metavar="FILE", help=_("write it to FILE (mode 0600) instead of printing")
    )
    sub = subscriber_commands.add_parser(
        "forget", parents=[common], help=_("erase an address from config.yaml and the store (RGPD erasure)")
    )
    sub.set_defaults(handler="subscribers:cmd_subscribers_forget")
    sub.add_argument("email", metavar="EMAIL", type=_address_given)

    sub = add(
        "purge",
        "service:cmd_purge",
        _("apply the retention periods of privacy.retention now, and say what went"),
    )
    sub.add_argument(
        "--wait", type=float, default=300.0, metavar="SECONDS",
        help=_("how long to wait for a running 'syndicator run' to let go of the store (default: 300)"),
    )  # fmt: skip

    sub = add(
        "serve", "service:cmd_serve", _("the web app: feeds, unsubscribe, preferences and sign-up pages")
    )
    sub.add_argument("--host", help=_("address to listen on (default: web.host)"))
    sub.add_argument("--port", type=int, help=_("port to listen on (default: web.port)"))

    sub = add(
        "run",
        "service:cmd_run",
        _("the daemon: jobs on their schedule until SIGTERM (--once: one cycle, then exit)"),
    )
    sub.add_argument("--once", action="store_true", help=_("one cycle now, then exit"))
    return _localized(parser)


class _Formatter(argparse.HelpFormatter):
    """argparse's help, its `usage:` in the admin's language."""

    def add_usage(
        self,
        usage: str | None,
        actions: Iterable[argparse.Action],
        groups: Iterable[argparse._MutuallyExclusiveGroup],
        prefix: str | None = None,
    ) -> None:
        super().add_usage(usage, actions, groups, _("usage: ") if prefix is None else prefix)


def _localized(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser` and every subcommand's with argparse's own words (section titles, `-h`,
    `--version`) in the admin's language: argparse takes them from a catalogue of its own."""
    parser.formatter_class = _Formatter
    parser._positionals.title = _("positional arguments")
    parser._optionals.title = _("options")
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            action.help = _("show this help message and exit")
        elif isinstance(action, argparse._VersionAction):
            action.help = _("show the version number and exit")
        elif isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _localized(sub)
    return parser


def _address_given(value: str) -> str:
    """An EMAIL argument, refused when blank (`""`, spaces): every command needs an address."""
    if not value.strip():
        raise argparse.ArgumentTypeError(_("no address given: write the subscriber's email address"))
    return value


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(_("not a whole number: {value}").format(value=repr(value))) from None
    if not 1 <= number <= 64:
        raise argparse.ArgumentTypeError(_("must be between 1 and 64, not {number}").format(number=number))
    return number


def _handler(name: str) -> Command:
    """The function of a command, named `module:function` in syndicator.cli and imported only now:
    `--help` and each command pay only for the modules they use (`syndicator --help` ≤ 1.5× rss2email's
    `r2e --help`, `syndicator status` ≤ 0.6 s: docs/benchmarks.md)."""
    module, function = name.split(":")
    handler: Command = getattr(importlib.import_module(f"syndicator.cli.{module}"), function)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `syndicator` console script."""
    args = _parser().parse_args(argv)
    args.config = getattr(args, "config", None) or args.config_before
    args.verbose = getattr(args, "verbose", False) or args.verbose_before
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # flufl.bounce logs each detector it tries, and a traceback for each odd message before it
    # raises; syndicator reports such a message itself (syndicator/bounces/parse.py).
    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
    try:
        return _handler(args.handler)(args)
    except SyndicatorError as exc:
        if args.verbose:
            traceback.print_exc()
        for problem in exc.problems():
            print(problem.translated(), file=sys.stderr)
        if exc.hint:
            print(_("hint: {hint}").format(hint=shown(exc.hint)), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `syndicator status | head`: the reader has what it wanted
        # Python would report the pipe again when flushing stdout at exit: point it at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a command ended by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
