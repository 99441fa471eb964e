"""`cti doctor` against the real lab: Asterisk 22 AMI, MariaDB CDRs, the recordings folder
Asterisk writes, a real agent, a real webhook receiver. A healthy setup is all OK; then one
fault at a time turns exactly its own line into FAIL or WARN, with the right advice."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cti_cli.ami.client import AMIClient
from cti_cli.rules import DEFAULT_RULE
from tests.agent_support import SECRET, AgentProcess, Receiver, free_port, write_config
from tests.cdr_support import scratch_cdr

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]

HEALTHY = {
    "config", "enabled", "ami.server", "ami.login", "ami.versions", "ami.permissions",
    "ami.events", "rule", "directory", "webhook.1", "cdr.dbaccess", "cdr.database",
    "cdr.columns", "cdr.indexes", "recordings.folder", "recordings.newest", "agent",
}  # fmt: skip


@dataclass
class Site:
    home: Path
    data: dict[str, Any]
    receiver: Receiver
    agent: AgentProcess

    def config(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)


def doctor(path: Path, data: dict[str, Any], *args: str, sample: str = "1",
           mode: int = 0o600) -> tuple[int, dict[str, dict[str, Any]], str]:  # fmt: skip
    write_config(path, data)
    path.chmod(mode)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    proc = subprocess.run(
        [sys.executable, "-m", "cti_cli", "--config", str(path), "doctor", "--json",
         "--sample", sample, *args],
        capture_output=True, text=True, encoding="utf-8", env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.stdout, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] == (proc.returncode == 0)
    return proc.returncode, {c["id"]: c for c in report["checks"]}, proc.stderr


def statuses(checks: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {k: c["status"] for k, c in checks.items()}


def only(checks: dict[str, dict[str, Any]], changed: dict[str, str],
         gone: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Every healthy line stays OK except `changed` (id → status); `gone` are left out."""
    expected = {k: "OK" for k in HEALTHY if k not in gone} | changed
    assert statuses(checks) == expected


@pytest.fixture(scope="module")
def site(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("doctor")
    info = lab.info
    (home / "employees.csv").write_text(
        "id,name,phone\nE-17,Иван Петров,+7 916 123-45-67\nE-18,Anna Berg,+31 6 12345678\n",
        encoding="utf-8",
    )
    (home / "rules").mkdir()
    shutil.copy(DEFAULT_RULE, home / "rules" / "incoming.py")
    receiver = Receiver().start()
    data: dict[str, Any] = {
        "enabled": True,
        "server": {"host": info.ami_host, "port": info.ami_port, "login": info.ami_user,
                   "password": info.ami_secret, "timeout": 5.0},
        "teams": [{"name": "Первая линия", "members": [
            {"login": "ivanov", "name": "Иван Иванов", "extensions": ["101", "102"]}]}],
        "rule": {"script": str(home / "rules" / "incoming.py"), "catalog": str(home / "rules")},
        "directory": {"source": f"csv:{home / 'employees.csv'}", "region": "RU"},
        "webhooks": [{"url": receiver.url, "secret": SECRET}],
        "cdr": {"dbaccess": str(info.dbaccess_file), "recordings_dir": str(info.recordings_dir)},
        "agent": {"listen": f"127.0.0.1:{free_port()}", "state_dir": str(home / "state")},
    }  # fmt: skip
    # one real call first: a fresh CDR row and a fresh recording for the newest-recording line
    lab.reset_phones()
    lab.call("101", caller="+79995551313", caller_name="Doctor", talk=1.5)
    lab.wait_idle(60)
    agent_conf = home / "agent.toml"
    write_config(agent_conf, data)
    agent = AgentProcess(agent_conf, data["agent"]["listen"], home / "agent.log").start()
    try:
        agent.wait_healthy(30)
        yield Site(home, data, receiver, agent)
    finally:
        agent.terminate()
        receiver.stop()


def test_healthy_setup_is_all_ok(site: Site, tmp_path: Path, lab: Any) -> None:
    path = tmp_path / "cti.toml"
    code, checks, err = doctor(path, site.config(), sample="5")
    assert code == 0, json.dumps(checks, ensure_ascii=False, indent=1) + err
    only(checks, {})
    assert checks["ami.versions"]["detail"].startswith("Asterisk 22.")
    assert "read=all" in checks["ami.permissions"]["detail"]
    assert "in 5 s" in checks["ami.events"]["detail"]
    assert "Asterisk leaves the noise out of the agent's session" in checks["ami.events"]["detail"]
    assert "it opens card Иван Петров; request form" in checks["rule"]["detail"]
    assert "2 employees" in checks["directory"]["detail"]
    assert "signed ping accepted" in checks["webhook.1"]["detail"]
    assert site.receiver.hits[-1].event == "ping" and site.receiver.hits[-1].signature_ok
    assert "indexed: uniqueid, linkedid, calldate" in checks["cdr.indexes"]["detail"]
    assert "newest call" in checks["cdr.database"]["detail"]
    assert "readable, on a " in checks["recordings.folder"]["detail"]
    assert ".wav" in checks["recordings.newest"]["detail"]
    assert "logged in to AMI" in checks["agent"]["detail"]
    # the human form: one line per check, a summary, exit 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    human = subprocess.run(
        [sys.executable, "-m", "cti_cli", "--config", str(path), "doctor", "--sample", "1"],
        capture_output=True, text=True, encoding="utf-8", env=env, timeout=120, check=False,
    )  # fmt: skip
    assert human.returncode == 0, human.stdout + human.stderr
    lines = human.stdout.splitlines()
    assert lines[-1] == f"{len(HEALTHY)} OK, 0 WARN, 0 FAIL"
    assert all(line.startswith("OK  ") for line in lines[:-1]), human.stdout
    assert site.data["server"]["password"] not in human.stdout + human.stderr
    assert SECRET not in human.stdout + human.stderr
    assert lab.info.mysql_reader_password not in human.stdout + human.stderr


def test_wrong_ami_password(site: Site, tmp_path: Path) -> None:
    data = site.config()
    data["server"]["password"] = "wrong-" + data["server"]["password"]
    code, checks, _ = doctor(tmp_path / "cti.toml", data)
    assert code == 1
    only(checks, {"ami.login": "FAIL"}, gone=("ami.versions", "ami.permissions", "ami.events"))
    line = checks["ami.login"]
    assert line["detail"].startswith("authentication failed: ")
    assert "permissions and events not checked" in line["detail"]
    assert "Correct [server] login or password" in line["fix"]


def test_ami_user_without_call_read_permission(site: Site, tmp_path: Path, lab: Any) -> None:
    data = site.config()
    data["server"].update(login=lab.info.ami_limited_user, password=lab.info.ami_limited_secret)
    code, checks, _ = doctor(tmp_path / "cti.toml", data)
    assert code == 1
    only(checks, {"ami.permissions": "FAIL"})
    line = checks["ami.permissions"]
    assert line["detail"].startswith("read=system: no call events reach cti")
    assert line["fix"] == ("Add call,agent to read= in manager.conf [cti-limited] and run "
                           "'manager reload' in the Asterisk CLI.")  # fmt: skip


def test_ami_user_whose_permissions_cannot_be_read(site: Site, tmp_path: Path, lab: Any) -> None:
    data = site.config()
    data["server"].update(login=lab.info.ami_minimal_user, password=lab.info.ami_minimal_secret)
    code, checks, _ = doctor(tmp_path / "cti.toml", data)
    assert code == 0  # WARN only
    only(checks, {"ami.permissions": "WARN"})
    detail = checks["ami.permissions"]["detail"]
    assert "cannot read AMI user 'cti-minimal''s read= classes" in detail
    assert "guessed from the AMI version" in checks["ami.versions"]["detail"]


def test_ami_port_closed(site: Site, tmp_path: Path) -> None:
    data = site.config()
    data["server"]["port"] = free_port()
    code, checks, _ = doctor(tmp_path / "cti.toml", data)
    assert code == 1
    only(checks, {"ami.server": "FAIL"},
         gone=("ami.login", "ami.versions", "ami.permissions", "ami.events"))
    assert checks["ami.server"]["detail"].startswith("connection refused: ")
    assert checks["ami.server"]["fix"].startswith("Start Asterisk, or correct [server] port")


def test_rule_with_a_syntax_error(site: Site, tmp_path: Path) -> None:
    rule = tmp_path / "broken.py"
    rule.write_text("def on_call(call, cti):\n    cti.open_card(\n", encoding="utf-8")
    data = site.config()
    data["rule"]["script"] = str(rule)
    code, checks, _ = doctor(tmp_path / "cti.toml", data)
    assert code == 1
    only(checks, {"rule": "FAIL"})
    assert checks["rule"]["detail"].startswith(f"{rule}:2: ")
    assert "cti rule test CAPTURE --rule FILE" in checks["rule"]["fix"]


def test_rule_slower_than_its_timeout(site: Site, tmp_path: Path) -> None:
    rule = tmp_path / "slow.py"
    rule.write_text("import time\n\ndef on_call(call, cti):\n    while True:\n"
                    "        time.sleep(0.01)\n", encoding="utf-8")  # fmt: skip
    data = site.config()
    data["rule"].update(script=str(rule), timeout=0.5)
    code, checks, _ = doctor(tmp_path / "cti.toml", data)
    assert code == 1
    only(checks, {"rule": "FAIL"})
    assert "on_call did not finish within 0.5 s (rule.timeout)" in checks["rule"]["detail"]
    assert "raise [rule] timeout" in checks["rule"]["fix"]


def test_webhook_url_refusing_connections(site: Site, tmp_path: Path) -> None:
    data = site.config()
    data["webhooks"][0]["url"] = f"http://127.0.0.1:{free_port()}/cti/events"
    code, checks, _ = doctor(tmp_path / "cti.toml", data)
    assert code == 1
    only(checks, {"webhook.1": "FAIL"})
    assert "cannot connect" in checks["webhook.1"]["detail"]
    assert checks["webhook.1"]["fix"].startswith("Start the receiver or correct the URL")


def test_webhook_with_the_wrong_secret(site: Site, tmp_path: Path) -> None:
    data = site.config()
    data["webhooks"][0]["secret"] = "not-" + SECRET
    code, checks, _ = doctor(tmp_path / "cti.toml", data)
    assert code == 1
    only(checks, {"webhook.1": "FAIL"})
    assert "HTTP 401" in checks["webhook.1"]["detail"]
    assert "secret" in checks["webhook.1"]["fix"]


def test_database_user_without_select(site: Site, tmp_path: Path, mariadb: Any) -> None:
    with scratch_cdr(mariadb, tmp_path) as cdr:
        with mariadb.connect() as conn, conn.cursor() as cur:
            cur.execute(f"REVOKE SELECT ON `{cdr.database}`.* FROM '{cdr.user}'@'127.0.0.1'")
            cur.execute(f"GRANT INSERT ON `{cdr.database}`.* TO '{cdr.user}'@'127.0.0.1'")
        data = site.config()
        data["cdr"]["dbaccess"] = str(cdr.dbaccess)
        code, checks, _ = doctor(tmp_path / "doctor.toml", data)
    assert code == 1
    only(checks, {"cdr.database": "FAIL"}, gone=("cdr.columns", "cdr.indexes"))
    line = checks["cdr.database"]
    assert f"user '{cdr.user}' may not read {cdr.database}.cdr" in line["detail"]
    assert line["fix"].startswith(f"As a database admin: GRANT SELECT ON `{cdr.database}`.* TO")


def test_uniqueid_index_dropped(site: Site, tmp_path: Path, mariadb: Any) -> None:
    with scratch_cdr(mariadb, tmp_path) as cdr:
        cdr.admin(f"ALTER TABLE `{cdr.table}` DROP INDEX `uniqueid`")
        data = site.config()
        data["cdr"]["dbaccess"] = str(cdr.dbaccess)
        code, checks, _ = doctor(tmp_path / "doctor.toml", data)
    assert code == 0  # a slow lookup is a WARN, not a failure
    only(checks, {"cdr.indexes": "WARN"})
    line = checks["cdr.indexes"]
    assert line["detail"] == (f"{cdr.database}.cdr: no index on uniqueid, so every lookup reads "
                              "the whole table")  # fmt: skip
    assert line["fix"] == (f"As a database admin run: ALTER TABLE `{cdr.database}`.`cdr` "
                           "ADD INDEX `uniqueid` (`uniqueid`);")  # fmt: skip
    assert "no calls yet" in checks["cdr.database"]["detail"]


def test_recordings_folder_missing(site: Site, tmp_path: Path) -> None:
    data = site.config()
    data["cdr"]["recordings_dir"] = str(tmp_path / "monitor")
    code, checks, _ = doctor(tmp_path / "cti.toml", data)
    assert code == 1
    only(checks, {"recordings.folder": "FAIL"}, gone=("recordings.newest",))
    assert checks["recordings.folder"]["detail"] == f"{tmp_path / 'monitor'} does not exist"
    assert checks["recordings.folder"]["fix"].startswith("Mount the recordings share there")


def test_empty_recordings_folder_asks_whether_the_share_is_mounted(
    site: Site, tmp_path: Path
) -> None:
    (tmp_path / "monitor").mkdir()
    data = site.config()
    data["cdr"]["recordings_dir"] = str(tmp_path / "monitor")
    code, checks, _ = doctor(tmp_path / "cti.toml", data)
    assert code == 0
    only(checks, {"recordings.newest": "WARN"})
    assert "is the share mounted?" in checks["recordings.newest"]["detail"]


def test_directory_numbers_that_do_not_normalise(site: Site, tmp_path: Path) -> None:
    csv = tmp_path / "employees.csv"
    csv.write_text("id;name;phone\nE-17;Иван Петров;+7 916 123-45-67, 4432\n"
                   "E-2;Склад;нет\n", encoding="utf-8")  # fmt: skip
    data = site.config()
    data["directory"]["source"] = f"csv:{csv}"
    code, checks, _ = doctor(tmp_path / "cti.toml", data)
    assert code == 0
    only(checks, {"directory": "WARN"})
    assert "2 phone number(s) do not normalise: line 2 '4432', line 3 'нет'" in (
        checks["directory"]["detail"]
    )


def test_agent_not_running(site: Site, tmp_path: Path) -> None:
    data = site.config()
    data["agent"]["listen"] = f"127.0.0.1:{free_port()}"
    code, checks, _ = doctor(tmp_path / "cti.toml", data)
    assert code == 1
    only(checks, {"agent": "FAIL"})
    assert checks["agent"]["fix"].startswith("Start the agent (systemctl start cti-agent")


def test_config_readable_by_others_and_disabled(site: Site, tmp_path: Path) -> None:
    data = site.config()
    data["enabled"] = False
    code, checks, _ = doctor(tmp_path / "cti.toml", data, mode=0o644)
    assert code == 1
    only(checks, {"config": "FAIL", "enabled": "WARN"})
    assert checks["config"]["fix"] == f"Run chmod 600 {tmp_path / 'cti.toml'}."
    assert checks["enabled"]["fix"] == "Run cti enable once the lines below are OK."


async def _events_seen(lab: Any, login: str, secret: str, seconds: float) -> set[str]:
    """Event names one session of `login` sees while a call rings, talks and hangs up."""
    info = lab.info
    client = AMIClient()
    await client.connect(info.ami_host, info.ami_port, timeout=10)
    await client.login(login, secret)
    seen: set[str] = set()

    async def follow() -> None:
        async for message in client.events():
            seen.add(message.get("Event") or "?")

    task = asyncio.create_task(follow())
    lab.call("101", caller="+79995551314", caller_name="Noise", talk=1.0)
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await client.close()
    return seen


def doctor_during_a_call(
    lab: Any, path: Path, data: dict[str, Any], caller: str
) -> dict[str, dict[str, Any]]:
    """`cti doctor --json --sample 6` while a call to 101 runs (so its sample has events)."""
    lab.reset_phones()
    lab.wait_idle(60)
    write_config(path, data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cti_cli", "--config", str(path), "doctor", "--json",
         "--sample", "6"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    time.sleep(2.5)  # doctor is logged in and sampling by now
    lab.call("101", caller=caller, caller_name="Noise", talk=1.0)
    out, err = proc.communicate(timeout=120)
    lab.wait_idle(60)
    assert proc.returncode == 0, err
    return {c["id"]: c for c in json.loads(out)["checks"]}


def test_noisy_event_stream_suggests_eventfilter_lines_that_work(
    site: Site, tmp_path: Path, lab: Any
) -> None:
    data = site.config()  # a user that may not set AMI event filters: the noise reaches cti
    data["server"].update(login=lab.info.ami_nosystem_user, password=lab.info.ami_nosystem_secret)
    checks = doctor_during_a_call(lab, tmp_path / "cti.toml", data, "+79995551315")
    only(checks, {"ami.events": "WARN"})
    line = checks["ami.events"]
    assert "% noise: VarSet" in line["detail"]
    assert line["detail"].endswith("; Asterisk refused event filters: Permission denied")
    assert "write=system" in line["fix"] and "manager.conf" in line["fix"]
    lines = line["extra"]
    assert lines and all(x.startswith("eventfilter(action(exclude),name(") for x in lines)
    assert "eventfilter(action(exclude),name(VarSet)) =" in lines
    # pasted into manager.conf as they are, the lines remove exactly that noise
    excluded = {x.split("name(")[1].split(")")[0] for x in lines}
    manager_conf = lab.layout.host("etc/manager.conf")
    original = manager_conf.read_text("utf-8")
    section = ["[cti-filtered]", "secret = filtered-Секрет-1", "deny = 0.0.0.0/0.0.0.0",
               "permit = 127.0.0.1/255.255.255.255", "read = all", "write = system", *lines]
    manager_conf.write_text(original + "\n" + "\n".join(section) + "\n", "utf-8")
    try:
        lab.cli("manager reload")
        seen = asyncio.run(_events_seen(lab, "cti-filtered", "filtered-Секрет-1", 5.0))
        lab.wait_idle(60)
    finally:
        manager_conf.write_text(original, "utf-8")
        lab.cli("manager reload")
    assert "Newchannel" in seen and "Hangup" in seen, seen  # the call itself still arrives
    assert "VarSet" in excluded and not excluded & seen, excluded & seen


def test_noise_that_asterisk_leaves_out_of_the_agents_session_is_no_warning(
    site: Site, tmp_path: Path, lab: Any
) -> None:
    """The site's AMI user has write=system: the agent's own session gets only the events it
    reads, so the noise doctor samples on its unfiltered session asks for no manager.conf
    lines."""
    checks = doctor_during_a_call(lab, tmp_path / "cti.toml", site.config(), "+79995551316")
    only(checks, {})
    detail = checks["ami.events"]["detail"]
    assert "% noise: VarSet" in detail, detail
    assert detail.endswith("; Asterisk leaves the noise out of the agent's session (AMI event "
                           "filters)")  # fmt: skip
