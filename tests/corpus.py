"""Where the AMI corpus lives: `tests/data/cacofonisk`, vendored (MIT, VoIPGRID/cacofonisk).

51 real AMI recordings; see its README.md and LICENSE. It is part of the repo, so a fresh clone
runs every corpus test; the skip below only guards a broken checkout, and under
CTI_REQUIRE_LAB=1 (CI) a missing corpus fails the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parent / "data" / "cacofonisk"
FILES = sorted(CORPUS.glob("*/*.json"))
REQUIRED = os.environ.get("CTI_REQUIRE_LAB") == "1"

needs_corpus = pytest.mark.skipif(
    not FILES and not REQUIRED, reason=f"corpus not found at {CORPUS}"
)
