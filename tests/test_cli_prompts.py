"""`cti configure` with no options on a terminal walks through the blocks with prompts."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

from cti_cli import config as cfg

CTI = str(Path(sys.executable).parent / "cti")


def _take_terminal() -> None:
    """Make the pty the child's controlling terminal: getpass reads /dev/tty."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A real pseudo-terminal, so `cti` sees a TTY exactly as an admin's shell gives it."""

    def __init__(self, *args: str) -> None:
        self.master, slave = os.openpty()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
        self.proc = subprocess.Popen(
            [CTI, *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
            start_new_session=True, preexec_fn=_take_terminal,
        )  # fmt: skip
        os.close(slave)
        self.seen = b""

    def expect(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        needle = text.encode()
        while needle not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, (
                f"no {text!r} on the terminal; got {self.seen.decode(errors='replace')!r}"
            )
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:
                    break
        self.seen = self.seen[self.seen.index(needle) + len(needle) :]

    def answer(self, prompt: str, reply: str) -> None:
        self.expect(prompt)
        self.expect(":")
        if "password" in prompt:
            # getpass flushes pending input when it turns echo off, just after the prompt
            time.sleep(0.5)
        os.write(self.master, reply.encode() + b"\r")

    def finish(self) -> int:
        code = self.proc.wait(timeout=15)
        os.close(self.master)
        return code


def test_prompts_walk_through_connection_and_rule(tmp_path: Path) -> None:
    conf = tmp_path / "cti.toml"
    rule = tmp_path / "incoming.py"
    rule.write_text("card = 1\n", "utf-8")
    term = Terminal("-c", str(conf), "configure")
    term.answer("AMI host", "pbx.example.org")
    term.answer("AMI port", "")
    term.answer("AMI login", "cti")
    term.answer("AMI password", "Секрет-1")
    assert "Секрет".encode() not in term.seen  # hidden input is not echoed
    term.answer("Use TLS", "n")
    term.answer("Authentication", "sha1")
    term.answer("choose one of: md5, plain", "plain")
    term.answer("Timeout", "")
    term.answer("Rule script", str(rule))
    term.answer("Open the card on", "ring")
    term.expect("saved")
    assert term.finish() == 0
    saved = cfg.load_file(conf)
    assert saved.server.host == "pbx.example.org"
    assert saved.server.port == 5038
    assert saved.server.auth == "plain"
    assert saved.server.password.get_secret_value() == "Секрет-1"
    assert saved.rule.trigger == "ring"


def test_prompts_keep_current_values_and_password(tmp_path: Path) -> None:
    conf = tmp_path / "cti.toml"
    rule = tmp_path / "incoming.py"
    rule.write_text("card = 1\n", "utf-8")
    cfg.save(conf, cfg.Config.model_validate({
        "server": {"host": "old.example.org", "login": "cti", "password": "keep-me"},
        "rule": {"script": str(rule)},
    }))  # fmt: skip
    term = Terminal("-c", str(conf), "configure")
    for prompt in ("AMI host", "AMI port", "AMI login", "AMI password", "Use TLS",
                   "Authentication", "Timeout", "Rule script", "Open the card on"):  # fmt: skip
        term.answer(prompt, "")
    term.expect("saved")
    assert term.finish() == 0
    saved = cfg.load_file(conf)
    assert saved.server.host == "old.example.org"
    assert saved.server.password.get_secret_value() == "keep-me"
    assert saved.rule.script == str(rule)


def test_prompts_can_leave_the_rule_unset(tmp_path: Path) -> None:
    """Enter on a fresh config, or '-' over a rule set earlier: the built-in rule."""
    conf = tmp_path / "cti.toml"
    rule = tmp_path / "incoming.py"
    rule.write_text("card = 1\n", "utf-8")
    cfg.save(conf, cfg.Config.model_validate({
        "server": {"host": "pbx.example.org", "login": "cti", "password": "keep-me"},
        "rule": {"script": str(rule)},
    }))  # fmt: skip
    term = Terminal("-c", str(conf), "configure")
    for prompt in ("AMI host", "AMI port", "AMI login", "AMI password", "Use TLS",
                   "Authentication", "Timeout"):  # fmt: skip
        term.answer(prompt, "")
    term.answer("Rule script ('-' = the built-in rule)", "-")
    term.answer("Open the card on", "")
    term.expect("saved")
    assert term.finish() == 0
    assert cfg.load_file(conf).rule.script is None

    fresh = tmp_path / "fresh.toml"
    term = Terminal("-c", str(fresh), "configure")
    for prompt, reply in (("AMI host", "pbx"), ("AMI port", ""), ("AMI login", "cti"),
                          ("AMI password", "pw"), ("Use TLS", ""), ("Authentication", ""),
                          ("Timeout", ""), ("Rule script (empty = the built-in rule)", ""),
                          ("Open the card on", "")):  # fmt: skip
        term.answer(prompt, reply)
    term.expect("saved")
    assert term.finish() == 0
    assert cfg.load_file(fresh).rule.script is None
