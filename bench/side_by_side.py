"""What the benches that compare trees (`--against TREE`) share: how a tree is named in a table."""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_of(tree: Path) -> str:
    """The short commit a checkout is at ("?" outside git): the version the run measured."""
    found = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    return found.stdout.strip() or "?"
