"""Shared fixtures: paths of the repository and helpers to build notebooks for tests."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # tests/wrong_answers/, tests/submissions.py

ASSIGNMENTS = sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir())


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
