"""Channel names -> operator extensions.

An operator is always a real device: `PJSIP/101-0000002a`, `SIP/101-00000004`, `IAX2/101-1234`
give `101`. Sites whose device names are not plain numbers pass their own regex (first capture
group, or the group named `ext`, is the extension). Local channels are never operators, except
FreePBX queue members `Local/101@from-queue-...;1` (interface `Local/101@from-queue/n`), which
stand for extension 101. Trunks (`PJSIP/trunk-...`) do not match the default pattern.
"""

from __future__ import annotations

import re

DEFAULT_EXTENSION_PATTERN = r"^(?:PJSIP|SIP|IAX2)/(\d+)-[0-9a-fA-F]+$"
_FREEPBX_QUEUE_MEMBER = re.compile(r"^Local/(\d+)@from-queue(?:[-/;]|$)")


class ExtensionMatcher:
    """Decides once per channel name whether it is an operator's device, and which extension."""

    __slots__ = ("_regex",)

    def __init__(self, pattern: str | None = None) -> None:
        source = DEFAULT_EXTENSION_PATTERN if pattern is None else pattern
        try:
            regex = re.compile(source)
        except re.error as exc:
            raise ValueError(f"extension pattern {source!r} is not a valid regex: {exc}") from None
        if regex.groups < 1:
            raise ValueError(
                f"extension pattern {source!r} needs a capture group around the extension"
            )
        self._regex = regex

    def extension(self, name: str) -> str | None:
        """The operator extension behind channel (or queue interface) `name`, else None."""
        if name.startswith("Local/"):
            local = _FREEPBX_QUEUE_MEMBER.match(name)
            return local.group(1) if local else None
        match = self._regex.search(name)
        if match is None:
            return None
        groups = match.groupdict()
        ext = groups["ext"] if "ext" in groups else match.group(1)
        return ext or None


def local_pair_base(name: str) -> str | None:
    """`Local/x@ctx-0001;2` -> `Local/x@ctx-0001`: the two halves of one Local channel share it."""
    if name.startswith("Local/") and name[-2:] in (";1", ";2"):
        return name[:-2]
    return None
