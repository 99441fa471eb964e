"""The cti test lab: Asterisk 22 (Debian sid chroot) + MariaDB CDRs + SIPp phones and callers.

`Lab.start()` gives a private instance on free ports (pytest); `python -m lab up` runs one on
the default ports by hand. See lab/__main__.py and tests/conftest.py. Every instance has its own
mariadbd (datadir, port, socket and passwords in the instance folder, lab.mariadb); the
machine's own MariaDB server is never used.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab import mariadb as db
from lab.asterisk import Asterisk
from lab.errors import LabUnavailable
from lab.hostdeps import HOST_TOOLS, ensure_tools, is_root
from lab.layout import Layout, instances_dir, make_layout, unmount
from lab.ports import free_ports, tcp_port_free, udp_port_free
from lab.procs import alive, cmdline_has, stop_pid, wait_gone
from lab.render import TEMPLATES, render_file
from lab.rootfs import ensure_rootfs, rootfs_path
from lab.sipp import Phone, Sipp
from lab.tls import make_certs

__all__ = ["Lab", "LabInfo", "LabUnavailable", "MariaDB", "PrivateMariaDB", "default_state_dir"]

MariaDB = db.MariaDB
PrivateMariaDB = db.PrivateMariaDB
PHONES = ("101", "102", "103")
DEFAULT_PORTS = {"ami": 5038, "ami_tls": 5039, "sip": 5060, "101": 5071, "102": 5072, "103": 5073}
ODBC_DSN = "cti-lab"
CONFIGS = (
    "asterisk.conf", "modules.conf", "logger.conf", "manager.conf", "pjsip.conf",
    "queues.conf", "extensions.conf", "cdr.conf", "cdr_adaptive_odbc.conf", "res_odbc.conf",
    "odbc.ini", "rtp.conf", "features.conf", "indications.conf",
)  # fmt: skip


@dataclass(frozen=True)
class LabInfo:
    ami_host: str
    ami_port: int
    ami_tls_port: int
    ami_user: str
    ami_secret: str
    ami_limited_user: str
    ami_limited_secret: str
    tls_ca_file: Path
    sip_port: int
    mysql_host: str
    mysql_port: int
    mysql_db: str
    mysql_reader_user: str
    mysql_reader_password: str
    cdr_table: str
    recordings_dir: Path
    dbaccess_file: Path
    # read=call only, write=originate: sees calls, may not read its own permissions
    ami_minimal_user: str = "cti-minimal"
    ami_minimal_secret: str = ""
    # read=all, write without system: sees every event, may list channels, may not set filters
    ami_nosystem_user: str = "cti-nosystem"
    ami_nosystem_secret: str = ""


MARIADB_DIR = "mariadb"  # the instance's own mariadbd lives in <instance>/mariadb
CDR_DATABASE = "asteriskcdrdb"


class Lab:
    """One running lab instance. Build with Lab.start(); always stop() it."""

    def __init__(
        self,
        info: LabInfo,
        layout: Layout,
        asterisk: Asterisk,
        sipp: Sipp,
        database: db.PrivateMariaDB,
        *,
        temp: bool,
        tied: bool,
    ) -> None:
        self.info = info
        self.layout = layout
        self.asterisk = asterisk
        self.sipp = sipp
        self.phones: dict[str, Phone] = {}
        self.database = database  # this instance's own mariadbd
        self._temp = temp
        self._tied = tied
        self._stopped = False

    # ---------------------------------------------------------------- start / stop
    @classmethod
    def start(
        cls,
        *,
        state_dir: Path | None = None,
        fixed_ports: bool = False,
        detached: bool = False,
    ) -> Lab:
        """Build the rootfs if needed and start an instance.

        state_dir None = throwaway instance (removed on stop). fixed_ports uses
        the well-known ports (AMI 5038/5039, SIP 5060, phones 5071-5073) instead of free ones;
        detached lets Asterisk and the phones outlive this Python process (`python -m lab up`).
        """
        if not is_root():
            raise LabUnavailable("the lab needs root (chroot, debootstrap); run as root")
        root = ensure_rootfs()
        ensure_tools(HOST_TOOLS)
        _reap_stale(root)
        temp = state_dir is None
        if state_dir is None:
            state_dir = instances_dir(root) / f"t{secrets.token_hex(4)}"
        layout = make_layout(root, state_dir)
        tied = not detached
        database: db.PrivateMariaDB | None = None
        lab: Lab | None = None
        try:
            ports = _pick_ports(fixed_ports)
            database = db.PrivateMariaDB.start(layout.host(MARIADB_DIR), tied=tied)
            users = db.new_users()
            db.provision(database.server, CDR_DATABASE, users)
            info = _write_instance(layout, ports, database.server, CDR_DATABASE, users)
            asterisk = Asterisk(root, layout.chroot("etc/asterisk.conf"))
            sipp = Sipp(layout.host("sipp"), info.sip_port, tied=tied)
            lab = cls(info, layout, asterisk, sipp, database, temp=temp, tied=tied)
            for ext in PHONES:
                lab.phones[ext] = sipp.start_phone(ext, ports[ext], "answer", 1.0)
            asterisk.start(layout.host("log/console.log"), layout.chroot("etc/odbc.ini"), tied=tied)
            lab._save()
            lab._check_cdr_backend()
        except BaseException:
            if lab is not None:
                lab.stop()
            else:
                if database is not None:
                    database.stop()
                unmount(layout)
                if temp:
                    shutil.rmtree(layout.host_dir, ignore_errors=True)
            raise
        if tied:
            atexit.register(lab.stop)
        return lab

    @classmethod
    def attach(cls, state_dir: Path) -> Lab:
        """Re-open an instance started earlier (e.g. by `python -m lab up`) from its state.json."""
        state = json.loads((state_dir / "state.json").read_text())
        info_raw = dict(state["info"])
        for key in ("tls_ca_file", "recordings_dir", "dbaccess_file"):
            info_raw[key] = Path(info_raw[key])
        info = LabInfo(**info_raw)
        mount = state["mount_point"]
        layout = Layout(
            Path(state["root"]), state["chroot_dir"], Path(state["host_dir"]),
            Path(mount) if mount else None,
        )  # fmt: skip
        asterisk = Asterisk(layout.root, layout.chroot("etc/asterisk.conf"), state["asterisk_pid"])
        database = _database_from(state)
        lab = cls(
            info, layout, asterisk, Sipp(layout.host("sipp"), info.sip_port, tied=False),
            database, temp=state["temp"], tied=False,
        )  # fmt: skip
        lab.phones = {ext: Phone(**p) for ext, p in state["phones"].items()}
        return lab

    def stop(self) -> None:
        """Stop callers, phones, Asterisk and the instance's mariadbd (its folder is removed);
        throwaway instances vanish entirely."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)
        self.sipp.stop_calls()
        for phone in self.phones.values():
            self.sipp.stop_phone(phone)
        self.asterisk.stop()
        self.database.stop()
        if self._temp:
            unmount(self.layout)
            shutil.rmtree(self.layout.host_dir, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                self.layout.state_file.unlink()
            unmount(self.layout)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- use
    def cli(self, command: str) -> str:
        """Run an Asterisk CLI command (`asterisk -rx`) and return its output."""
        return self.asterisk.cli(command)

    def running(self) -> bool:
        return self.asterisk.running()

    def stop_asterisk(self, *, kill: bool = False) -> None:
        """Stop only Asterisk (an outage as the agent sees it); `start_asterisk` brings it back.

        kill=True is a crash (SIGKILL): no Hangup event reaches anyone; the calls just vanish.
        """
        self.sipp.stop_calls()
        if kill and self.asterisk.pid is not None and self.asterisk.running():
            os.kill(self.asterisk.pid, signal.SIGKILL)
            wait_gone(self.asterisk.pid, 10)
        else:
            self.asterisk.stop()

    def start_asterisk(self) -> None:
        self.asterisk.start(
            self.layout.host("log/console.log"), self.layout.chroot("etc/odbc.ini"), tied=self._tied
        )
        self._save()

    def phone(self, ext: str, mode: str = "answer", *, answer_after: float = 1.0) -> None:
        """Restart operator `ext`'s SIPp phone in mode answer | noanswer | busy | decline."""
        if ext not in PHONES:
            raise ValueError(f"phone {ext!r} unknown; the lab has {', '.join(PHONES)}")
        old = self.phones[ext]
        self.sipp.stop_phone(old)
        # SIPp's media/control ports are picked free just before it starts; another process
        # on this machine may take one first ("Address already in use"): try again then
        for attempt in range(4):
            new_phone = self.sipp.start_phone(ext, old.port, mode, answer_after)
            self.phones[ext] = new_phone
            self._save()
            # wait until SIPp has bound its port, or the next INVITE would meet a closed port
            deadline = time.monotonic() + 10
            while udp_port_free(new_phone.port):
                if not alive(new_phone.pid) or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            else:
                return
            log = self.layout.host(f"sipp/phone-{ext}.log").read_text(errors="replace")
            self.sipp.stop_phone(new_phone)
            if attempt == 3 or "already in use" not in log[-800:]:
                raise RuntimeError(f"SIPp phone {ext} did not start:\n{log[-800:]}")
            time.sleep(0.2)

    def reset_phones(self) -> None:
        """Back to the start state (all answer after 1 s); restarts only the changed phones."""
        for ext, phone in self.phones.items():
            if (phone.mode, phone.answer_after) != ("answer", 1.0):
                self.phone(ext)

    def call(
        self,
        dialed: str,
        *,
        caller: str = "+79161234567",
        caller_name: str = "Иван Петров",
        talk: float = 2.0,
        cancel_after: float | None = None,
    ) -> None:
        """Start a SIPp call from the trunk to `dialed`; returns at once (see wait_idle).

        With cancel_after the caller hangs up that many seconds after the first 180 (abandon).
        """
        self.sipp.start_call(dialed, caller, caller_name, talk, cancel_after)

    def operator_call(self, from_ext: str, dialed: str, *, talk: float = 2.0) -> None:
        """Start a SIPp call placed by operator `from_ext`'s desk (context from-internal).

        It comes from 127.0.1.<ext>, which pjsip.conf identifies as that operator's endpoint
        (e.g. `**101` picks up the call ringing on 101). Returns at once (see wait_idle).
        """
        if from_ext not in PHONES:
            raise ValueError(f"phone {from_ext!r} unknown; the lab has {', '.join(PHONES)}")
        name = f"Operator {from_ext}"
        self.sipp.start_call(dialed, from_ext, name, talk, None, local_ip=f"127.0.1.{from_ext}")

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until every started call's SIPp has exited and Asterisk has no channels."""
        deadline = time.monotonic() + timeout
        while True:
            calls = self.sipp.running_calls()
            channels = self.asterisk.active_channels() if not calls else -1
            if not calls and channels == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"lab not idle after {timeout:.0f}s: {len(calls)} SIPp callers running, "
                    f"{channels if channels >= 0 else '?'} active channels"
                )
            time.sleep(0.1)

    def cdr_rows(self, uniqueid: str) -> list[dict[str, object]]:
        """CDR rows of one call (all legs share the caller's uniqueid), as the reader sees them."""
        info = self.info
        conn = db.MariaDB(
            info.mysql_host, info.mysql_port, info.mysql_reader_user, info.mysql_reader_password
        ).connect(info.mysql_db)
        with conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT * FROM `{info.cdr_table}` WHERE uniqueid = %s ORDER BY calldate, sequence",
                (uniqueid,),
            )
            cols = [d[0] for d in cur.description or ()]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    # ---------------------------------------------------------------- internals
    def _check_cdr_backend(self) -> None:
        out = self.cli("odbc show asteriskcdrdb")
        if "Number of active connections: 0" in out or "asteriskcdrdb" not in out:
            raise LabUnavailable(f"Asterisk has no ODBC connection to MariaDB:\n{out}")

    def _save(self) -> None:
        database = self.database
        state: dict[str, Any] = {
            "root": str(self.layout.root),
            "chroot_dir": self.layout.chroot_dir,
            "host_dir": str(self.layout.host_dir),
            "mount_point": str(self.layout.mount_point) if self.layout.mount_point else None,
            "temp": self._temp,
            "owner_pid": os.getpid() if self._tied else None,
            "asterisk_pid": self.asterisk.pid,
            "phones": {ext: asdict(p) for ext, p in self.phones.items()},
            "db": {
                "server": asdict(database.server),
                "pid": database.pid,
                "folder": str(database.folder),
            },
            "info": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.info).items()},
        }
        tmp = self.layout.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False))
        tmp.chmod(0o600)
        tmp.rename(self.layout.state_file)


def _database_from(state: dict[str, Any]) -> db.PrivateMariaDB:
    raw = state["db"]
    return db.PrivateMariaDB(Path(raw["folder"]), raw["pid"], db.MariaDB(**raw["server"]))


def default_state_dir() -> Path:
    """The hand-run lab's instance dir (`python -m lab up`)."""
    return instances_dir(rootfs_path()) / "default"


def _pick_ports(fixed: bool) -> dict[str, int]:
    if fixed:
        busy = [
            f"{name} {port}"
            for name, port in DEFAULT_PORTS.items()
            if not (tcp_port_free(port) if name.startswith("ami") else udp_port_free(port))
        ]
        if busy:
            raise LabUnavailable(
                f"default lab ports busy ({', '.join(busy)}); is a lab already up? "
                "(python -m lab status / down)"
            )
        return dict(DEFAULT_PORTS)
    (ami, ami_tls), udp = free_ports(2, 1 + len(PHONES))
    return {
        "ami": ami,
        "ami_tls": ami_tls,
        "sip": udp[0],
        **dict(zip(PHONES, udp[1:], strict=True)),
    }


def _write_instance(
    layout: Layout,
    ports: dict[str, int],
    server: db.MariaDB,
    mysql_db: str,
    users: db.LabDbUsers,
) -> LabInfo:
    """Render configs, certs and dbaccess.properties into the instance dir."""
    for sub in ("etc", "lib", "spool/monitor", "run", "log", "cache", "sipp"):
        layout.host(sub).mkdir(parents=True, exist_ok=True)
    ca = make_certs(layout.host("tls"))
    info = LabInfo(
        ami_host="127.0.0.1",
        ami_port=ports["ami"],
        ami_tls_port=ports["ami_tls"],
        ami_user="cti",
        ami_secret=secrets.token_urlsafe(16),
        ami_limited_user="cti-limited",
        ami_limited_secret=secrets.token_urlsafe(16),
        ami_minimal_secret=secrets.token_urlsafe(16),
        ami_nosystem_secret=secrets.token_urlsafe(16),
        tls_ca_file=ca,
        sip_port=ports["sip"],
        mysql_host=server.host,
        mysql_port=server.port,
        mysql_db=mysql_db,
        mysql_reader_user=db.READER_USER,
        mysql_reader_password=users.reader_password,
        cdr_table="cdr",
        recordings_dir=layout.host("spool/monitor"),
        dbaccess_file=layout.host("dbaccess.properties"),
    )
    values: dict[str, object] = {
        "instance": layout.host_dir.name,
        "idir": layout.chroot_dir,
        "monitor_dir": layout.chroot("spool/monitor"),
        "phone_101": ports["101"],
        "phone_102": ports["102"],
        "phone_103": ports["103"],
        "odbc_dsn": ODBC_DSN,
        "db_user": db.ASTERISK_USER,
        "db_password": users.asterisk_password,
        "reader_user": db.READER_USER,
        "reader_password": users.reader_password,
        **{k: v for k, v in asdict(info).items() if not isinstance(v, Path)},
    }
    for name in CONFIGS:
        render_file(TEMPLATES / name, layout.host(f"etc/{name}"), values, mode=0o600)
    render_file(TEMPLATES / "dbaccess.properties", info.dbaccess_file, values, mode=0o600)
    return info


def _reap_stale(root: Path) -> None:
    """Throwaway instances whose owning Python died (killed pytest): stop leftovers, delete."""
    base = instances_dir(root)
    if not base.is_dir():
        return
    for state_file in base.glob("*/state.json"):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        owner = state.get("owner_pid")
        if not state.get("temp") or (owner and alive(owner)):
            continue
        conf = f"{state['chroot_dir']}/etc/asterisk.conf"
        pids = [state.get("asterisk_pid")] + [p["pid"] for p in state["phones"].values()]
        for pid in pids:
            if pid and cmdline_has(pid, conf if pid == pids[0] else "phone-"):
                stop_pid(pid)
        with contextlib.suppress(Exception):
            _database_from(state).stop()
        shutil.rmtree(state_file.parent, ignore_errors=True)
