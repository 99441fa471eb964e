"""The `cti` configuration: one TOML file, validated, written atomically with mode 0600.

Two views of the same file exist on purpose:

* ``load_file`` — exactly what the file says. Commands that *edit* the config use it, so a
  secret injected through the environment (``CTI_SERVER__PASSWORD`` from systemd credentials)
  is never written back to disk.
* ``load`` — the file overlaid with ``CTI_*`` environment variables (``__`` nests), which is
  what running commands (`enable`, `watch`, `agent`) must use.
"""

from __future__ import annotations

import difflib
import fcntl
import os
import re
import stat
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from cti_cli.config_path import default_path as default_path  # re-exported
from cti_cli.files import read_small

DEFAULT_RECORDINGS_DIR = Path("/var/spool/asterisk/monitor")
SECRET_MASK = "••••••"


class ConfigError(Exception):
    """A config problem a user must fix; ``problems`` holds one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _not_a_number(value: object) -> object:
    """TOML has real booleans: `enabled = 1` is a mistake, not `true` (env strings still parse)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


Flag = Annotated[bool, BeforeValidator(_not_a_number)]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerConfig(_Block):
    type: Literal["asterisk-ami"] = "asterisk-ami"
    host: str = ""
    port: int = Field(default=5038, ge=1, le=65535, strict=False)
    login: str = ""
    password: SecretStr = SecretStr("")
    password_file: str | None = None  # e.g. systemd LoadCredential: read at start, wins
    tls: Flag = False
    cafile: str | None = None
    auth: Literal["md5", "plain"] = "md5"
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
    trigger: Literal["ring", "answer"] = "answer"
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


WEBHOOK_EVENTS = ("screen_pop", "call.ringing", "call.answered", "call.transferred", "call.ended")


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
    format: Literal["json", "zammad"] = "json"
    events: list[str] | None = None  # None: every event
    timeout: float = Field(default=5.0, gt=0, le=120)

    _known_events = field_validator("events")(_known_event_names)

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
        """What `cti enable` still needs, one line per block, naming the fix."""
        problems = []
        several = bool(self.servers)
        for index, (name, server) in enumerate(self.pbx_servers()):
            where = f"servers[{index}]" if several else "server"
            who = f" ({name})" if several else ""
            for key, value in (("host", server.host), ("login", server.login)):
                if not value:
                    fix = "set it in the file" if several else f"run cti configure --{key} …"
                    problems.append(
                        f"connection parameters{who}: {where}.{key} is not set; {fix}"
                    )
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
        if self.rule.script:
            from cti_cli.rules import RuleError, read_rule

            try:
                read_rule(Path(self.rule.script))
            except RuleError as exc:
                problems.append(f"call handling rule: {exc}")
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


def _environment_applies() -> bool:
    """Whether a `CTI_<key>` variable names a config key: only then is the environment laid
    over the file (config_env.py), so pydantic-settings (40 ms to import) is loaded only then."""
    keys = {f"CTI_{name.upper()}" for name in Config.model_fields}
    return any(var.upper().split("__", 1)[0] in keys for var in os.environ)


def _effective(data: dict[str, Any]) -> Config:
    if not _environment_applies():
        return Config.model_validate(data)
    from cti_cli.config_env import EnvOverlay

    return EnvOverlay(**data)


def _overlay(base: dict[str, Any], env: dict[str, Any], where: str) -> dict[str, Any]:
    out = dict(base)
    for key, value in env.items():
        name = f"{where}_{key.upper()}" if where == "CTI" else f"{where}__{key.upper()}"
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, list) and all(k.isdigit() for k in value):
            items = list(old)
            for index, patch in value.items():
                i = int(index)
                if i >= len(items):
                    raise ConfigError([
                        f"environment {name}__{index}: the config file lists {len(items)} "
                        f"{key} (numbered from 0); add that entry to the file first"
                    ])  # fmt: skip
                item = items[i]
                if isinstance(patch, dict) and isinstance(item, dict):
                    items[i] = _overlay(item, patch, f"{name}__{index}")
                else:
                    items[i] = patch
            out[key] = items
        elif isinstance(value, dict) and isinstance(old, dict):
            out[key] = _overlay(old, value, name)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------- paths


# default_path lives in config_path.py (no pydantic there): `cti` needs it before any command


# ---------------------------------------------------------------- reading


CONFIG_SIZE_LIMIT = 1 << 20  # a real config is a few KiB


def _read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML; only a regular file is read (a FIFO would hang, `/dev/zero` never
    ends), and at most `CONFIG_SIZE_LIMIT` bytes of it."""
    try:
        raw = read_small(path, CONFIG_SIZE_LIMIT)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 (byte {exc.start}); save it as UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None


def _validate(
    path: Path, factory: Callable[[dict[str, Any]], Config], data: dict[str, Any]
) -> Config:
    try:
        return factory(data)
    except ValidationError as exc:
        raise ConfigError(list(describe_errors(path.name, exc))) from None


def load_file(path: Path) -> Config:
    """The file exactly as written (no environment overlay); defaults when it does not exist."""
    return _validate(path, Config.model_validate, _read_toml(path))


def load(path: Path) -> Config:
    """The effective config: the file overlaid with `CTI_*` environment variables, and the
    secrets that `*_file` keys point at read in."""
    config = _validate(path, _effective, _read_toml(path))
    resolve_secret_files(config, path.name)
    return config


SECRET_FILE_LIMIT = 64 * 1024


def read_secret_file(raw: str, key: str, filename: str) -> str:
    """A secret kept in its own file (systemd credentials): `${CREDENTIALS_DIRECTORY}` and `~`
    expanded, one value, the trailing newline dropped; ConfigError naming the key if unusable."""
    import stat as _stat

    secret_path = Path(os.path.expandvars(raw)).expanduser()
    try:
        fd = os.open(secret_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(
            [f"{filename}: {key}: cannot read {secret_path}: {exc.strerror}; fix the path"]
        ) from None
    try:
        if not _stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError([f"{filename}: {key}: {secret_path} is not a regular file"])
        data = os.read(fd, SECRET_FILE_LIMIT + 1)
    finally:
        os.close(fd)
    if len(data) > SECRET_FILE_LIMIT:
        raise ConfigError([f"{filename}: {key}: {secret_path} is larger than 64 KiB"])
    try:
        text = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError([f"{filename}: {key}: {secret_path} is not UTF-8 text"]) from None
    if not text or any(c in text for c in "\r\n"):
        raise ConfigError(
            [f"{filename}: {key}: {secret_path} must hold one line (the secret), not empty"]
        )
    return text


def resolve_secret_files(config: Config, filename: str) -> None:
    """Fill `server.password` and `webhooks[n].secret` from their `*_file` twins."""
    if config.server.password_file:
        value = read_secret_file(config.server.password_file, "server.password_file", filename)
        config.server.password = SecretStr(value)
    for index, entry in enumerate(config.servers):
        if entry.password_file:
            key = f"servers[{index}].password_file"
            entry.password = SecretStr(read_secret_file(entry.password_file, key, filename))
    for index, hook in enumerate(config.webhooks):
        if hook.secret_file:
            key = f"webhooks[{index}].secret_file"
            hook.secret = SecretStr(read_secret_file(hook.secret_file, key, filename))


def with_environment(config: Config) -> Config:
    """Overlay `CTI_*` environment variables on an in-memory config (e.g. one about to be saved)."""
    return _effective(to_toml_dict(config))


def permission_warning(path: Path) -> str | None:
    """A warning when others may read or change the file (it holds the AMI password)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return None
    readable = mode & (stat.S_IRGRP | stat.S_IROTH)
    writable = mode & (stat.S_IWGRP | stat.S_IWOTH)
    words = " and ".join(w for w, on in (("readable", readable), ("writable", writable)) if on)
    what = f"{words} by" if words else "accessible to"  # only x bits: not the owner's alone
    return (
        f"warning: {path} is {what} others (mode {stat.S_IMODE(mode):04o}); "
        f"it holds secrets: run chmod 600 {path}"
    )


# ---------------------------------------------------------------- writing


def to_toml_dict(config: Config) -> dict[str, Any]:
    """Plain data for TOML: secrets revealed (it is the secret store), `None` dropped."""

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, BaseModel):
            items = ((k, plain(v)) for k, v in value)
            return {k: v for k, v in items if v is not None and v != {}}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    data: dict[str, Any] = plain(Config.model_validate(config.model_dump()))
    return data


def write_target(path: Path) -> Path:
    """Where saving `path` really writes: a symlinked config (`/etc/cti/cti.toml` -> a file
    kept elsewhere) is written through to its target, so the link stays a link."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def save(path: Path, config: Config) -> None:
    """Write atomically: a 0600 temp file in the same folder, fsync, rename over the old one
    (through a symlink: in the target's folder, over the target)."""
    text = tomli_w.dumps(to_toml_dict(config))
    path = write_target(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress_os_error():
            os.unlink(tmp)
        raise
    with _suppress_os_error():
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class ConfigLocked(ConfigError):
    """Another command holds the config's edit lock for longer than we wait."""


class EditLock:
    """Held from reading the config for an edit to saving it, so that two commands changing it
    at once (two `cti teams member` loops) cannot lose each other's update. An exclusive
    `flock` on a sibling lock file (`.cti.toml.lock`); released by `release()` or exit."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the file drops the flock

    def __enter__(self) -> EditLock:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.release()


def lock_for_edit(path: Path, wait: float = 30.0) -> EditLock:
    """Take the edit lock of the config at `path`, waiting up to `wait` seconds for another
    command to finish its edit; `ConfigLocked` after that, `OSError` if it cannot be made."""
    path = write_target(path)  # every name of one config file takes the same lock
    lock_path = path.parent / f".{path.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return EditLock(fd, lock_path)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise ConfigLocked([
                    f"{path}: another cti command has been changing it for {wait:g} s "
                    f"(it holds {lock_path}); try again when it is done"
                ]) from None  # fmt: skip
            time.sleep(0.02)
        except BaseException:
            os.close(fd)
            raise


class _suppress_os_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        return isinstance(exc, OSError)


# ---------------------------------------------------------------- error messages

_ALLOWED: dict[str, str] = {
    "enabled": "must be true or false",
    "server.type": 'must be "asterisk-ami"',
    "server.port": "must be an integer 1–65535",
    "server.tls": "must be true or false",
    "server.auth": 'must be "md5" or "plain"',
    "server.timeout": "must be a number of seconds, more than 0 and at most 300",
    "servers.*.name": "must be a PBX name: letters, digits, _ or - (up to 64), e.g. \"main\"",
    "servers.*.port": "must be an integer 1–65535",
    "servers.*.tls": "must be true or false",
    "servers.*.auth": 'must be "md5" or "plain"',
    "servers.*.timeout": "must be a number of seconds, more than 0 and at most 300",
    "rule.trigger": 'must be "ring" or "answer"',
    "rule.timeout": "must be a number of seconds, more than 0 and at most 60",
    "agent.listen": 'must be HOST:PORT, e.g. "127.0.0.1:9377"',
    "agent.admin_listen": 'must be HOST:PORT, e.g. "127.0.0.1:9378"',
    "agent.pop_ttl": "must be a number of seconds, more than 0",
    "agent.public_url": "must be an http:// or https:// URL without ?query or #fragment",
    "directory.region": 'must be a two-letter country code like "RU"',
    "webhooks.*.url": "must be an http:// or https:// URL",
    "webhooks.*.format": 'must be "json" or "zammad"',
    "publish.*.url": "must be a nats://, tls://, amqp:// or amqps:// URL (no #fragment)",
    "publish.*.stream": "must be 1–64 letters, digits, _ or -",
    "publish.*.subject": 'must be dot-separated words of letters, digits, _ or -, e.g. "cti"',
    "agent.lease": 'must be a redis:// or rediss:// URL, e.g. "redis://127.0.0.1:6379/0"',
    "agent.lease_ttl": "must be a number of seconds from 0.5 to 300",
    "agent.retention": "must be a number of seconds, at least 60 (604800 is 7 days)",
}


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of an error location."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))[0]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
        else:
            return None
    return model


def describe_errors(filename: str, exc: ValidationError) -> Iterator[str]:
    """One line per problem: file, key path, bad value, what is allowed."""
    for error in exc.errors():
        loc = list(error["loc"])
        key = key_path(loc)
        pattern = ".".join("*" if isinstance(p, int) else str(p) for p in loc)
        value = error.get("input")
        shown = _show_value(key, value)
        if error["type"] == "extra_forbidden":
            model = _model_at(loc)
            known = list(model.model_fields) if model else []
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            suggestion = (
                f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(known)}"
            )
            yield f"{filename}: {key}: unknown key{suggestion}"
            continue
        if error["type"] == "missing":
            yield f"{filename}: {key}: is required"
            continue
        allowed = _ALLOWED.get(pattern) or error["msg"].removeprefix("Value error, ")
        if not loc:  # a rule across blocks ([server] vs [[servers]])
            yield f"{filename}: {allowed}"
            continue
        yield f"{filename}: {key}: {allowed}, got {shown}"


def key_path(loc: Sequence[str | int]) -> str:
    """`("teams", 0, "name")` → `teams[0].name`, the way a user reads the TOML."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _show_value(key: str, value: object) -> str:
    if "password" in key or "secret" in key:
        return SECRET_MASK
    if isinstance(value, str) and "://" in value and "@" in value:  # user:password@host
        scheme, host = value.partition("://")[0], value.rpartition("@")[2]
        return f'"{scheme}://{SECRET_MASK}@{host}"'
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, dict | list):
        return "a table" if isinstance(value, dict) else "a list"
    return repr(value).replace("True", "true").replace("False", "false")
