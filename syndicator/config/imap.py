"""`email.bounces.imap`: where an IMAP bounce mailbox is and how to log in, checked as config is read.

Reading that mailbox is `syndicator.bounces.imap`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from syndicator.i18n import N_

Tls = Literal["ssl", "starttls", "none"]
TIMEOUT = 30.0  # seconds for connecting, the TLS handshake and each command: a hung server is left
PORTS: dict[str, int] = {"ssl": 993, "starttls": 143, "none": 143}


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ImapSettings(BaseModel):
    """`email.bounces.imap`: where the bounce mailbox is and how to log in."""

    # A misspelt key would otherwise be ignored silently and its default used instead.
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)  # default: 993 for tls: ssl, else 143
    tls: Tls = "ssl"
    username_env: str  # names of environment variables, never the secrets themselves
    password_env: str
    folder: str = Field(default="INBOX", min_length=1)
    # A PEM file of the authority (or the self-signed certificate) to trust instead of the system's.
    ca_file: Path | None = None
    timeout: float = Field(default=TIMEOUT, gt=0, le=600)

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("port") is None:
            tls = data.get("tls", "ssl")
            return {**data, "port": PORTS.get(tls, 993) if isinstance(tls, str) else 993}
        return data

    @field_validator("host")
    @classmethod
    def _host_name(cls, value: str) -> str:
        if "://" in value or "/" in value:
            raise ValueError(
                N_("write the host name only, like imap.example.org, not {value!r}", value=value)
            )
        if any(c.isspace() for c in value):
            raise ValueError(N_("a host name holds no spaces: {value!r}", value=value))
        if value.count(":") == 1:
            raise ValueError(
                N_("put the port in `port:`, and the host name alone here, not {value!r}", value=value)
            )
        return value

    @field_validator("tls")
    @classmethod
    def _plain_text_only_here(cls, value: Tls, info: ValidationInfo) -> Tls:
        host = info.data.get("host")
        if value == "none" and isinstance(host, str) and not _is_loopback(host):
            raise ValueError(
                N_(
                    "tls: none would send the password in plain text to {host}; it is allowed only for "
                    "a server on this machine (localhost): use tls: ssl (port 993) or starttls (port 143)",
                    host=host,
                )
            )
        return value

    @field_validator("username_env", "password_env")
    @classmethod
    def _variable_name(cls, value: str) -> str:
        # The value is not repeated: an admin who wrote the password itself here must not see it logged.
        if not value.isascii() or not value.replace("_", "a").isalnum() or value[0].isdigit():
            raise ValueError(
                N_(
                    "must name an environment variable (letters, digits and _), like IMAP_PASSWORD; "
                    "the secret itself goes in that variable, not in the file"
                )
            )
        return value
