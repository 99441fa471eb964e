"""Skip a test whose prerequisite this machine lacks, or fail it under CTI_REQUIRE_LAB=1 (CI),
so that a missing tool or lab cannot let the run pass silently."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRED = os.environ.get("CTI_REQUIRE_LAB") == "1"


def unavailable(reason: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(f"required (CTI_REQUIRE_LAB=1) but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)
