"""The rule catalog (`cti rule list|show|new|use|examples`), `cti.skip`, and every shipped example
run on a recorded call through `cti rule test` — the path the agent's pops take."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cti_cli import config as cfg
from cti_cli.agent.pops import Operator
from cti_cli.agent.rule import RuleRunner
from cti_cli.rules.catalog import default_catalog, example_path, examples
from tests.agent_support import write_config

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "cti_cli" / "demo" / "recordings"
TRANSCRIPTS = ROOT / "tests" / "transcripts"
EXAMPLE_NAMES = {"default", "unknown_form_only", "vip_form", "route_by_did", "skip_internal",
                 "http_lookup"}  # fmt: skip
CSV = (
    "id;name;phone;vip\n"
    "E-1;Иван Петров;+7 999 000-00-01;\n"  # queue_ringall_answered's caller
    "E-5;Ольга Смирнова;8 (999) 000-00-05;да\n"  # ringgroup_answered's caller
)


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    clean.pop("EDITOR", None)
    clean.pop("VISUAL", None)
    return {**clean, "COLUMNS": "200", **extra}


def cti(conf: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cti_cli", "--config", str(conf), *args],
        capture_output=True, text=True, encoding="utf-8", env=env(**extra), timeout=60,
        check=False,
    )  # fmt: skip


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    (tmp_path / "employees.csv").write_text(CSV, encoding="utf-8")
    path = tmp_path / "cti.toml"
    write_config(path, {
        "teams": [
            {"name": "Первая линия", "members": [
                {"login": "ivanov", "name": "Иван Иванов", "extensions": ["101"]},
                {"login": "petrova", "name": "Анна Петрова", "extensions": ["102"]}]},
            {"name": "Second line", "members": [
                {"login": "jsmith", "name": "John Smith", "extensions": ["103"]}]},
        ],
        "rule": {"catalog": str(tmp_path / "rules")},
        "directory": {"source": f"csv:{tmp_path / 'employees.csv'}", "region": "RU"},
    })  # fmt: skip
    return path


def set_rule(conf: Path, **values: Any) -> None:
    config = cfg.load_file(conf)
    for key, value in values.items():
        setattr(config.rule, key, value)
    cfg.save(conf, config)


def pops(conf: Path, capture: Path, rule: Path | None = None) -> tuple[list[dict[str, Any]], str]:
    args = ["rule", "test", str(capture), "--json"] + (["--rule", str(rule)] if rule else [])
    result = cti(conf, *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def example(name: str) -> Path:
    return example_path(name)


# ---------------------------------------------------------------- the examples


def test_six_examples_ship_each_documented_at_the_top() -> None:
    found = {e.name: e for e in examples()}
    assert set(found) == EXAMPLE_NAMES
    for entry in found.values():
        assert entry.problem is None, entry.problem
        assert len(entry.summary) > 20, f"{entry.name}: first docstring line describes it"
        assert "Opens:" in entry.path.read_text("utf-8"), f"{entry.name}: says what it opens"


def test_default_example_pops_exactly_like_the_built_in_rule(conf: Path) -> None:
    capture = RECORDINGS / "queue_ringall_answered.ami"
    built_in, _ = pops(conf, capture)
    shipped, _ = pops(conf, capture, example("default"))
    assert shipped == built_in
    assert [p["operator"]["login"] for p in shipped] == ["petrova"]
    card, form = shipped[0]["open"]
    assert card["employee"]["id"] == "E-1"
    assert form["fields"] == {"client_id": "E-1", "client_name": "Иван Петров",
                              "phone": "+79990000001"}  # fmt: skip


def test_unknown_form_only_gives_known_callers_a_card_and_unknown_ones_a_form(conf: Path) -> None:
    known, _ = pops(conf, RECORDINGS / "queue_ringall_answered.ami", example("unknown_form_only"))
    assert [item["type"] for item in known[0]["open"]] == ["employee_card"]
    unknown, _ = pops(conf, RECORDINGS / "direct_answered.ami", example("unknown_form_only"))
    assert unknown[0]["open"] == [{"type": "request_form", "fields": {
        "phone": "+79990000006", "caller_name": "Lab Caller", "source": "phone, unknown caller"}}]


def test_vip_form_by_number_and_by_directory_column(conf: Path) -> None:
    by_number, _ = pops(conf, RECORDINGS / "queue_ringall_answered.ami", example("vip_form"))
    fields = by_number[0]["open"][-1]["fields"]
    assert fields["form"] == "vip" and fields["priority"] == "high"
    by_column, _ = pops(conf, RECORDINGS / "ringgroup_answered.ami", example("vip_form"))
    fields = by_column[0]["open"][-1]["fields"]
    assert (fields["form"], fields["client_id"]) == ("vip", "E-5")
    plain, _ = pops(conf, RECORDINGS / "direct_answered.ami", example("vip_form"))
    assert plain[0]["open"] == [{"type": "request_form", "fields": {
        "form": "standard", "priority": "normal", "phone": "+79990000006",
        "caller_name": "Lab Caller"}}]


def test_route_by_did_pops_only_the_lines_team_and_skips_the_others(conf: Path) -> None:
    set_rule(conf, trigger="ring")
    # ring group 300 belongs to "Second line": 102 (Первая линия) rings too, but gets no pop
    result = cti(conf, "rule", "test", str(RECORDINGS / "ringgroup_answered.ami"),
                 "--rule", str(example("route_by_did")))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "petrova (102): no pop, the rule skipped it (line 300 belongs to team Second line, " \
           "not Первая линия)" in result.stdout
    assert "jsmith (103) ← +79990000005" in result.stdout
    assert "1 pop(s) would be sent, 1 skipped by the rule; nothing was sent" in result.stdout
    sent, stderr = pops(conf, RECORDINGS / "ringgroup_answered.ami", example("route_by_did"))
    assert [p["operator"]["login"] for p in sent] == ["jsmith"]
    assert sent[0]["open"][-1]["fields"]["team"] == "Second line"
    assert "petrova (102): no pop" in stderr
    # queue 200 belongs to "Первая линия": both its members pop
    queue, _ = pops(conf, RECORDINGS / "queue_ringall_answered.ami", example("route_by_did"))
    assert [p["operator"]["login"] for p in queue] == ["ivanov", "petrova"]
    assert queue[0]["open"][-1]["fields"]["line"] == "200"


def test_skip_internal_sends_nothing_for_an_operator_calling_an_operator(conf: Path) -> None:
    capture = TRANSCRIPTS / "ast22_internal_call.ami"  # 101 dials 102, recorded from the lab
    sent, stderr = pops(conf, capture, example("skip_internal"))
    assert sent == []
    assert "petrova (102): no pop, the rule skipped it (internal call from 101)" in stderr
    built_in, _ = pops(conf, capture)  # the built-in rule would pop a form for "101"
    assert built_in[0]["open"][0]["fields"]["phone"] == "101"
    outside, _ = pops(conf, RECORDINGS / "direct_answered.ami", example("skip_internal"))
    assert outside[0]["open"][0]["fields"]["phone"] == "+79990000006"


class _Desk:
    """The service desk's API: open requests per phone; remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []
        desk = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                desk.asked.append((self.path, self.headers.get("Authorization", "")))
                body = json.dumps([{"id": "REQ-17", "title": "Принтер"}, {"id": "REQ-9"}])
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _adapted_http_lookup(tmp_path: Path, api: str) -> Path:
    token = tmp_path / "sd-token"
    token.write_text("tok-123\n", encoding="utf-8")
    text = example("http_lookup").read_text("utf-8")
    old_api = 'API = "https://sd.example.org/api/v1/requests?state=open&phone={phone}"'
    old_token = 'TOKEN_FILE: str | None = "/etc/cti/sd-token"'
    assert old_api in text and old_token in text
    text = text.replace(old_api, f'API = "{api}/requests?phone={{phone}}"')
    text = text.replace(old_token, f'TOKEN_FILE: str | None = "{token}"')
    rule = tmp_path / "lookup.py"
    rule.write_text(text, encoding="utf-8")
    return rule


def test_http_lookup_puts_the_callers_open_requests_on_the_form(
    conf: Path, tmp_path: Path
) -> None:
    desk = _Desk()
    try:
        rule = _adapted_http_lookup(tmp_path, desk.url)
        sent, _ = pops(conf, RECORDINGS / "queue_ringall_answered.ami", rule)
    finally:
        desk.stop()
    fields = sent[0]["open"][-1]["fields"]
    assert fields["open_requests"] == 2 and fields["last_request"] == "REQ-17"
    assert fields["client_id"] == "E-1"
    assert desk.asked == [("/requests?phone=%2B79990000001", "Bearer tok-123")]


def test_http_lookup_with_the_desk_down_still_pops_and_says_why(
    conf: Path, tmp_path: Path
) -> None:
    desk = _Desk()
    desk.stop()  # nothing listens there any more
    rule = _adapted_http_lookup(tmp_path, desk.url)
    started = time.monotonic()
    sent, stderr = pops(conf, RECORDINGS / "direct_answered.ami", rule)
    assert time.monotonic() - started < 20
    assert sent[0]["open"] == [{"type": "request_form", "fields": {
        "phone": "+79990000006", "caller_name": "Lab Caller"}}]
    assert "service desk API: ConnectError" in stderr


# ---------------------------------------------------------------- cti.skip


def test_skip_wins_over_what_was_opened_and_an_error_wins_over_skip(tmp_path: Path) -> None:
    operator = Operator("ivanov", "Иван Иванов", "Первая линия", "101")
    call = {"call_id": "1.1", "caller": "101", "caller_e164": None, "trigger": "answer"}

    def run(body: str) -> Any:
        path = tmp_path / "r.py"
        path.write_text(body, encoding="utf-8")
        runner = RuleRunner(path, 2.0, None)
        return asyncio.run(runner.run(call, operator))

    skipped = run("def on_call(call, cti):\n    cti.open_request_form(a=1)\n"
                  "    cti.skip('  internal\\n call ')\n")  # fmt: skip
    assert skipped.skipped and skipped.opened == [] and skipped.error is None
    assert skipped.skip_reason == "internal call"
    assert run("def on_call(call, cti):\n    cti.skip()\n").skip_reason == "skipped by the rule"
    broken = run("def on_call(call, cti):\n    cti.skip('x')\n    1 / 0\n")
    assert not broken.skipped and broken.error and "ZeroDivisionError" in broken.error
    assert broken.opened[0]["type"] == "request_form"  # the plain form, as for any failure
    plain = run("def on_call(call, cti):\n    cti.open_request_form(a=1)\n")
    assert not plain.skipped and plain.skip_reason is None


# ---------------------------------------------------------------- the catalog commands


def test_catalog_folder_defaults_to_the_users_or_etc_cti(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert default_catalog(Path("/etc/cti/cti.toml")) == Path("/etc/cti/rules")
    assert default_catalog(Path("/etc/cti/site/cti.toml")) == Path("/etc/cti/rules")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_catalog(Path("/srv/cti.toml")) == tmp_path / ".config" / "cti" / "rules"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_catalog(Path("/etc/ctix/cti.toml")) == tmp_path / "xdg" / "cti" / "rules"
    path = tmp_path / "cti.toml"
    write_config(path, {})
    listed = cti(path, "rule", "list", "--json", HOME=str(tmp_path), XDG_CONFIG_HOME="")
    assert json.loads(listed.stdout)["catalog"] == str(tmp_path / ".config" / "cti" / "rules")


def test_new_list_use_and_back_to_the_built_in(conf: Path, tmp_path: Path) -> None:
    empty = cti(conf, "rule", "list")
    assert empty.returncode == 0 and "no rules yet" in empty.stdout
    assert "in use: the built-in rule" in empty.stdout
    made = cti(conf, "rule", "new", "vip", "--from", "vip_form")
    assert made.returncode == 0, made.stderr
    rule = tmp_path / "rules" / "vip.py"
    assert rule.read_text("utf-8") == example("vip_form").read_text("utf-8")
    assert rule.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "rules").stat().st_mode & 0o777 == 0o750
    template = cti(conf, "rule", "new", "mine.py")
    assert template.returncode == 0, template.stderr
    mine = (tmp_path / "rules" / "mine.py").read_text("utf-8")
    assert mine.startswith('"""mine: one line saying what this rule does')
    again = cti(conf, "rule", "new", "vip")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert cti(conf, "rule", "new", "../evil").returncode == 2
    assert cti(conf, "rule", "new", "x", "--from", "nope").returncode == 2
    assert not (tmp_path / "rules" / "x.py").exists()
    (tmp_path / "rules" / "broken.py").write_text("def on_call(call, cti)\n", encoding="utf-8")

    listed = cti(conf, "rule", "list")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0] == f"catalog {tmp_path / 'rules'}"
    assert any(line.startswith("  broken  BROKEN: ") and "broken.py:1:" in line for line in lines)
    assert "  vip     VIP numbers go to a different form" in listed.stdout

    before = conf.read_bytes()
    refused = cti(conf, "rule", "use", "broken")
    assert refused.returncode == 1 and "broken.py:1:" in refused.stderr
    assert "[rule] script is unchanged" in refused.stderr
    assert conf.read_bytes() == before
    (tmp_path / "rules" / "slow.py").write_text(
        "import time\ndef on_call(call, cti):\n    while True:\n        time.sleep(0.01)\n",
        encoding="utf-8")  # fmt: skip
    set_rule(conf, timeout=0.3)
    before = conf.read_bytes()
    slow = cti(conf, "rule", "use", "slow")
    assert slow.returncode == 1 and "did not finish within 0.3 s" in slow.stderr
    assert conf.read_bytes() == before

    used = cti(conf, "rule", "use", "vip")
    assert used.returncode == 0, used.stderr
    assert "compiles; on a sample call (+79161234567 → 200, operator ivanov (101)) it opens " \
           "request form (form, priority, phone, caller_name)" in used.stdout
    saved = cfg.load_file(conf)
    assert saved.rule.script == str(rule) and saved.rule.timeout == 0.3
    assert [t.name for t in saved.teams] == ["Первая линия", "Second line"]
    marked = json.loads(cti(conf, "rule", "list", "--json").stdout)
    assert [r["name"] for r in marked["rules"] if r["in_use"]] == ["vip"]
    assert "* vip " in cti(conf, "rule", "list").stdout

    assert cti(conf, "rule", "use", "vip_form").returncode == 2  # an example: copy it first
    assert "cti rule new vip_form --from vip_form" in cti(conf, "rule", "use", "vip_form").stderr
    back = cti(conf, "rule", "use", "built-in")
    assert back.returncode == 0, back.stderr
    assert cfg.load_file(conf).rule.script is None


def test_use_runs_the_sample_call_against_the_configured_directory(
    conf: Path, tmp_path: Path
) -> None:
    csv = tmp_path / "employees.csv"
    csv.write_text(CSV + "E-77;Иван Петров;+7 916 123-45-67;\n", encoding="utf-8")
    assert cti(conf, "rule", "new", "mine").returncode == 0
    used = cti(conf, "rule", "use", "mine")
    assert used.returncode == 0, used.stderr
    assert "it opens card Иван Петров; request form (client_id, client_name, phone)" in used.stdout


def test_examples_list_and_show(conf: Path) -> None:
    listed = cti(conf, "rule", "examples")
    assert listed.returncode == 0
    names = {line.split()[0] for line in listed.stdout.splitlines()[:-1]}
    assert names == EXAMPLE_NAMES
    shown = cti(conf, "rule", "show", "skip_internal")
    assert shown.returncode == 0
    assert shown.stdout == example("skip_internal").read_text("utf-8")  # plain, not a terminal
    missing = cti(conf, "rule", "show", "nope")
    assert missing.returncode == 2 and "no rule 'nope'" in missing.stderr


def _on_a_terminal(conf: Path, *args: str, **extra: str) -> tuple[int, str]:
    """Run cti with stdin and stdout on a pseudo-terminal; returns (exit code, output)."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cti_cli", "--config", str(conf), *args],
        stdin=child, stdout=child, stderr=child, env=env(TERM="xterm-256color", **extra),
        close_fds=True,
    )  # fmt: skip
    os.close(child)
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=10)
    os.close(main)
    return code, output.decode("utf-8", "replace")


def test_show_highlights_on_a_terminal_and_show_without_name_stays_plain(conf: Path) -> None:
    code, out = _on_a_terminal(conf, "rule", "show", "vip_form")
    assert code == 0
    assert "\x1b[" in out and "VIP_NUMBERS" in out
    code, out = _on_a_terminal(conf, "rule", "show")
    assert code == 0
    assert "\x1b[" not in out and "def on_call(call: Any, cti: Any) -> None:" in out


def test_new_opens_the_editor_only_on_a_terminal(conf: Path, tmp_path: Path) -> None:
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\necho \"$1\" >> \"$(dirname \"$0\")/edited\"\n", "utf-8")
    editor.chmod(0o755)
    piped = cti(conf, "rule", "new", "quiet", EDITOR=str(editor))
    assert piped.returncode == 0 and not (tmp_path / "edited").exists()
    code, out = _on_a_terminal(conf, "rule", "new", "loud", EDITOR=str(editor))
    assert code == 0, out
    assert (tmp_path / "edited").read_text().strip() == str(tmp_path / "rules" / "loud.py")
