"""The config file on disk: read (only a small regular file, valid UTF-8 TOML), validated into
a `Config`, and written back atomically with mode 0600 under an edit lock.

Two views of the same file exist on purpose:

* ``load_file`` — exactly what the file says. Commands that *edit* the config use it, so a
  secret injected through the environment (``CTI_SERVER__PASSWORD`` from systemd credentials)
  is never written back to disk.
* ``load`` — the file overlaid with ``CTI_*`` environment variables (config_env.py), which is
  what running commands (`enable`, `watch`, `agent`) must use.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, SecretStr, ValidationError

from cti_cli import config_env
from cti_cli.config_errors import ConfigError, describe_errors
from cti_cli.config_model import Config
from cti_cli.files import read_small, write_private

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


def _validate(data: dict[str, Any], filename: str) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(list(describe_errors(filename, exc))) from None


def _effective(data: dict[str, Any], filename: str) -> Config:
    if config_env.applies():
        return config_env.effective(data, filename)
    return _validate(data, filename)


def load_file(path: Path) -> Config:
    """The file exactly as written (no environment overlay); defaults when it does not exist."""
    return _validate(_read_toml(path), path.name)


def load(path: Path) -> Config:
    """The effective config: the file overlaid with `CTI_*` environment variables, and the
    secrets that `*_file` keys point at read in."""
    config = _effective(_read_toml(path), path.name)
    resolve_secret_files(config, path.name)
    return config


def enable_problems(config: Config) -> list[str]:
    """What `cti enable` still needs: the gaps the config shows (`Config.incomplete`), and a
    rule script that cannot be read or does not compile."""
    problems = config.incomplete()
    if config.rule.script:
        from cti_cli.rules import RuleError, read_rule

        try:
            read_rule(Path(config.rule.script))
        except RuleError as exc:
            problems.append(f"call handling rule: {exc}")
    return problems


SECRET_FILE_LIMIT = 64 * 1024


def read_secret_file(raw: str, key: str, filename: str) -> str:
    """A secret kept in its own file (systemd credentials): `${CREDENTIALS_DIRECTORY}` and `~`
    expanded, one value, the trailing newline dropped; ConfigError naming the key if unusable."""
    secret_path = Path(os.path.expandvars(raw)).expanduser()
    try:
        fd = os.open(secret_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(
            [f"{filename}: {key}: cannot read {secret_path}: {exc.strerror}; fix the path"]
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
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


def with_environment(config: Config, filename: str) -> Config:
    """Overlay `CTI_*` environment variables on an in-memory config (e.g. one about to be saved);
    `ConfigError` naming the variable if one is wrong."""
    return _effective(to_toml_dict(config), filename)


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
    write_private(path, text.encode("utf-8"))


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
