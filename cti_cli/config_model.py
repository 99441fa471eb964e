"""What a `cti` config is: the pydantic models of the TOML file, with no file or environment
I/O (config_file.py reads and writes the file, config_env.py lays `CTI_*` variables over it).

The models build their validators when first used (`defer_build`): `cti show` validates one
`Config` and never pays for the validators of the blocks on their own.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from cti_cli.config_choices import (
    WEBHOOK_EVENTS,
    AuthMethod,
    ServerType,
    Trigger,
    WebhookFormat,
)

DEFAULT_RECORDINGS_DIR = Path("/var/spool/asterisk/monitor")


def _not_a_number(value: object) -> object:
    """TOML has real booleans: `enabled = 1` is a mistake, not `true` (env strings still parse)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


Flag = Annotated[bool, BeforeValidator(_not_a_number)]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)


class ServerConfig(_Block):
    type: ServerType = "asterisk-ami"
    host: str = ""
    port: int = Field(default=5038, ge=1, le=65535, strict=False)
    login: str = ""
    password: SecretStr = SecretStr("")
    password_file: str | None = None  # e.g. systemd LoadCredential: read at start, wins
    tls: Flag = False
    cafile: str | None = None
    auth: AuthMethod = "md5"
    timeout: float = Field(default=5.0, gt=0, le=300)

    @field_validator("host")
    @classmethod
    def _host_is_one_word(cls, value: str) -> str:
        if any(c.isspace() for c in value) or "/" in value:
            raise ValueError("must be a host name or IP address (no spaces, no URL)")
        return value

    @field_validator("login")
    @classmethod
    def _no_blanks(cls, value: str) -> str:
        if value != value.strip() or any(c in value for c in "\r\n"):
            raise ValueError("must not contain spaces at the ends or line breaks")
        return value

    @field_validator("password")
    @classmethod
    def _one_line(cls, value: SecretStr) -> SecretStr:
        # AMI is a line protocol: a CR or LF would end the Secret header (and inject others).
        if any(c in value.get_secret_value() for c in "\r\n\x00"):
            raise ValueError("must not contain line breaks (CR/LF) or NUL; AMI cannot send it")
        return value


PBX_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


class NamedServer(ServerConfig):
    """One `[[servers]]` entry: a PBX with its own name (delivery keys, subjects, `pbx`)."""

    name: str = Field(pattern=PBX_NAME)


def split_extension(spec: str) -> tuple[str | None, str]:
    """`"main:101"` → `("main", "101")`; a bare `"101"` → `(None, "101")` (every PBX)."""
    pbx, sep, ext = spec.rpartition(":")
    return (pbx, ext) if sep else (None, spec)


class Member(_Block):
    login: str = Field(min_length=1)
    name: str = ""
    extensions: list[str] = Field(default_factory=list)

    @field_validator("extensions")
    @classmethod
    def _extensions_are_dialable(cls, value: list[str]) -> list[str]:
        for spec in value:
            pbx, ext = split_extension(spec)
            if pbx is not None and not re.match(PBX_NAME, pbx):
                raise ValueError(f"extension {spec!r}: {pbx!r} is not a PBX name (main:101)")
            if not ext or not all(c.isalnum() or c in "+*#_-" for c in ext):
                raise ValueError(f"extension {spec!r} must be digits/letters like 101 or main:101")
        return value


class Team(_Block):
    name: str = Field(min_length=1)
    members: list[Member] = Field(default_factory=list)


class RuleConfig(_Block):
    """The incoming-call rule; unset `script` runs the rule shipped with cti."""

    script: str | None = None
    trigger: Trigger = "answer"
    timeout: float = Field(default=2.0, gt=0, le=60)
    # `cti rule list|new|use` folder; unset: ~/.config/cti/rules (/etc/cti/rules for /etc/cti)
    catalog: str | None = None


class DirectoryConfig(_Block):
    """Where callers' employee cards come from: `csv:/path/employees.csv` or an HTTP(S) URL
    template with `{e164}`, `{number}`, `{digits}` placeholders (JSON answer)."""

    source: str | None = None
    region: str = Field(default="RU", pattern=r"^[A-Z]{2}$")
    headers: dict[str, str] = Field(default_factory=dict)
    cache_ttl: float = Field(default=300.0, ge=0)
    timeout: float = Field(default=2.0, gt=0, le=60)

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str | None) -> str | None:
        if value is None or value.startswith(("csv:", "http://", "https://")):
            return value
        raise ValueError('must be "csv:/path/employees.csv" or an http(s):// URL template')


def _port_in_range(cls: type, value: str | None) -> str | None:
    """A HOST:PORT or URL whose port is 1–65535 (the pattern lets 99999 through; binding or
    connecting would then fail with a traceback or a wrong diagnosis)."""
    if value is None:
        return value
    if "://" in value:
        try:
            port = urlsplit(value).port
        except ValueError:
            if "@" in value:  # "user:pa55/w0rd@host": what follows ":" reads as the port
                raise PydanticCustomError(
                    "url_password",
                    "must be a URL whose password has / ? # and @ percent-encoded "
                    "(%2F %3F %23 %40): as written, part of it reads as the port",
                ) from None
            raise ValueError("its port must be 1–65535") from None
    else:
        port = int(value.rpartition(":")[2])
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("its port must be 1–65535")
    return value


class AgentConfig(_Block):
    """The `cti agent` service: where it listens, keeps its outbox, and how long pops live."""

    listen: str = Field(default="127.0.0.1:9377", pattern=r"^\[?[^\s/]*\]?:\d{1,5}$")
    admin_listen: str | None = Field(default=None, pattern=r"^\[?[^\s/]*\]?:\d{1,5}$")
    state_dir: str | None = None
    pop_ttl: float = Field(default=60.0, gt=0)
    pbx: str | None = None  # this PBX's name in delivery keys; default server.host
    # where operators reach the agent (reverse proxy); default http://<listen>
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$")
    # active/standby: a Redis lease per PBX (`cti:lease:<pbx>`); unset: always active
    lease: str | None = Field(default=None, pattern=r"^rediss?://\S+$")
    lease_ttl: float = Field(default=5.0, ge=0.5, le=300)
    # seconds delivered outbox rows and operator page history (caller numbers) are kept
    retention: float = Field(default=7 * 86400.0, ge=60)

    _ports = field_validator("listen", "admin_listen", "public_url", "lease")(_port_in_range)


class DeskConfig(_Block):
    """Service-desk links on operator pages: `{employee[id]}`, `{call[caller_e164]}`, …"""

    card_url: str | None = None
    form_url: str | None = None

    @field_validator("card_url", "form_url")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        from cti_cli.agent.desk_links import check_template

        return None if value is None else check_template(value)


class CdrConfig(_Block):
    dbaccess: str | None = None
    recordings_dir: str = str(DEFAULT_RECORDINGS_DIR)


class CallsConfig(_Block):
    """How the tracker reads extensions out of channel names (`PJSIP/101-0000002a` → 101)."""

    extension_pattern: str | None = None
    # calls followed at once; past this the oldest is dropped (counted, warned about)
    max_active: int = Field(default=20_000, ge=1, le=10_000_000)


def _known_event_names(cls: type, value: list[str] | None) -> list[str] | None:
    """`events = [...]` of a webhook or a bus: only names cti sends, with a "did you mean"."""
    for name in value or ():
        if name not in WEBHOOK_EVENTS:
            hint = difflib.get_close_matches(name, WEBHOOK_EVENTS, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ValueError(f"unknown event {name!r} (known: {', '.join(WEBHOOK_EVENTS)}){extra}")
    return value


class Webhook(_Block):
    url: str = Field(pattern=r"^https?://\S+$")
    secret: SecretStr = SecretStr("")
    secret_file: str | None = None  # read at start, wins over `secret`
    format: WebhookFormat = "json"
    events: list[str] | None = None  # None: every event
    timeout: float = Field(default=5.0, gt=0, le=120)

    _known_events = field_validator("events")(_known_event_names)
    _port = field_validator("url")(_port_in_range)

    def wants(self, event: str) -> bool:
        return self.events is None or event in self.events


class Publish(_Block):
    """An event bus the agent publishes every call event and pop to: NATS JetStream
    (`nats://`, `tls://`) or RabbitMQ (`amqp://`, `amqps://`, a topic exchange)."""

    url: str = Field(pattern=r"^(nats|tls|amqps?)://[^\s#]+$")
    stream: str = Field(default="CTI", pattern=r"^[A-Za-z0-9_-]{1,64}$")  # or the exchange
    subject: str = Field(default="cti", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    events: list[str] | None = None  # None: every event
    timeout: float = Field(default=5.0, gt=0, le=120)

    _known_events = field_validator("events")(_known_event_names)
    _port = field_validator("url")(_port_in_range)

    def wants(self, event: str) -> bool:
        return self.events is None or event in self.events

    @property
    def kind(self) -> Literal["nats", "amqp"]:
        return "amqp" if self.url.startswith("amqp") else "nats"


class Status(_Block):
    """What the last successful `cti enable` check saw; written by the tool, not by hand."""

    ami_version: str | None = None
    asterisk_version: str | None = None
    checked_at: str | None = None


class Config(_Block):
    enabled: Flag = False
    server: ServerConfig = Field(default_factory=ServerConfig)
    servers: list[NamedServer] = Field(default_factory=list)  # several PBXs; or one [server]
    teams: list[Team] = Field(default_factory=list)
    rule: RuleConfig = Field(default_factory=RuleConfig)
    cdr: CdrConfig = Field(default_factory=CdrConfig)
    calls: CallsConfig = Field(default_factory=CallsConfig)
    webhooks: list[Webhook] = Field(default_factory=list)
    publish: list[Publish] = Field(default_factory=list)
    directory: DirectoryConfig = Field(default_factory=DirectoryConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    desk: DeskConfig = Field(default_factory=DeskConfig)
    status: Status = Field(default_factory=Status)

    @model_validator(mode="after")
    def _one_server_form(self) -> Config:
        if self.servers and self.server != ServerConfig():
            raise ValueError("use either [server] or [[servers]], not both")
        seen: set[str] = set()
        for entry in self.servers:
            if entry.name in seen:
                raise ValueError(f"[[servers]] name {entry.name!r} is used twice; names are unique")
            seen.add(entry.name)
        return self

    def pbx_servers(self) -> list[tuple[str, ServerConfig]]:
        """(PBX name, server) for every AMI server: the `[[servers]]`, or the one `[server]`
        named `[agent] pbx` (default its host)."""
        if self.servers:
            return [(entry.name, entry) for entry in self.servers]
        return [(self.agent.pbx or self.server.host or "pbx", self.server)]

    def incomplete(self) -> list[str]:
        """What `cti enable` still needs that the config itself shows, one line per block,
        naming the fix. Whether the rule file reads is asked of the file system, not of the
        model: `config_file.enable_problems` adds that."""
        problems = []
        several = bool(self.servers)
        for index, (name, server) in enumerate(self.pbx_servers()):
            where = f"servers[{index}]" if several else "server"
            who = f" ({name})" if several else ""
            for key, value in (("host", server.host), ("login", server.login)):
                if not value:
                    fix = "set it in the file" if several else f"run cti configure --{key} …"
                    problems.append(f"connection parameters{who}: {where}.{key} is not set; {fix}")
            if not server.password.get_secret_value():
                fix = (
                    f"set it (or {where}.password_file) in the file" if several else
                    "run cti configure --password-stdin (or set CTI_SERVER__PASSWORD)"
                )  # fmt: skip
                problems.append(f"connection parameters{who}: {where}.password is not set; {fix}")
        if not any(m.extensions for t in self.teams for m in t.members):
            problems.append(
                "responsible teams: no team has a member with an extension; "
                "run cti teams add NAME and cti teams member NAME --login L --ext 101"
            )
        return problems

    def team(self, name: str) -> Team | None:
        return next((t for t in self.teams if t.name == name), None)

    def operator_extensions(self) -> dict[str, tuple[Team, Member]]:
        """Extension → (team, member): who is responsible when that phone rings."""
        owners: dict[str, tuple[Team, Member]] = {}
        for team in self.teams:
            for member in team.members:
                for ext in member.extensions:
                    owners.setdefault(ext, (team, member))
        return owners
