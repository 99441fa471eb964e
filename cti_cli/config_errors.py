"""How config problems are worded: one line each, naming where the bad value came from (the
file and its key path, or the `CTI_*` variable), what is allowed, and never a secret."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError

from cti_cli.config_model import Config

SECRET_MASK = "••••••"

Loc = Sequence[str | int]
# the `CTI_*` variables that gave the value at a key path ([] when the file gave it)
VariablesAt = Callable[[Loc], list[str]]


class ConfigError(Exception):
    """A config problem a user must fix; ``problems`` holds one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# What a key accepts, where pydantic's own message would not say it in the config's terms.
# Keys with a fixed set of values (`auth`, `trigger`, `format`, …) are worded from the
# model's Literal (config_choices.py) instead.
_ALLOWED: dict[str, str] = {
    "enabled": "must be true or false",
    "server.port": "must be an integer 1–65535",
    "server.tls": "must be true or false",
    "server.timeout": "must be a number of seconds, more than 0 and at most 300",
    "servers.*.name": 'must be a PBX name: letters, digits, _ or - (up to 64), e.g. "main"',
    "servers.*.port": "must be an integer 1–65535",
    "servers.*.tls": "must be true or false",
    "servers.*.timeout": "must be a number of seconds, more than 0 and at most 300",
    "rule.timeout": "must be a number of seconds, more than 0 and at most 60",
    "agent.listen": 'must be HOST:PORT with a port 1–65535, e.g. "127.0.0.1:9377"',
    "agent.admin_listen": 'must be HOST:PORT with a port 1–65535, e.g. "127.0.0.1:9378"',
    "agent.pop_ttl": "must be a number of seconds, more than 0",
    "agent.public_url": "must be an http:// or https:// URL without ?query or #fragment "
    "(its port 1–65535)",
    "directory.region": 'must be a two-letter country code like "RU"',
    "webhooks.*.url": "must be an http:// or https:// URL (its port 1–65535)",
    "url": "must be an http:// or https:// URL (its port 1–65535)",  # `cti webhooks add`
    "publish.*.url": "must be a nats://, tls://, amqp:// or amqps:// URL (no #fragment, its "
    "port 1–65535)",
    "publish.*.stream": "must be 1–64 letters, digits, _ or -",
    "publish.*.subject": 'must be dot-separated words of letters, digits, _ or -, e.g. "cti"',
    "agent.lease": 'must be a redis:// or rediss:// URL with a port 1–65535, e.g. '
    '"redis://127.0.0.1:6379/0"',
    "agent.lease_ttl": "must be a number of seconds from 0.5 to 300",
    "agent.retention": "must be a number of seconds, at least 60 (604800 is 7 days)",
}


def describe_errors(
    filename: str, exc: ValidationError, variables_at: VariablesAt | None = None
) -> Iterator[str]:
    """One line per problem: where the value came from (`filename` and the key path, or the
    environment variable `variables_at` names), the bad value, what is allowed."""
    for error in exc.errors():
        loc = tuple(error["loc"])
        names = variables_at(loc) if variables_at else []
        if not names:
            yield _in_file(filename, error, loc)
        elif not loc:  # a rule across blocks: the file and the variables together broke it
            yield f"{filename} with {', '.join(names)} (environment): {_allowed(error, loc)}"
        else:
            yield _in_environment(names[0], error, loc)


def _in_file(filename: str, error: Any, loc: tuple[str | int, ...]) -> str:
    key = key_path(loc)
    if error["type"] == "extra_forbidden":
        known = _known_keys(loc)
        hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(known)}"
        return f"{filename}: {key}: unknown key{suggestion}"
    if error["type"] == "missing":
        return f"{filename}: {key}: is required"
    if not loc:  # a rule across blocks ([server] vs [[servers]])
        return f"{filename}: {_allowed(error, loc)}"
    return f"{filename}: {key}: {_allowed(error, loc)}, got {_show_value(key, error.get('input'))}"


def _in_environment(name: str, error: Any, loc: tuple[str | int, ...]) -> str:
    """`name` set the value at `loc` (`CTI_SERVER__PORT`), or a JSON value holding it
    (`CTI_SERVERS` for `servers[0].port`): then the key path is named as well."""
    key = key_path(loc)
    exact = name.upper().removeprefix("CTI_").split("__") == [str(p).upper() for p in loc]
    where = name if exact else f"{name}: {key}"
    if error["type"] == "extra_forbidden":
        hint = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
        if not hint:
            return f"{where}: unknown setting (environment)"
        if not exact:  # a key inside a JSON value
            return f"{where}: unknown setting (environment); did you mean {hint[0]!r}?"
        head, nested, _ = name.rpartition("__")
        better = f"{head}__{hint[0].upper()}" if nested else f"CTI_{hint[0].upper()}"
        return f"{where}: unknown setting (environment); did you mean {better}?"
    if error["type"] == "missing":
        return f"{where}: is required (environment)"
    shown = _show_value(key, error.get("input"))
    return f"{where}: {_allowed(error, loc)}, got {shown} (environment)"


def _allowed(error: Any, loc: tuple[str | int, ...]) -> str:
    pattern = ".".join("*" if isinstance(p, int) else str(p) for p in loc)
    if error["type"] == "url_password":  # more precise than what the key accepts in general
        return str(error["msg"])
    if error["type"] == "literal_error" and (choices := _choices_at(loc)):
        quoted = [f'"{c}"' for c in choices]
        either = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        return f"must be {either}"
    return _ALLOWED.get(pattern) or str(error["msg"]).removeprefix("Value error, ")


def _model_at(loc: Loc) -> type[BaseModel] | None:
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


def _known_keys(loc: Loc) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model else []


def _choices_at(loc: Loc) -> tuple[str, ...]:
    """The values a Literal key allows (`server.auth` → md5, plain), from the model."""
    model = _model_at(loc)
    field = model.model_fields.get(str(loc[-1])) if model and loc else None
    annotation = field.annotation if field else None
    if get_origin(annotation) is Literal:
        return tuple(str(choice) for choice in get_args(annotation))
    return ()


def key_path(loc: Loc) -> str:
    """`("teams", 0, "name")` → `teams[0].name`, the way a user reads the TOML."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_URL_KEYS = ("url", "source", "lease")  # a token may sit in the path or the query


def _url_shown(value: str) -> str:
    """Only where a URL goes: Zammad's token is its path, other services put one in the
    query, and user:password may precede the host."""
    scheme, _, rest = value.partition("://")
    _userinfo, at, rest = rest.rpartition("@")  # the last "@": a password may hold "/" or "?"
    authority, slash, path = rest.partition("/")
    host, question, _query = authority.partition("?")
    shown = f"{scheme}://{SECRET_MASK + '@' if at else ''}{host}"
    return f'"{shown}/{SECRET_MASK}"' if (slash and path) or question else f'"{shown}"'


def _show_value(key: str, value: object) -> str:
    if "password" in key or "secret" in key:
        return SECRET_MASK
    if isinstance(value, str) and "://" in value and key.rpartition(".")[2] in _URL_KEYS:
        return _url_shown(value)
    if isinstance(value, str) and "://" in value and "@" in value:  # user:password@host
        scheme, host = value.partition("://")[0], value.rpartition("@")[2]
        return f'"{scheme}://{SECRET_MASK}@{host}"'
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, dict | list):
        return "a table" if isinstance(value, dict) else "a list"
    return repr(value).replace("True", "true").replace("False", "false")
