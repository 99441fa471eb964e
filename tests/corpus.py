"""Where the external AMI corpus lives (`../shared/corpus/cacofonisk`, beside the checkout).

Tests that need it skip when it is absent, except under CTI_REQUIRE_LAB=1 (CI), where a
missing corpus must fail the run rather than quietly drop 150 tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "cacofonisk"
FILES = sorted(CORPUS.glob("*/*.json"))
REQUIRED = os.environ.get("CTI_REQUIRE_LAB") == "1"

needs_corpus = pytest.mark.skipif(
    not FILES and not REQUIRED, reason=f"corpus not found at {CORPUS}"
)
