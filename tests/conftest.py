"""Session fixtures for tests that need the real lab (lab/): MariaDB alone, or the whole lab.

Without the lab's prerequisites (root, debootstrap, the mariadb-server package installed) these
fixtures skip the test; with CTI_REQUIRE_LAB=1 (CI) they fail it instead, so a broken lab cannot
pass silently. MariaDB is always a private mariadbd: no server needs to run on the machine.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

# `from tests.agent_support import …` means this folder, even when a dependency installs a
# top-level `tests` package (cacofonisk, in the bench extra, does): a regular package in
# site-packages would otherwise win over this namespace folder
if getattr(sys.modules.get("tests"), "__path__", None) != [str(Path(__file__).parent)]:
    _tests = types.ModuleType("tests")
    _tests.__path__ = [str(Path(__file__).parent)]
    sys.modules["tests"] = _tests
from needs import unavailable

from lab import Lab, LabUnavailable, MariaDB, PrivateMariaDB


def _unavailable(reason: str) -> NoReturn:
    unavailable(f"lab unavailable: {reason}")


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """Admin login to a private mariadbd of this session (a temp datadir, its own port and
    socket) for scratch databases; the machine's own MariaDB server is never used."""
    try:
        server = PrivateMariaDB.start(tied=True)
    except LabUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield server.server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """One Asterisk 22 lab for the whole session, on free ports, with its own mariadbd.

    Tests share it: set the phone modes you need (lab.phone / lab.reset_phones) and use
    caller numbers of your own to find your call.
    """
    try:
        instance = Lab.start()
    except LabUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """A test CA, and a server certificate it signed for localhost and 127.0.0.1 (openssl)."""
    if shutil.which("openssl") is None:
        unavailable("openssl not installed (apt-get install openssl)")
    d = tmp_path_factory.mktemp("tls")
    ca_key, ca, key, csr, cert = (d / n for n in ("ca.key", "ca.pem", "s.key", "s.csr", "s.pem"))
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
        "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key),
        "-out", str(csr))  # fmt: skip
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    yield ca, cert, key
