"""`cti doctor` parts that need no PBX: the config line, mountinfo, eventfilter suggestions,
the directory's bad numbers, the recordings folder, webhooks (plain, refused, HTTPS with a
trusted and an untrusted certificate, Zammad), the agent's health endpoint."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from cti_cli import config as cfg
from cti_cli.ami.filters import NotAsked
from cti_cli.config import Webhook
from cti_cli.doctor.ami import _events, filter_lines, structured_filters, useful_events
from cti_cli.doctor.local import agent_check, directory_check, recordings_checks
from cti_cli.doctor.mounts import mount_of, parse_mountinfo
from cti_cli.doctor.webhooks import check_webhook
from tests.agent_support import SECRET, Receiver, free_port, write_config

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /var/spool/asterisk/monitor rw shared:9 - nfs4 pbx:/var/spool/asterisk/monitor rw
31 22 0:41 / /mnt/rec\\040share rw - cifs //nas/rec rw
32 30 0:42 / /var/spool/asterisk/monitor/2026 rw - tmpfs tmpfs rw
33 22 0:43 / /mnt/over rw - ext4 /dev/sdb1 rw
34 22 0:44 / /mnt/over rw - xfs /dev/sdc1 rw
"""


def doctor(path: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    proc = subprocess.run(
        [sys.executable, "-m", "cti_cli", "--config", str(path), "doctor", *args],
        capture_output=True, text=True, encoding="utf-8", env={**env, "COLUMNS": "200"},
        timeout=120, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


# ---------------------------------------------------------------- config


def test_missing_config_is_one_fail_line(tmp_path: Path) -> None:
    code, out, _ = doctor(tmp_path / "none.toml")
    assert code == 1
    assert out.splitlines() == [
        f"FAIL  config  {tmp_path / 'none.toml'} does not exist → Create it with cti configure, "
        "or give the right one with --config PATH.",
        "0 OK, 0 WARN, 1 FAIL",
    ]


def test_config_that_does_not_parse_stops_there(tmp_path: Path) -> None:
    path = tmp_path / "cti.toml"
    path.write_text('[server]\nport = "50x38"\n', encoding="utf-8")
    code, out, _ = doctor(path, "--json")
    assert code == 1
    checks = json.loads(out)["checks"]
    assert [c["status"] for c in checks] == ["FAIL"]
    assert checks[0]["detail"].startswith("cti.toml: server.port: must be an integer 1–65535")


def test_group_readable_config_warns_and_a_private_one_passes(tmp_path: Path) -> None:
    path = tmp_path / "cti.toml"
    write_config(path, {"server": {"host": "127.0.0.1", "port": free_port(), "login": "cti",
                                   "password": "pw"}})  # fmt: skip
    path.chmod(0o640)
    _, out, _ = doctor(path, "--json", "--sample", "0.2")
    line = json.loads(out)["checks"][0]
    assert line["status"] == "WARN" and "the group may read the AMI password" in line["detail"]
    path.chmod(0o600)
    _, out, _ = doctor(path, "--json", "--sample", "0.2")
    assert json.loads(out)["checks"][0]["status"] == "OK"
    assert "pw" not in out.replace("password", "")


# ---------------------------------------------------------------- mounts


def test_mountinfo_names_the_file_system_a_folder_is_on() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    share = mount_of(Path("/var/spool/asterisk/monitor/2025/11"), mounts)
    assert share is not None and share.network and share.fstype == "nfs4"
    assert share.describe() == ("network share (nfs4 pbx:/var/spool/asterisk/monitor, mounted at "
                                "/var/spool/asterisk/monitor)")  # fmt: skip
    nested = mount_of(Path("/var/spool/asterisk/monitor/2026/01"), mounts)
    assert nested is not None and nested.fstype == "tmpfs" and not nested.network
    spaced = mount_of(Path("/mnt/rec share/x"), mounts)
    assert spaced is not None and spaced.fstype == "cifs" and spaced.source == "//nas/rec"
    assert mount_of(Path("/mnt/recx"), mounts).fstype == "ext4"  # type: ignore[union-attr]
    stacked = mount_of(Path("/mnt/over/a"), mounts)
    assert stacked is not None and stacked.fstype == "xfs", "the last mount on a point wins"
    here = mount_of(Path("/proc"))
    assert here is not None and here.fstype == "proc"


# ---------------------------------------------------------------- eventfilter suggestions


def test_eventfilter_lines_never_exclude_what_the_tracker_reads() -> None:
    useful = useful_events()
    assert {"Newchannel", "DialBegin", "Hangup", "AgentConnect", "BridgeEnter"} <= useful
    noise = Counter({"VarSet": 500, "Newchannel": 300, "Newexten": 200, "RTCPSent": 40,
                     "DeviceStateChange": 20, "Dial": 5, "x y": 3})  # fmt: skip
    assert filter_lines(noise, "22.5.2") == [
        "eventfilter(action(exclude),name(VarSet)) =",
        "eventfilter(action(exclude),name(Newexten)) =",
        "eventfilter(action(exclude),name(RTCPSent)) =",
    ]
    assert all(not line.endswith(("(Dial)) =", "(Newchannel)) =")) for line in
               filter_lines(noise, "22.5.2"))  # fmt: skip
    legacy = filter_lines(Counter({"VarSet": 10, "Newexten": 5, "Agent": 5}), "18.20.0")
    assert legacy == ["eventfilter = !Event: VarSet", "eventfilter = !Event: Newexten"]
    assert [structured_filters(v) for v in ("22.0.0", "21.5.1", "21.4.9", "20.10.0", "20.9.3",
                                            "18.25.0", "16.30.0", "23.1.0", "unknown")] == [
        True, True, False, True, False, True, False, True, False]  # fmt: skip


def test_noise_an_asterisk_cannot_filter_is_not_blamed_on_the_users_rights() -> None:
    # Asterisk 20.9 has no advanced filters: granting write=system would change nothing, so
    # the fix names only the eventfilter lines; a refusal on 22 names write=system first.
    noise = Counter({"VarSet": 800, "Newexten": 150, "Newchannel": 50})
    old = _events(noise, 10, "20.9.3", NotAsked(
        "Asterisk 20.9 has no advanced event filters (20.10 and later have)"))
    assert old.status == "WARN" and "20.9 has no advanced event filters" in old.detail
    assert "write=system" not in old.fix and "manager reload" in old.fix
    assert old.extra == ["eventfilter = !Event: VarSet", "eventfilter = !Event: Newexten"]
    refused = _events(noise, 10, "22.1.0", "Asterisk refused event filters: Permission denied")
    assert refused.status == "WARN" and refused.fix.index("write=system") < refused.fix.index(
        "add these lines")  # fmt: skip
    assert refused.extra[0] == "eventfilter(action(exclude),name(VarSet)) ="


# ---------------------------------------------------------------- directory


def _config(**blocks: Any) -> cfg.Config:
    return cfg.Config.model_validate(blocks)


def test_directory_lists_numbers_that_do_not_normalise(tmp_path: Path) -> None:
    csv = tmp_path / "e.csv"
    csv.write_text("id,name,phone\nE-1,A,+7 916 123-45-67\nE-2,B,\"101; +7 495 111-22-33\"\n"
                   "E-3,C,+7 916 123-45-67\n", encoding="utf-8")  # fmt: skip
    line = directory_check(_config(directory={"source": f"csv:{csv}"}))
    assert line.status == "WARN"
    assert "1 phone number(s) do not normalise: line 3 '101'" in line.detail
    assert "1 number(s) listed twice: line 4: +79161234567 is already employee id" in line.detail
    assert "region RU" in line.fix
    csv.write_text("id,name,phone\nE-1,A,+7 916 123-45-67\n", encoding="utf-8")
    good = directory_check(_config(directory={"source": f"csv:{csv}"}))
    assert (good.status, good.detail) == ("OK", f"csv:{csv} (1 employee)")
    missing = directory_check(_config(directory={"source": f"csv:{tmp_path / 'no.csv'}"}))
    assert missing.status == "FAIL" and "no such file" in missing.detail
    unset = directory_check(_config())
    assert unset.status == "WARN" and "no caller gets an employee card" in unset.detail


# ---------------------------------------------------------------- recordings


def test_newest_recording_and_its_age(tmp_path: Path) -> None:
    folder = tmp_path / "monitor"
    (folder / "2026" / "01" / "02").mkdir(parents=True)
    old = folder / "2026" / "01" / "02" / "in-200-1.wav"
    old.write_bytes(b"RIFF")
    os.utime(old, (time.time() - 30 * 86400,) * 2)
    checks = recordings_checks(_config(cdr={"recordings_dir": str(folder)}))
    assert [c.status for c in checks] == ["OK", "WARN"]
    assert checks[1].detail.startswith("30 days old: 2026/01/02/in-200-1.wav")
    (folder / "2026" / "01" / "03").mkdir()
    (folder / "2026" / "01" / "03" / "in-200-2.WAV").write_bytes(b"RIFF")
    (folder / "notes.txt").write_text("not a recording")
    checks = recordings_checks(_config(cdr={"recordings_dir": str(folder)}))
    assert [c.status for c in checks] == ["OK", "OK"]
    assert checks[1].detail == "0 s old: 2026/01/03/in-200-2.WAV (2 recording(s) looked at)"
    assert "readable, on a local file system" in checks[0].detail


# ---------------------------------------------------------------- webhooks


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver().start()
    yield hook
    hook.stop()


def _hook(url: str, secret: str = SECRET, **more: Any) -> Webhook:
    return Webhook(url=url, secret=SecretStr(secret), **more)


def test_webhook_ping_signed_unsigned_refused_down(receiver: Receiver) -> None:
    good = check_webhook(1, _hook(receiver.url))
    assert good.status == "OK" and "signed ping accepted" in good.detail
    assert receiver.hits[-1].event == "ping" and receiver.hits[-1].signature_ok
    bad = check_webhook(2, _hook(receiver.url, "wrong"))
    assert bad.status == "FAIL" and "HTTP 401" in bad.detail and "secret" in bad.fix
    unsigned = check_webhook(3, _hook(receiver.url, ""))
    assert unsigned.status == "FAIL"  # this receiver demands a signature: 401
    receiver.secret = ""
    down = check_webhook(4, _hook(f"http://127.0.0.1:{free_port()}/x"))
    assert down.status == "FAIL" and "cannot connect" in down.detail
    zammad = check_webhook(5, _hook(receiver.url.replace("/cti/events", "/api/v1/cti/TOK"),
                                    format="zammad"))  # fmt: skip
    assert zammad.status == "OK" and "no ping" in zammad.detail and "TOK" not in zammad.detail


class _Https:
    def __init__(self, tls_dir: Path) -> None:
        from lab.tls import make_certs

        self.ca = make_certs(tls_dir)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_dir / "server.pem", tls_dir / "server.key")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"https://localhost:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_https_webhook_certificate_trusted_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        server = _Https(tmp_path / "tls")
    except Exception as exc:  # no openssl binary
        pytest.skip(f"cannot make certificates: {exc}")
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        untrusted = check_webhook(1, _hook(server.url))
        assert untrusted.status == "FAIL"
        assert "TLS certificate of localhost:" in untrusted.detail
        assert "ping not sent" in untrusted.detail and "trusts" in untrusted.fix
        monkeypatch.setenv("SSL_CERT_FILE", str(server.ca))  # the agent's trust store too
        trusted = check_webhook(1, _hook(server.url))
        assert trusted.status == "OK", trusted.detail
        assert "HTTP 204" in trusted.detail and "certificate valid until" in trusted.detail
    finally:
        server.stop()


# ---------------------------------------------------------------- agent


def test_agent_health_when_nothing_listens() -> None:
    listen = f"127.0.0.1:{free_port()}"
    enabled = agent_check(_config(enabled=True, agent={"listen": listen}))
    assert enabled.status == "FAIL" and f"nothing answers on http://{listen}/healthz" in (
        enabled.detail
    )
    idle = agent_check(_config(agent={"listen": f"0.0.0.0:{listen.split(':')[1]}"}))
    assert idle.status == "WARN" and "http://127.0.0.1:" in idle.detail


# ---------------------------------------------------------------- no tracebacks


def test_a_missing_ami_cafile_is_a_fail_line(tmp_path: Path) -> None:
    path = tmp_path / "cti.toml"
    write_config(path, {"server": {"host": "127.0.0.1", "port": free_port(), "login": "cti",
                                   "password": "pw", "tls": True,
                                   "cafile": str(tmp_path / "gone.pem")}})  # fmt: skip
    code, out, err = doctor(path, "--json", "--sample", "0.2")
    assert code == 1 and "Traceback" not in err
    ami = next(c for c in json.loads(out)["checks"] if c["id"] == "ami.server")
    assert ami["status"] == "FAIL" and "gone.pem" in ami["detail"] and "--cafile" in ami["fix"]


def test_a_check_that_breaks_becomes_its_own_fail_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from cti_cli.doctor import local

    def broken(config: cfg.Config) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(local, "directory_check", broken)
    checks = local.blocking_checks(_config(agent={"listen": f"127.0.0.1:{free_port()}"}))
    assert [(c.id, c.status) for c in checks] == [
        ("directory", "FAIL"),
        ("webhooks", "OK"),
        ("cdr.dbaccess", "WARN"),
        ("agent", "WARN"),
    ]
    assert checks[0].detail == "could not be checked: RuntimeError: boom"


def test_every_pbx_of_servers_is_checked_and_named(tmp_path: Path) -> None:
    path = tmp_path / "cti.toml"
    port = free_port()
    write_config(path, {"servers": [
        {"name": "main", "host": "127.0.0.1", "port": port, "login": "cti", "password": "pw"},
        {"name": "branch-2", "host": "127.0.0.1", "login": "cti"},
    ]})  # fmt: skip
    code, out, err = doctor(path, "--json", "--sample", "0.2")
    assert code == 1 and "Traceback" not in err
    ami = [c for c in json.loads(out)["checks"] if c["id"] == "ami.server"]
    assert [(c["name"], c["status"]) for c in ami] == [
        ("AMI server (main)", "FAIL"), ("AMI server (branch-2)", "FAIL")
    ]  # fmt: skip
    assert ami[0]["detail"].startswith("connection refused")
    assert "[[servers]] main port" in ami[0]["fix"]
    assert ami[1]["detail"] == "[[servers]] branch-2 password not set; AMI not checked"
