"""How `cti … -h` reads: commands in the order an admin uses them, placeholders as words.

typer shows an option's value as its Python type (`<str>`, `<list[str]>`, `<float range>`)
and a required argument in braces (`{file}`). `CtiGroup` (the root command's class) fixes each
command as it is looked up: an option without a `metavar` gets a word for its type (`TEXT`, `N`,
`NUMBER`, `PATH`, `a|b` for choices), an argument shows its name in capitals (`FILE`, or
`[FILE]` when optional) and no type. Commands that know better set `metavar=` themselves.
A command's summary in its group's list is the first sentence of its help, cut at a clause
boundary (`:`, `;`, `(`, `,`) so that the line fits in 80 columns instead of ending in "...".
"""

from __future__ import annotations

import re
from typing import Any

from typer import _click
from typer.core import TyperArgument, TyperGroup, TyperOption

HELP_OPTIONS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}
COLUMNS = 80  # summaries fit a terminal this wide
_BOUNDARY = re.compile(r" \(|[:;,] | — ")

# The order of `cti -h`: try it, set it up, switch it on, run it, look at calls, fix deliveries.
# A command not listed here comes after these, in the order it was registered.
ORDER = (
    "demo",
    "configure",
    "teams",
    "rule",
    "webhooks",
    "doctor",
    "enable",
    "show",
    "agent",
    "operator",
    "status",
    "watch",
    "events",
    "calls",
    "recordings",
    "replay",
    "outbox",
    "disable",
)

_TYPE_WORDS = {
    "str": "TEXT",
    "int": "N",
    "int range": "N",
    "float": "NUMBER",
    "float range": "NUMBER",
    "path": "PATH",
    "file": "PATH",
    "directory": "PATH",
}


class _Argument(TyperArgument):
    """An argument shown as its name in capitals: `FILE`, `[ID]`; its type not repeated."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw.upper()
        if self.metavar is None and not self.required:
            name = f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def _rich_display_name(self) -> str:
        return self.display_name_raw.upper() + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: _click.Context) -> str | None:
        return None


def option_word(option: TyperOption, ctx: _click.Context) -> str:
    """The placeholder for an option's value: a word, never a Python type."""
    shown = option.display_type(ctx).strip("<>").removesuffix("...")
    if shown.startswith("list[") and shown.endswith("]"):
        shown = shown[5:-1]
    if "|" in shown:
        return shown  # choices: md5|plain
    return _TYPE_WORDS.get(shown, "TEXT")


def summary(text: str, width: int) -> str:
    """The first sentence of `text`, cut at the last clause boundary that fits in `width`."""
    paragraph = " ".join(text.strip().split("\n\n", 1)[0].split())
    sentence = re.split(r"(?<=\.) ", paragraph, maxsplit=1)[0]
    if len(sentence) <= width:
        return sentence
    cuts = [
        m.start()
        for m in _BOUNDARY.finditer(sentence)
        if m.start() <= width and _outside_parentheses(sentence, m.start())
    ]
    if cuts:
        return sentence[: cuts[-1]].rstrip()
    return sentence[: width - 1].rsplit(" ", 1)[0] + "…"


def _outside_parentheses(text: str, at: int) -> bool:
    return text.count("(", 0, at) == text.count(")", 0, at)


def plain_placeholders(command: _click.Command, ctx: _click.Context) -> None:
    """Give `command` (and, for a group, every command under it) word placeholders and
    summaries that fit."""
    for param in command.params:
        if type(param) is TyperArgument:
            param.__class__ = _Argument
        elif isinstance(param, TyperOption) and param.metavar is None and not param.is_flag:
            param.metavar = option_word(param, ctx)
    if isinstance(command, TyperGroup) and command.commands:
        # the list's line: 2 + longest name + 2 + summary (click keeps 6 columns spare)
        width = COLUMNS - 2 - 6 - max(len(name) for name in command.commands)
        for sub in command.commands.values():
            if sub.short_help is None and sub.help:
                sub.short_help = summary(sub.help, width)
            plain_placeholders(sub, ctx)


class CtiGroup(TyperGroup):
    """The root `cti` group: commands in ORDER, placeholders as words."""

    def list_commands(self, ctx: _click.Context) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(ORDER)))

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            plain_placeholders(command, ctx)
        return command

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        plain_placeholders(self, ctx)
        super().format_help(ctx, formatter)


__all__ = ["HELP_OPTIONS", "ORDER", "CtiGroup", "plain_placeholders"]
