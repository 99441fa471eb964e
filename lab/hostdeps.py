"""Make sure the host has the tools the lab shells out to (installs them with apt-get as root)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from lab.errors import LabUnavailable

# tool on PATH -> Debian package that provides it
HOST_TOOLS = {
    "debootstrap": "debootstrap",
    "sipp": "sip-tester",
    "openssl": "openssl",
    "chroot": "coreutils",
}
MARIADB_TOOLS = {"mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server"}


def is_root() -> bool:
    return os.geteuid() == 0


def which(tool: str) -> str | None:
    """shutil.which that also looks in sbin dirs, which non-login shells often lack."""
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    return shutil.which(tool, path=path)


def ensure_tools(tools: dict[str, str]) -> dict[str, str]:
    """Return {tool: absolute path}; apt-get install the missing ones when we are root."""
    missing = {t: p for t, p in tools.items() if which(t) is None}
    if missing:
        if not is_root():
            raise LabUnavailable(
                f"missing {', '.join(sorted(missing))} and not root to install them "
                f"(apt-get install {' '.join(sorted(set(missing.values())))})"
            )
        if which("apt-get") is None:
            raise LabUnavailable(f"missing {', '.join(sorted(missing))} and no apt-get here")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = [
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            *sorted(set(missing.values())),
        ]
        with no_service_starts():
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-5:])
            raise LabUnavailable(f"apt-get install failed:\n{tail}")
    found = {t: which(t) for t in tools}
    still = sorted(t for t, p in found.items() if p is None)
    if still:
        raise LabUnavailable(f"still missing after install: {', '.join(still)}")
    return {t: p for t, p in found.items() if p is not None}


POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


@contextlib.contextmanager
def no_service_starts() -> Iterator[None]:
    """While installing: packages may not start services (installing mariadb-server must not
    start the machine's own MariaDB). A policy-rc.d the machine has is left as it is."""
    if POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text("#!/bin/sh\n# cti lab: no service starts while installing\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            POLICY_RC_D.unlink()
