"""`CTI_*` environment variables laid over the config file (`CTI_SERVER__PASSWORD` from systemd
credentials), and told apart from it when a value is wrong.

pydantic-settings' own environment source reads the variables (the `CTI_` prefix, `__` for
nesting, JSON for lists and tables, names in any case). The file's data and theirs are merged
here and `Config` validates the result once. No settings object is built from the file, so a
key in it can never become a settings argument (`_env_prefix`, `_secrets_dir`): it is an
unknown key like any other. Items of the file's lists are patched in place
(`CTI_WEBHOOKS__0__SECRET`), where pydantic-settings alone would replace the whole list.

pydantic-settings (about 40 ms to import) is imported only when `applies()`.
"""

from __future__ import annotations

import json
import os
import types
import typing
from functools import cache
from typing import TYPE_CHECKING, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from cti_cli.config_errors import ConfigError, Loc, VariablesAt, describe_errors, key_path
from cti_cli.config_model import Config

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

PREFIX = "CTI_"
NESTING = "__"

# (key path, name) of set variables: (("server", "port"), "CTI_SERVER__PORT")
KeyedNames = list[tuple[tuple[str, ...], str]]


def applies() -> bool:
    """Whether a variable names a config key (`CTI_SERVER…`, not `CTI_CONFIG`)."""
    return bool(_variables())


def effective(data: dict[str, Any], filename: str) -> Config:
    """The file's `data` with the environment laid over it, validated; a `ConfigError` names
    the variable behind each bad value, and `filename` with the key path for the others."""
    layer = _read()
    given = [(path, name) for path, name in _variables() if _holds(layer, path)]

    def variables_at(loc: Loc) -> list[str]:
        return _names_at(given, loc)

    merged, problems = _merge(data, layer, Config, (), filename, variables_at)
    if problems:
        raise ConfigError(problems)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(list(describe_errors(filename, exc, variables_at))) from None


def _names_at(given: KeyedNames, loc: Loc) -> list[str]:
    """The variables that gave the value at key path `loc`: set at it or above it (a JSON
    value) first, longest first, then those below it, which built it."""
    want = tuple(str(part).lower() for part in loc)
    above = [(len(p), n) for p, n in given if p == want[: len(p)]]
    below = [n for p, n in given if len(p) > len(want) and p[: len(want)] == want]
    return [n for _, n in sorted(above, reverse=True)] + sorted(below)


def _holds(layer: Any, path: tuple[str, ...]) -> bool:
    """Whether pydantic-settings took the variable at `path` (it skips some, e.g. below a
    true/false key)."""
    for part in path:
        if not isinstance(layer, dict) or part not in layer:
            return False
        layer = layer[part]
    return True


def _variables() -> KeyedNames:
    """(key path, name) of each set `CTI_<key>…` variable that names a config key."""
    found = []
    for name in os.environ:
        if name.upper().startswith(PREFIX):
            path = tuple(name[len(PREFIX) :].lower().split(NESTING))
            if path[0] in Config.model_fields:
                found.append((path, name))
    return found


@cache
def _settings() -> type[BaseSettings]:
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class Variables(BaseSettings, Config):
        """The variables pydantic-settings reads: one per config key. Never instantiated."""

        model_config = SettingsConfigDict(
            env_prefix=PREFIX, env_nested_delimiter=NESTING, case_sensitive=False,
            defer_build=True,
        )  # fmt: skip

    return Variables


def _read() -> dict[str, Any]:
    from pydantic_settings import EnvSettingsSource, SettingsError

    try:
        return EnvSettingsSource(_settings())()
    except SettingsError:  # a list or table that is not JSON; the error names only its block
        bad = [n for p, n in _variables() if _wants_json(p) and not _is_json(os.environ[n])]
        raise ConfigError([
            f"{name}: not valid JSON (environment); a list is given as [...] and a table as "
            f"{{...}}, or one key per variable ({PREFIX}SERVER{NESTING}HOST)"
            for name in bad or [n for _, n in _variables()]
        ]) from None  # fmt: skip


def _merge(
    base: dict[str, Any], layer: dict[str, Any], model: type[BaseModel] | None,
    path: tuple[str | int, ...], filename: str, variables_at: VariablesAt,
) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """`layer` over `base`, tables key by key; `{"0": {...}}` for a list patches that item."""
    out, problems = dict(base), []
    for key, value in layer.items():
        annotation = _annotation(model, key)
        old = out.get(key)
        item = _list_item(annotation)
        if isinstance(value, dict) and item is not None and all(k.isdigit() for k in value):
            items = list(old) if isinstance(old, list) else []
            for index, patch in sorted(value.items(), key=lambda kv: int(kv[0])):
                i = int(index)
                where = (*path, key, i)
                if i >= len(items):
                    name = (variables_at(where) or [f"{PREFIX}{key.upper()}{NESTING}{i}"])[0]
                    problems.append(
                        f"{name}: {filename} has no {key_path(where)} to change "
                        f"(environment); it lists {len(items)}, numbered from 0: add that entry "
                        "to the file first"
                    )
                elif isinstance(patch, dict) and isinstance(items[i], dict):
                    items[i], more = _merge(
                        items[i], patch, _model(item), where, filename, variables_at
                    )
                    problems += more
                else:
                    items[i] = patch
            out[key] = items
        elif isinstance(value, dict) and isinstance(old, dict):
            out[key], more = _merge(
                old, value, _model(annotation), (*path, key), filename, variables_at
            )
            problems += more
        else:
            out[key] = value
    return out, problems


def _annotation(model: type[BaseModel] | None, key: str) -> Any:
    field = model.model_fields.get(key) if model else None
    return field.annotation if field else None


def _optional(annotation: Any) -> Any:
    """`X | None` → X."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _list_item(annotation: Any) -> Any:
    """The item type of a list key (`webhooks` → Webhook), None for other keys."""
    annotation = _optional(annotation)
    return get_args(annotation)[0] if get_origin(annotation) is list else None


def _model(annotation: Any) -> type[BaseModel] | None:
    annotation = _optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _wants_json(path: tuple[str, ...]) -> bool:
    """Whether the key at `path` holds a list or a table (pydantic-settings decodes JSON)."""
    annotation: Any = Config
    for part in path:
        if (model := _model(annotation)) is not None:
            annotation = _annotation(model, part)
        elif (item := _list_item(annotation)) is not None:
            annotation = item
        else:
            return False
    annotation = _optional(annotation)
    return _model(annotation) is not None or get_origin(annotation) in (list, dict)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True
