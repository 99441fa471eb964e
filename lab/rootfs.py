"""Build and cache the Debian sid chroot that holds Asterisk 22 (Debian 12/13 have no asterisk).

The build goes to a temp dir next to the cache and is renamed into place only after it
completed and the marker file was written, under an exclusive lock, so an interrupted or
concurrent build is never mistaken for a finished one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from lab.errors import LabUnavailable
from lab.hostdeps import HOST_TOOLS, ensure_tools, is_root
from lab.procs import die_with_parent

SUITE = "sid"
PACKAGES = ("asterisk", "asterisk-modules", "unixodbc", "odbc-mariadb")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MARKER = ".cti-lab-complete"
ODBC_DRIVER = "/usr/lib/x86_64-linux-gnu/odbc/libmaodbc.so"

ODBCINST_INI = f"""[MariaDB]
Description = MariaDB Connector/ODBC
Driver = {ODBC_DRIVER}
Threading = 0
"""

# A default DSN no instance uses (kept: it is part of the cached rootfs's recipe); every lab
# instance points ODBCINI at its own odbc.ini, DSN cti-lab, on its own mariadbd's port.
ODBC_INI = """[asteriskcdrdb]
Driver = MariaDB
Server = 127.0.0.1
Port = 3306
Database = asteriskcdrdb
Charset = utf8mb4
"""


def cache_dir() -> Path:
    return Path(os.environ.get("CTI_LAB_CACHE", "/var/cache/cti-lab"))


def mirror() -> str:
    return os.environ.get("CTI_LAB_MIRROR", DEFAULT_MIRROR)


def recipe() -> str:
    """What the rootfs contains; a change of recipe means a new rootfs directory."""
    return f"debootstrap minbase {SUITE} {','.join(PACKAGES)}\n{ODBCINST_INI}{ODBC_INI}"


def rootfs_path() -> Path:
    digest = hashlib.sha256(recipe().encode()).hexdigest()[:8]
    return cache_dir() / f"rootfs-{SUITE}-{digest}"


def is_complete(root: Path) -> bool:
    marker = root / MARKER
    return marker.is_file() and marker.read_text() == recipe()


def ensure_rootfs(log: Path | None = None) -> Path:
    """Return a finished rootfs, building it (~1 min, ~500 MB) on first use."""
    root = rootfs_path()
    if is_complete(root):
        return root
    if not is_root():
        raise LabUnavailable(f"lab rootfs {root} not built and not root (run as root once)")
    ensure_tools(HOST_TOOLS)
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent builder finishes first, then we re-check
        if is_complete(root):
            return root
        _build(root, log or cache_dir() / "build.log", lock.fileno())
    return root


def _build(root: Path, log: Path, lock_fd: int) -> None:
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    for stale in root.parent.glob(f"{root.name}.tmp-*"):
        _discard(stale)  # we hold the lock, so no build is writing there any more
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(tmp),
        mirror(),
    ]
    started = time.monotonic()
    with log.open("w") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        # debootstrap (and the dpkg runs it spawns) inherit the lock: if we are killed, the
        # next builder waits until they are gone too; die_with_parent makes that quick.
        done = subprocess.run(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            pass_fds=(lock_fd,),
            preexec_fn=lambda: die_with_parent(signal.SIGKILL),  # sh ignores TERM mid-command
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        _discard(tmp)
        raise LabUnavailable(f"debootstrap failed (exit {done.returncode}), log {log}:\n{tail}")
    _configure(tmp)
    (tmp / MARKER).write_text(recipe())
    tmp.rename(root)
    with log.open("a") as out:
        out.write(f"built {root} in {time.monotonic() - started:.1f}s\n")


def _configure(root: Path) -> None:
    """Chroot-wide setup: ODBC driver registration and the dirs Asterisk insists on."""
    (root / "etc/odbcinst.ini").write_text(ODBCINST_INI)
    (root / "etc/odbc.ini").write_text(ODBC_INI)
    if not (root / ODBC_DRIVER.lstrip("/")).exists():
        raise LabUnavailable(f"odbc-mariadb driver missing in rootfs: {ODBC_DRIVER}")
    for sub in ("var/lib/asterisk", "var/spool/asterisk", "var/log/asterisk", "run/asterisk"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    # apt caches are not needed at run time; drop them to keep the cache small
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def _discard(tmp: Path) -> None:
    """rmtree, after unmounting the /proc and /sys a killed debootstrap may leave mounted."""
    prefix = str(tmp.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(tmp, ignore_errors=True)
