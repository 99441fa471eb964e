"""Session fixtures for tests that need the real lab (lab/): MariaDB alone, or the whole lab.

Without the lab's prerequisites (root, debootstrap, a MariaDB) these fixtures skip the test;
with CTI_REQUIRE_LAB=1 (CI) they fail it instead, so a broken lab cannot pass silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from lab import Lab, LabUnavailable, MariaDB, obtain_mariadb


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CTI_REQUIRE_LAB") == "1":
        pytest.fail(f"lab required (CTI_REQUIRE_LAB=1) but unavailable: {reason}", pytrace=False)
    pytest.skip(f"lab unavailable: {reason}")


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """Admin login (host, port, user, password) to a MariaDB for scratch databases."""
    try:
        server, private = obtain_mariadb()
    except LabUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield server
    finally:
        if private is not None:
            private.stop()


@pytest.fixture(scope="session")
def lab(mariadb: MariaDB) -> Iterator[Lab]:
    """One Asterisk 22 lab for the whole session, on free ports, with its own CDR database.

    Tests share it: set the phone modes you need (lab.phone / lab.reset_phones) and use
    caller numbers of your own to find your call.
    """
    try:
        instance = Lab.start(mariadb=mariadb)
    except LabUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield instance
    finally:
        instance.stop()
