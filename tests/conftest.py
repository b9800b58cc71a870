"""Shared fixtures: every test session gets its own IMORI_HOME, never the user's."""

from __future__ import annotations

import os
import tempfile

import pytest

# Set before any imori module computes a path; torch threads kept small so that the
# suite's processes do not fight over the cores.
os.environ.setdefault("IMORI_HOME", tempfile.mkdtemp(prefix="imori-test-home-"))
os.environ.setdefault("TORCH_HOME", os.path.join(os.environ["IMORI_HOME"], "torch-hub"))


@pytest.fixture
def imori_home(tmp_path, monkeypatch):
    """A fresh, empty IMORI_HOME for tests that look at what was written there."""
    home = tmp_path / "imori-home"
    monkeypatch.setenv("IMORI_HOME", str(home))
    return home
