"""The agent's log: one line per record on stderr, every PBX string made printable."""

from __future__ import annotations

import json
import logging
import sys
import time

from cti_cli.textsafe import json_printable, printable


class SafeFormatter(logging.Formatter):
    """`2026-12-01T19:30:00Z warning cti.agent: message` — control characters escaped."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        text = printable(record.getMessage())
        line = f"{stamp} {record.levelname.lower()} {record.name}: {text}"
        if record.exc_info:
            line += "\n" + printable(self.formatException(record.exc_info), keep_newlines=True)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line (journald, Loki): time, level, logger, message, and the
    record's `event` / `call_id` when the agent attached them (`extra=`)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("event", "call_id", "operator"):
            value = getattr(record, key, None)
            if value is not None:
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        # JSON escapes C0 controls itself; DEL, C1 and bidi controls it leaves raw (UTF-8 stays
        # readable, Cyrillic as it is)
        return json_printable(json.dumps(data, ensure_ascii=False))


def setup(level: int = logging.INFO, fmt: str = "text") -> None:
    """Route the `cti.*` loggers to stderr (idempotent); `fmt` is "text" or "json"."""
    root = logging.getLogger("cti")
    for handler in list(root.handlers):
        if getattr(handler, "_cti", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else SafeFormatter())
    handler._cti = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    # httpx logs whole request URLs (a query may carry a token) at INFO: keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
