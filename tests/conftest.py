"""Shared test fixtures: where the corpus is, and skips that say why."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"


@pytest.fixture(scope="session")
def corpus() -> Path:
    """../shared/corpus, or skip: the real captures live beside the repo, never in it."""
    if not CORPUS.is_dir():
        pytest.skip(f"real-capture corpus not found at {CORPUS} (../shared is absent)")
    return CORPUS


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark is not installed (Debian package tshark)")
    return path


@pytest.fixture(scope="session")
def root() -> None:
    """Skip unless root: namespaces, veths and captures on them need it."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
