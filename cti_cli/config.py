"""The `cti` configuration, one import for the rest of the tree: `from cti_cli import config`.

Each part lives in a module of its own:

* config_model.py — what a config is (the pydantic models), no I/O;
* config_file.py — reading, validating and saving the TOML file, the edit lock, secret files;
* config_env.py — `CTI_*` environment variables laid over the file;
* config_errors.py — one line per problem, naming the file's key or the variable;
* config_choices.py, config_path.py — the fixed values and the file's path, without pydantic
  (`cti --help` needs them before any command runs).
"""

from __future__ import annotations

from cti_cli.config_choices import WEBHOOK_EVENTS
from cti_cli.config_errors import SECRET_MASK, ConfigError, describe_errors, key_path
from cti_cli.config_file import (
    CONFIG_SIZE_LIMIT,
    SECRET_FILE_LIMIT,
    ConfigLocked,
    EditLock,
    enable_problems,
    load,
    load_file,
    lock_for_edit,
    permission_warning,
    read_secret_file,
    resolve_secret_files,
    save,
    to_toml_dict,
    with_environment,
    write_target,
)
from cti_cli.config_model import (
    DEFAULT_RECORDINGS_DIR,
    PBX_NAME,
    AgentConfig,
    CallsConfig,
    CdrConfig,
    Config,
    DeskConfig,
    DirectoryConfig,
    Flag,
    Member,
    NamedServer,
    Publish,
    RuleConfig,
    ServerConfig,
    Status,
    Team,
    Webhook,
    split_extension,
)
from cti_cli.config_path import default_path

__all__ = [
    "CONFIG_SIZE_LIMIT", "DEFAULT_RECORDINGS_DIR", "PBX_NAME", "SECRET_FILE_LIMIT", "SECRET_MASK",
    "WEBHOOK_EVENTS", "AgentConfig", "CallsConfig", "CdrConfig", "Config", "ConfigError",
    "ConfigLocked", "DeskConfig", "DirectoryConfig", "EditLock", "Flag", "Member", "NamedServer",
    "Publish", "RuleConfig", "ServerConfig", "Status", "Team", "Webhook", "default_path",
    "describe_errors", "enable_problems", "key_path", "load", "load_file", "lock_for_edit",
    "permission_warning", "read_secret_file", "resolve_secret_files", "save", "split_extension",
    "to_toml_dict", "with_environment", "write_target",
]  # fmt: skip
