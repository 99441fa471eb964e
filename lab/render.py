"""Render the lab's text templates ({{name}} placeholders; Asterisk's own ${...} stays intact)."""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"
SIPP = Path(__file__).parent / "sipp"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def render(text: str, values: dict[str, object]) -> str:
    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return str(values[key])

    return _PLACEHOLDER.sub(sub, text)


def render_file(src: Path, dst: Path, values: dict[str, object], mode: int = 0o644) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(render(src.read_text(encoding="utf-8"), values), encoding="utf-8")
    dst.chmod(mode)
