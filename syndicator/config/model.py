"""The `config.yaml` schema, its defaults, and validation messages that name file and line.

Every default lives here, with a comment when its reason is not obvious. Loading validates the
whole file and reports every problem at once as `config.yaml:LINE: message`. Relative paths in
the file are relative to the file's own folder, so the daemon can run from anywhere.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ByteSize, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from syndicator.addresses import AddressError, mailbox, needs_smtputf8
from syndicator.addresses import check as check_address
from syndicator.config.crontab import EXAMPLE, cron_fields
from syndicator.config.frequencies import Frequency
from syndicator.config.imap import ImapSettings
from syndicator.errors import ConfigError, Problem
from syndicator.i18n import N_, joined, text_of
from syndicator.parsing.french_dates import DEFAULT_ZONE
from syndicator.parsing.items import MAX_SIZE
from syndicator.typography import apostrophes, with_article

DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # a bounce: a real DSN is a few kB; a 20 MB one is someone's attachment

CONFIG_ENV = "SYNDICATOR_CONFIG"
DEFAULT_CONFIG = Path("config.yaml")
SCHEDULE_HINT = N_(
    "a schedule: time is a cron line, minute hour day month weekday, like {example}; "
    "days and months in English (mon…sun, jan…dec) or as numbers (0 or 7 is Sunday)",
    example=EXAMPLE,
)


class _Section(BaseModel):
    # A misspelt key would otherwise be ignored silently and its default used instead.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SiteConfig(_Section):
    title: str = "IREV"
    # The title as a sentence says it, article included ("l’IREV", "la CNIL", "le Cerema"):
    # "Suivez les actualités de l’IREV". Unset: `l’` before a vowel, else the title alone.
    title_with_article: str | None = Field(default=None, min_length=1)
    # The product's one name, article included: pages, emails and footers all say it.
    newsletter: str = Field(default="la lettre d’information", min_length=1)
    base_url: str = "https://www.irev.fr"
    feeds_url: str = "https://www.irev.fr/feeds/"
    language: str = "fr"
    timezone: str = DEFAULT_ZONE.key

    @property
    def zone(self) -> ZoneInfo:
        """The site's zone: the item files' dates are in it, and every local day or time shown."""
        return ZoneInfo(self.timezone)

    @property
    def title_article(self) -> str:
        """`title_with_article`, or the form made from `title` when it is unset."""
        return self.title_with_article or with_article(self.title)

    @field_validator("title_with_article", "newsletter")
    @classmethod
    def _typographic(cls, value: str | None) -> str | None:
        return apostrophes(value) if value else value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                N_("unknown time zone {value!r}; use a name like 'Europe/Paris'", value=value)
            ) from None
        return value

    @field_validator("base_url", "feeds_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(N_("{value!r} is not an absolute http(s) URL", value=value))
        return value


class ItemsConfig(_Section):
    path: Path = Path("items")
    # The largest item file read: `2 MiB`, `500 KiB` or a number of bytes.
    max_size: ByteSize = Field(default=ByteSize(MAX_SIZE), gt=0)


class FeedsConfig(_Section):
    output: Path = Path("feeds")
    max_items: int = Field(default=50, ge=1, le=1000)
    ttl: int = Field(default=60, ge=1)  # minutes a feed reader may wait before polling again


class SmtpConfig(_Section):
    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    tls: bool = False  # implicit TLS (port 465); starttls is ignored when set
    username_env: str | None = None
    password_env: str | None = None
    timeout: float = Field(default=30.0, gt=0)
    verify: bool = True  # certificates are verified unless an admin turns it off explicitly


class LookbackConfig(_Section):
    """Days a digest looks back, per frequency, so that importing an archive never mails it."""

    immediate: int = Field(default=2, ge=1)
    daily: int = Field(default=2, ge=1)
    weekly: int = Field(default=14, ge=1)
    monthly: int = Field(default=62, ge=1)

    def days(self, frequency: Frequency) -> int:
        return int(getattr(self, frequency))


class DkimConfig(_Section):
    key: Path  # PEM file of a 2048-bit (or larger) RSA private key
    selector: str
    domain: str | None = None  # default: the domain of email.from


class BouncesConfig(_Section):
    """`email.bounces`: where delivery reports and complaints come back (syndicator/bounces/reading.py)."""

    # The VERP base: digests leave with the envelope sender `local+TOKEN@domain`. Unset: the
    # envelope sender stays email.from's address, and only recipients (not tokens) identify.
    address: str | None = None
    maildir: Path = Path("bounces")  # the bounce mailbox, a Maildir (IMAP: docs/bounces.md)
    soft_limit: int = Field(default=3, ge=1)  # soft failures within soft_days that suppress
    soft_days: int = Field(default=30, ge=1, le=3650)
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=10_000)  # a larger message is not read
    imap: ImapSettings | None = None  # an IMAP folder instead of the Maildir, when set

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        try:
            checked = check_address(text)
        except AddressError as error:
            raise ValueError(
                N_("{value!r} is not a bare email address: {error}", value=value, error=text_of(error))
            ) from None
        if not text.isascii():
            raise ValueError(
                N_("{value!r}: the bounce address must be ASCII (it is the envelope sender)", value=value)
            )
        if "+" in text.partition("@")[0]:
            raise ValueError(
                N_("{value!r}: no '+' in the bounce address; syndicator adds '+TOKEN' itself", value=value)
            )
        return checked.wire


class EmailConfig(_Section):
    from_: str = Field(default="IREV <lettre@example.org>", alias="from")
    transport: Literal["outbox", "smtp"] = "outbox"
    outbox: Path = Path("outbox")
    smtp: SmtpConfig = SmtpConfig()
    max_connections: int = Field(default=4, ge=1, le=64)
    messages_per_connection: int = Field(default=100, ge=1)  # then the connection is renewed
    rate_per_second: float = Field(default=20.0, gt=0)  # for the whole deployment, all workers together
    # How long a send worker's claim on subscribers lasts without a heartbeat: a worker killed
    # mid-send has its subscribers taken by the others after this long.
    lease_seconds: float = Field(default=30.0, ge=1.0, le=3600.0)
    max_items: int = Field(default=30, ge=1)
    lookback_days: LookbackConfig = LookbackConfig()
    dkim: DkimConfig | None = None  # sign every message when set
    bounces: BouncesConfig | None = None  # read the bounce mailbox when set


class ScheduleConfig(_Section):
    refresh: str = "*/10 * * * *"
    daily: str = "30 7 * * *"
    weekly: str = "30 7 * * mon"
    monthly: str = "30 7 1 * *"

    @field_validator("refresh", "daily", "weekly", "monthly")
    @classmethod
    def _cron(cls, value: str) -> str:
        cron_fields(value)  # every field, as the scheduler will read it
        return value


class WebConfig(_Section):
    base_url: str = "http://127.0.0.1:8080"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # Seconds readers and proxies may reuse a feed without asking (Cache-Control: max-age); the
    # default refresh runs every 10 minutes, and a conditional GET after that costs a 304.
    feeds_max_age: int = Field(default=600, ge=0)
    # The proxies (addresses or networks) whose X-Forwarded-For / -Proto are believed; none by
    # default, so that a visitor cannot choose the address the sign-up limits count.
    trusted_proxies: list[str] = []
    # Sign-up requests accepted per hour for the whole site: each one mails an address.
    signups_per_hour: int = Field(default=100, ge=1)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: object) -> object:
        if value is None:
            return []
        for entry in value if isinstance(value, list) else []:
            try:
                ipaddress.ip_network(str(entry), strict=False)
            except ValueError:
                raise ValueError(
                    N_("{entry!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8)", entry=entry)
                ) from None
        return value


class RetentionConfig(_Section):
    """How long personal data is kept (RGPD article 5(1)(e)), applied by every refresh and by
    `syndicator purge`; docs/privacy.md says why each default."""

    signup_requests_days: int = Field(default=30, ge=1)  # sign-up requests, confirmed or not
    consent_years: int = Field(default=3, ge=1)  # a consent proof, after the subscription ends
    ledger_months: int = Field(default=13, ge=1)  # who was sent what; then monthly counts only
    suppressions_years: int = Field(default=3, ge=1)  # then kept only as a keyed hash of the address


def _contact(value: str) -> str:
    """A data-protection contact: an email address, or an http(s) URL (a contact form)."""
    value = value.strip()
    if re.match(r"^https?://[^/\s]+", value):
        return value
    try:
        check_address(value.removeprefix("mailto:"))
    except AddressError as error:
        raise ValueError(
            N_(
                "{value!r} is neither an email address nor an http(s) URL: {error}",
                value=value,
                error=text_of(error),
            )
        ) from None
    return value.removeprefix("mailto:")


class PrivacyConfig(_Section):
    """The RGPD notices (articles 13 and 14): who holds the data, why, how long, whom to ask."""

    controller: str | None = None  # the controller's name, as the notice names it
    postal_address: str | None = None
    dpo_contact: str | None = None  # the data-protection officer: email address or URL
    # Why the data is processed, after "pour"; default: sending site.newsletter as chosen.
    purpose: str | None = None
    policy_url: str | None = None  # a full privacy page of your own; default: the app's /confidentialite
    notice_version: str = Field(default="1", min_length=1, max_length=40)
    retention: RetentionConfig = RetentionConfig()

    @field_validator("dpo_contact")
    @classmethod
    def _dpo_contact(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else _contact(value)

    @field_validator("policy_url")
    @classmethod
    def _policy_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(N_("{value!r} is not an absolute http(s) URL", value=value))
        return value

    def missing(self) -> list[str]:
        """The keys a notice needs that are not set."""
        return [key for key in ("controller", "postal_address", "dpo_contact") if not getattr(self, key)]


class SubscriberConfig(_Section):
    email: str
    name: str | None = None
    frequency: Frequency = "weekly"
    thematiques: list[str] = []
    territoires: list[str] = []
    types: list[str] = []

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        try:
            check_address(value)  # the sign-up form's check too: both take the same addresses
        except AddressError as error:
            raise ValueError(
                N_("{value!r} is not an email address: {error}", value=value, error=text_of(error))
            ) from None
        return value

    @field_validator("thematiques", "territoires", "types", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        if isinstance(value, str):  # `thematiques: Éducation`: pydantic would say "a valid list"
            raise ValueError(
                N_("{value!r} is not a list; write the names in brackets: [{value}]", value=value)
            )
        return [] if value is None else value


class Config(_Section):
    """The whole of config.yaml, validated; `base_dir` is the folder relative paths start from."""

    site: SiteConfig = SiteConfig()
    items: ItemsConfig = ItemsConfig()
    database: str = "sqlite:///syndicator.db"
    feeds: FeedsConfig = FeedsConfig()
    templates: Path = Path("templates")  # admins' templates; missing ones come from syndicator
    territoires: dict[str, str] = {}
    email: EmailConfig = EmailConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    web: WebConfig = WebConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    subscribers: list[SubscriberConfig] = []
    base_dir: Path = Field(Path("."), exclude=True)
    source: str = Field(default="config.yaml", exclude=True)

    @field_validator("territoires", "subscribers", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object, info: Any) -> object:
        if value is None:
            return {} if info.field_name == "territoires" else []
        if info.field_name == "territoires" and isinstance(value, Mapping):
            # An unquoted code (`Quartier: 59512`) reads as a number; codes are names here.
            return {str(k): str(v) for k, v in value.items()}
        return value

    def line_of(self, loc: Sequence[int | str]) -> int | None:
        """The line of a key or list entry in the config file, for messages; None if unknown."""
        try:
            root = _document(self.source, Path(self.source).stat().st_mtime_ns)
        except (OSError, MarkedYAMLError):
            return None
        return _line_of(root, loc)

    def address_warnings(self) -> list[Problem]:
        """Subscribers whose address only a relay offering SMTPUTF8 can carry: valid, but their
        digests fail where the relay does not offer it."""
        return [
            Problem(
                self.source,
                self.line_of(["subscribers", index, "email"]),
                N_(
                    "subscriber {email} has a part before '@' that is not ASCII: only a mail "
                    "server offering SMTPUTF8 can deliver to it, elsewhere its digests fail",
                    email=entry.email,
                ),
                "warning",
            )
            for index, entry in enumerate(self.subscribers)
            if needs_smtputf8(entry.email.strip())
        ]

    def resolve(self, path: Path) -> Path:
        """A path from the file, relative to the file's folder unless absolute."""
        return path if path.is_absolute() else self.base_dir / path

    @property
    def database_url(self) -> str:
        """The database URL, a relative SQLite path taken from the config file's folder."""
        prefix = "sqlite:///"
        if self.database.startswith(prefix) and not self.database.startswith(prefix + "/"):
            rest = self.database[len(prefix) :]
            if rest and rest != ":memory:":
                return prefix + str((self.base_dir / rest).resolve())
        return self.database

    @property
    def items_path(self) -> Path:
        return self.resolve(self.items.path)

    @property
    def feeds_path(self) -> Path:
        return self.resolve(self.feeds.output)

    @property
    def templates_path(self) -> Path:
        return self.resolve(self.templates)


@lru_cache(maxsize=4)
def _document(path: str, mtime_ns: int) -> Any:
    """The config file as ruamel's round-trip tree, which knows each node's line."""
    return YAML(typ="rt").load(Path(path).read_text(encoding="utf-8-sig"))


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """The config file to read: the --config option, else $SYNDICATOR_CONFIG, else ./config.yaml."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def _line_of(root: Any, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the deepest node of `loc` that the YAML document has."""
    node, line = root, getattr(getattr(root, "lc", None), "line", None)
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, Mapping) and key in node:
                line = lc.key(key)[0] if lc else line
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
                line = lc.item(key)[0] if lc else line
                node = node[key]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
    return None if line is None else line + 1


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The section model that holds the last key of `loc` (list positions skipped)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        if current is None:
            return None
        fields = current.model_fields
        info = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        current = _section_type(info.annotation) if info else None
    return current


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The section model inside an annotation (`X`, `X | None`, `list[X]`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((found for arg in get_args(annotation) if (found := _section_type(arg))), None)


def _where(loc: Sequence[int | str], data: Mapping[str, Any]) -> str:
    """Where a problem is, in an admin's words: positions from 1, a subscriber by address."""
    if len(loc) >= 2 and loc[0] == "subscribers" and isinstance(loc[1], int):
        subscribers = data.get("subscribers")
        entry = subscribers[loc[1]] if isinstance(subscribers, list) and loc[1] < len(subscribers) else None
        email = entry.get("email") if isinstance(entry, Mapping) else None
        number = loc[1] + 1
        who = (
            N_("subscriber #{number} ({email})", number=number, email=email)
            if isinstance(email, str)
            else N_("subscriber #{number}", number=number)
        )
        rest = [
            N_("entry {number}", number=part + 1) if isinstance(part, int) else str(part) for part in loc[2:]
        ]
        return joined(", ", [who, joined(" ", rest)] if rest else [who])
    return ".".join(str(part + 1) if isinstance(part, int) else str(part) for part in loc) or N_(
        "(top level)"
    )


def _message(error: Mapping[str, Any], model: type[BaseModel], data: Mapping[str, Any]) -> str:
    loc = list(error["loc"])
    where = _where(loc, data)
    if error["type"] == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        known = [f.alias or name for name, f in (parent.model_fields.items() if parent else ())]
        known = [k for k in known if k not in ("base_dir", "source")]
        key = str(loc[-1])
        guess = difflib.get_close_matches(key, known, n=1)
        hint = (
            N_("; did you mean '{guess}'?", guess=guess[0])
            if guess
            else N_("; known keys: {keys}", keys=", ".join(known))
        )
        if len(loc) > 1:
            return N_("{where}: unknown key '{key}'{hint}", where=_where(loc[:-1], data), key=key, hint=hint)
        return N_("unknown key '{key}'{hint}", key=key, hint=hint)
    if error["type"] == "missing":
        if len(loc) > 1:
            return N_("{where}: '{key}' is required", where=_where(loc[:-1], data), key=loc[-1])
        return N_("'{where}' is required", where=where)
    value = error.get("input")
    if error["type"] == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        # `59350` unquoted reads as a number; a name or code must be written as text.
        return N_(
            "{where}: {value} is a number here; write it in quotes ('{value}') to mean the name or code",
            where=where, value=value,
        )  # fmt: skip
    if error["type"] == "string_type" and isinstance(value, bool):
        return N_(
            "{where}: {value} reads as yes/no here; write it in quotes to mean a name",
            where=where, value=str(value).lower(),
        )  # fmt: skip
    if error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return N_("{where}: expected `key: value` lines here, not {value!r}", where=where, value=value)
    return N_("{where}: {problem}", where=where, problem=_pydantic_text(error, value))


def _either(expected: str) -> str:
    """Pydantic's list of choices (`'a', 'b' or 'c'`), its `or` in the admin's language."""
    choices = re.findall(r"'[^']*'", expected)
    if len(choices) < 2:
        return expected
    return N_("{choices} or {last}", choices=", ".join(choices[:-1]), last=choices[-1])


def _pydantic_text(error: Mapping[str, Any], value: Any) -> str:
    """Pydantic's message for one error, without its `Value error, ` prefix: a `Text` for our
    validators' and for the kinds an admin meets (a value not among the choices, not a number,
    out of bounds), English as pydantic words it."""
    context = error.get("ctx") or {}
    raised = context.get("error")
    if isinstance(raised, ValueError):  # one of our validators: its own words
        return text_of(raised)
    kind, message = error["type"], str(error["msg"])
    text: str = message
    if kind == "literal_error":
        text = N_("Input should be {expected}", expected=_either(str(context.get("expected"))))
    elif kind == "int_parsing":
        text = N_("Input should be a valid integer, unable to parse string as an integer")
    elif kind == "float_parsing":
        text = N_("Input should be a valid number, unable to parse string as a number")
    elif kind == "bool_parsing":
        text = N_("Input should be a valid boolean, unable to interpret input")
    elif kind == "greater_than_equal":
        text = N_("Input should be greater than or equal to {limit}", limit=context.get("ge"))
    elif kind == "greater_than":
        text = N_("Input should be greater than {limit}", limit=context.get("gt"))
    elif kind == "less_than_equal":
        text = N_("Input should be less than or equal to {limit}", limit=context.get("le"))
    elif kind == "string_type":
        text = N_("Input should be a valid string")
    elif kind == "list_type":
        text = N_("Input should be a valid list")
    if text != message:  # another version of pydantic, other words: its own, in English
        text = message
    if kind in ("literal_error", "int_parsing", "float_parsing", "bool_parsing"):
        return N_("{problem}, not {value!r}", problem=text, value=value)
    return text


Located = tuple[Sequence[int | str], str]  # where in the document, and what is wrong there


def _duplicate_subscribers(data: Mapping[str, Any]) -> list[tuple[int, int, str]]:
    """(index, index of its first listing, address) of each subscriber listed again."""
    found: list[tuple[int, int, str]] = []
    seen: dict[str, int] = {}
    subscribers = data.get("subscribers")
    for index, entry in enumerate(subscribers if isinstance(subscribers, list) else []):
        email = entry.get("email") if isinstance(entry, Mapping) else None
        if not isinstance(email, str):
            continue
        key = mailbox(email)  # `contact@mairie-évry.fr` and its IDNA form are one mailbox
        if key in seen:
            found.append((index, seen[key], email))
        else:
            seen[key] = index
    return found


def _missing_secrets(config: Config) -> list[Located]:
    if config.email.transport != "smtp":
        return []
    return [
        (
            ["email", "smtp", name],
            N_(
                "email.smtp.{name} names ${variable}, which is not set; export it before running",
                name=name,
                variable=variable,
            ),
        )
        for name in ("username_env", "password_env")
        if (variable := getattr(config.email.smtp, name)) and variable not in os.environ
    ]


def _yaml_error(name: str, exc: MarkedYAMLError) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    problem = str(exc.problem or exc.context)
    hint = N_("check the indentation and the quotes around values holding ':' or '#'")
    if "alias" in str(exc.problem):  # YAML reads a leading '*' as an alias: `refresh: */10 * * * *`
        hint = N_("a value starting with '*', like a cron time, needs quotes: refresh: \"*/10 * * * *\"")
    elif "'\\t'" in problem:
        problem, hint = (
            N_("tabs are not allowed, use spaces"),
            N_("indent with spaces only (YAML forbids tabs)"),
        )
    elif exc.context_mark and str(exc.context).startswith("while parsing a flow "):
        # The parser notices an unclosed bracket lines later; the admin needs the bracket's line.
        bracket = "[" if "sequence" in str(exc.context) else "{"
        closing = "]" if bracket == "[" else "}"
        at = N_(" at line {line}", line=exc.problem_mark.line + 1) if exc.problem_mark else ""
        problem = N_(
            "the '{bracket}' opened here is not closed ({problem}{at})",
            bracket=bracket,
            problem=problem,
            at=at,
        )
        hint = N_(
            "close it with '{closing}' after its last value, and separate the values with ','",
            closing=closing,
        )
        mark = exc.context_mark
    line = mark.line + 1 if mark else None
    return ConfigError([Problem(name, line, N_("not valid YAML: {problem}", problem=problem))], hint=hint)


def parse_config(text: str, path: Path, *, environment: bool = True) -> Config:
    """Validate the text of a config file; raise `ConfigError` listing every problem.

    The file is read with ruamel's safe loader, through libyaml's C parser: 35 ms instead of 220
    for a thousand subscribers, which every `digest send` and every worker pays (bench/rss2email.py
    at 0 ms). Only when something is wrong is it read again in round-trip mode, which knows the
    line of every node, to locate the problems.
    With `environment=False` the variables the file names (SMTP secrets) are not looked for:
    editing the subscribers must not need the mail server's password."""
    name = str(path)
    try:
        data = YAML(typ="safe").load(text)  # libyaml's C parser (ruamel.yaml.clib) when installed
    except MarkedYAMLError:
        # Read again by the pure-Python parser, whose messages `_yaml_error` knows and explains.
        try:
            data = YAML(typ="safe", pure=True).load(text)
        except MarkedYAMLError as exc:
            raise _yaml_error(name, exc) from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([Problem(name, 1, N_("the file must be a mapping of keys (site:, items:, ...)"))])
    fields = {k: v for k, v in data.items() if k not in ("base_dir", "source")}
    duplicates = _duplicate_subscribers(data)
    located: list[Located] = []
    config = None
    try:
        config = Config.model_validate({**fields, "base_dir": path.parent, "source": name})
    except ValidationError as exc:
        located += [(error["loc"], _message(error, Config, data)) for error in exc.errors()]
    if config is not None and environment:
        located += _missing_secrets(config)
    if not located and not duplicates and config is not None:
        return config
    root = YAML(typ="rt").load(text)
    problems = [Problem(name, _line_of(root, loc), message) for loc, message in located]
    for index, first, email in duplicates:
        line, first_line = _line_of(root, ["subscribers", index]), _line_of(root, ["subscribers", first])
        problems.append(
            Problem(
                name,
                line,
                N_(
                    "subscriber {email} is listed twice (first at line {first})",
                    email=email,
                    first=first_line,
                ),
            )
        )
    schedule = any(loc and loc[0] == "schedule" for loc, _ in located)
    raise ConfigError(sorted(problems, key=lambda p: p.line or 0), hint=SCHEDULE_HINT if schedule else None)


def load_config(explicit: str | os.PathLike[str] | None = None, *, environment: bool = True) -> Config:
    """Read and validate the config file. Without one at the default place, use the defaults.

    `environment=False`: see `parse_config`."""
    path = config_path(explicit)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        if explicit or os.environ.get(CONFIG_ENV):
            raise ConfigError(
                [Problem(str(path), None, N_("no such file"))],
                hint=N_("pass --config PATH or copy config.yaml from the project"),
            ) from None
        return Config(base_dir=Path("."), source=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), None, N_("cannot read: {why}", why=exc))]) from None
    return parse_config(text, path, environment=environment)
