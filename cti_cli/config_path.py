"""Where the config file is, known without loading the config model (pydantic): the `cti`
command needs the path before any command runs, `cti --help` included."""

from __future__ import annotations

import os
from pathlib import Path


def default_path() -> Path:
    """`$CTI_CONFIG`, else `$XDG_CONFIG_HOME/cti/cti.toml` (`~/.config/cti/cti.toml`)."""
    if env := os.environ.get("CTI_CONFIG"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cti" / "cti.toml"
