"""Shared fixtures: the MIT-BIH data directory and free endpoints."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def mitdb_dir() -> Path | None:
    """The MIT-BIH directory: $ECG_DATA_DIR if set, else ../shared/mitdb beside the repo."""
    env = os.environ.get("ECG_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "mitdb")
    for c in candidates:
        if (c / "100.hea").exists():
            return c
    return None


@pytest.fixture(scope="session")
def mitdb() -> Path:
    """Path of the MIT-BIH records; the test is skipped when they are absent."""
    d = mitdb_dir()
    if d is None:
        pytest.skip("MIT-BIH records not found (set ECG_DATA_DIR or put them in ../shared/mitdb)")
    return d


@pytest.fixture
def ipc_endpoint(tmp_path) -> str:
    """A fresh ipc:// endpoint in a temporary directory."""
    return f"ipc://{tmp_path}/ecg-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the real user cache (and so never download) from a test."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
