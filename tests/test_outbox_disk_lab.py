"""The agent's state folder (the outbox) on a disk that refuses writes — real disks: a small
tmpfs mounted for the test (read-only, or filled up), a path through a regular file. The tests
run as root, where chmod stops nothing, so the faults are the ones root meets too.

At start: one line naming the folder and what to do, exit 1. While running (the disk fills
up): the failure is logged once, /healthz is degraded, AMI stays connected, nothing crashes;
what comes in is held in memory and written, then delivered, once the disk takes it again.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cti_cli.notify.outbox import Outbox
from tests.agent_support import Receiver, free_port, write_config
from tests.fault_support import peak_rss_mib, record
from tests.test_agent_lab import finish, lab_config, phones, start_agent

HINT = "make it writable for the user the agent runs as"


class Tmpfs:
    """A tmpfs of `size` mounted at `path` for one test (skipped where mount is not allowed)."""

    def __init__(self, path: Path, size: str, *options: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", "mode=0755", *options]),
             "tmpfs", str(path)], capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Write until the disk says ENOSPC."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                os.write(fd, b"\0" * 512)
        except OSError:
            pass
        finally:
            os.close(fd)

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def umount(self) -> None:
        done = subprocess.run(["umount", str(self.path)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)


@pytest.fixture
def mounts() -> Iterator[list[Tmpfs]]:
    made: list[Tmpfs] = []
    yield made
    for mount in made:
        mount.umount()


def run_agent(tmp_path: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "cti.toml"
    write_config(config, {"enabled": False, "agent": {"listen": f"127.0.0.1:{free_port()}",
                                                      "state_dir": str(folder)}})  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    return subprocess.run(
        [sys.executable, "-m", "cti_cli", "-c", str(config), "agent"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("case", ["parent is a file", "read-only disk", "full disk",
                                  "full disk, outbox of a killed agent"])  # fmt: skip
def test_state_dir_not_writable_at_start_says_which_folder_and_what_to_do_and_exits_1(
    tmp_path: Path, mounts: list[Tmpfs], case: str
) -> None:
    left: Outbox | None = None
    if case == "parent is a file":
        (tmp_path / "srv").write_text("not a folder\n")
        folder, why = tmp_path / "srv" / "cti", f"({tmp_path / 'srv'} is a file, not a folder)"
    elif case == "read-only disk":
        mounts.append(Tmpfs(tmp_path / "ro", "1m", "ro"))
        folder, why = tmp_path / "ro" / "cti", "Read-only file system"
    else:
        disk = Tmpfs(tmp_path / "full", "1m")
        mounts.append(disk)
        folder = tmp_path / "full" / "cti"
        if case != "full disk":  # SIGKILLed: its lock, outbox, -wal and -shm are all there
            folder.mkdir(mode=0o700)
            left = Outbox(folder / "outbox.sqlite3")  # kept open: as a killed agent leaves it
            left.put(["t"], "k", "g", "e", b"{}", now=0, expires_at=1)
            (folder / "agent.lock").write_text("1\n")
            why = "database or disk is full"  # it opens and reads; the write probe says no
        else:
            why = "No space left on device"
        disk.fill()
    done = run_agent(tmp_path, folder)
    if left is not None:
        left.close()
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cti: cannot write the agent's state folder {folder} "
                           "([agent] state_dir): "), last  # fmt: skip
    assert why in last and HINT in last, last


@pytest.mark.lab
def test_disk_full_while_running_holds_pops_in_memory_and_delivers_them_when_it_frees(
    lab: Any, tmp_path: Path, mounts: list[Tmpfs]
) -> None:
    disk = Tmpfs(tmp_path / "disk", "4m")
    mounts.append(disk)
    receiver = Receiver().start()
    phones(lab)
    data = lab_config(lab, tmp_path, receiver.url)
    data["agent"]["state_dir"] = str(disk.path / "state")
    agent = start_agent(tmp_path, data)
    callers = ["+79165550501"]
    try:
        lab.call("101", caller=callers[0], caller_name="Иван Петров", talk=0.5)
        receiver.wait(lambda: receiver.of("call.ended", caller=callers[0]), 30, "first call")
        finish(lab)

        disk.fill()
        filled = time.monotonic()
        # SQLite reuses the space its WAL already has: calls until a write needs a new page
        for n in range(2, 7):
            callers.append(f"+7916555050{n}")
            lab.call("101", caller=callers[-1], caller_name="Мария Сидорова", talk=0.5)
            finish(lab)
            time.sleep(1.5)
            if "holding new call events" in agent.text():
                break
        agent.wait_log("holding new call events", 5)
        callers.append("+79165550509")  # one more while the disk is full
        lab.call("101", caller=callers[-1], caller_name="Пётр", talk=0.5)
        finish(lab)
        agent.wait_log("pop → ivanov (101, answer) for +79165550509", 10)
        time.sleep(2.0)
        code, health = agent.health()
        assert agent.proc is not None and agent.proc.poll() is None, "still running"
        full_for = time.monotonic() - filled

        disk.free()
        freed = time.monotonic()
        for caller in callers:
            receiver.wait(lambda c=caller: receiver.of("call.ended", caller=c), 30, caller)
        recovery = time.monotonic() - freed
        agent.wait_healthy(15)  # once saving has held for a few seconds
        steady = time.monotonic() - freed
        rss = peak_rss_mib(agent.proc.pid)
    finally:
        agent.terminate()
        receiver.stop()
    log = agent.text()
    assert code == 503 and health["status"] == "degraded", health
    assert health["reason"].startswith("outbox not writable (") and "disk is full" in health[
        "reason"], health  # fmt: skip
    assert health["ami"]["connected"] is True, "AMI is not dropped for a full disk"
    failed = [line for line in log.splitlines() if "holding new call events" in line]
    assert len(failed) == 1, failed
    assert "database or disk is full" in failed[0] and str(disk.path / "state") in failed[0]
    assert "Traceback" not in log and "reconnecting" not in log
    assert "held writes saved" in log
    delivered, duplicated, again = 0, 0, 0
    for caller in callers:
        story = [h for h in receiver.accepted if h.json.get("call", h.json).get("caller")
                 == caller]  # fmt: skip
        events = list(dict.fromkeys(h.event for h in story))
        assert events == ["call.ringing", "screen_pop", "call.answered", "call.ended"], events
        delivered += "screen_pop" in events
        keys = [h.headers["x-cti-delivery"] for h in story]
        again += len(keys) - len(set(keys))
        duplicated += sum(h.event == "screen_pop" for h in story) - 1
    bodies: dict[str, set[bytes]] = {}
    for hit in receiver.accepted:
        bodies.setdefault(hit.headers["x-cti-delivery"], set()).add(hit.body)
    assert all(len(b) == 1 for b in bodies.values()), "a key sent again is the same message"
    record(
        calls_while_full=len(callers) - 1, full_for_s=round(full_for, 1),
        recovery_s=round(recovery, 1), healthy_again_s=round(steady, 1),
        pops_delivered=delivered,
        pops_lost=len(callers) - delivered, pops_duplicated=duplicated,
        same_key_redeliveries=again, peak_rss_mib=rss,
    )  # fmt: skip


@pytest.mark.lab
def test_state_dir_removed_while_running_is_written_again_and_survives_a_restart(
    lab: Any, tmp_path: Path
) -> None:
    """`rm -rf` of the state folder while deliveries wait (the desk answers 503): SQLite would
    go on writing the open, deleted file and a restart would find nothing. The agent notices,
    writes the outbox (and its lock) again; after a SIGKILL and a restart the waiting pop is
    delivered, once."""
    import shutil

    refusing = True
    receiver = Receiver(status=lambda hit: 503 if refusing else 200).start()
    phones(lab)
    data = lab_config(lab, tmp_path, receiver.url)
    folder = Path(data["agent"]["state_dir"])
    agent = start_agent(tmp_path, data)
    again = None
    caller = "+79165550510"
    try:
        lab.call("101", caller=caller, caller_name="Иван Петров", talk=0.5)
        agent.wait_log("will retry", 30)
        finish(lab)
        time.sleep(1.0)  # the call's end is in the outbox too
        shutil.rmtree(folder)
        removed = time.monotonic()
        agent.wait_log("written again", 10)
        rewritten = time.monotonic() - removed
        assert (folder / "outbox.sqlite3").exists() and (folder / "agent.lock").exists()
        second = subprocess.run(
            [sys.executable, "-m", "cti_cli", "-c", str(agent.config), "agent"],
            capture_output=True, text=True, timeout=30, check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("CTI_")},
        )  # fmt: skip
        agent.kill()
        refusing = False
        again = type(agent)(agent.config, agent.listen, agent.log).start()
        receiver.wait(lambda: receiver.of("call.ended", caller=caller), 30, "call.ended")
        time.sleep(1.0)
    finally:
        if again is not None:
            again.terminate()
        agent.close()
        receiver.stop()
    log = agent.text()
    assert second.returncode == 1 and "already uses" in second.stderr, second.stderr
    told = [line for line in log.splitlines() if "was removed while the agent runs" in line]
    assert len(told) == 1 and str(folder / "outbox.sqlite3") in told[0], told
    assert "Traceback" not in log
    pops = receiver.of("screen_pop", caller=caller)
    assert len(pops) == 1, "delivered after the restart, once"
    events = [h.event for h in receiver.accepted if h.json.get("call", h.json).get("caller")
              == caller]  # fmt: skip
    assert events == ["call.ringing", "screen_pop", "call.answered", "call.ended"], events
    record(rewritten_after_s=round(rewritten, 1), pops_delivered=len(pops),
           pops_lost=1 - min(1, len(pops)), pops_duplicated=max(0, len(pops) - 1))  # fmt: skip
