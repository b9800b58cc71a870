"""Shared fixtures: every test session gets its own IMORI_HOME, never the user's."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# Set before any imori module computes a path. Always a folder of the suite's own: a user's
# exported IMORI_HOME (their real runs and datasets) is never read or written, and neither
# are their torch hub, Hugging Face or XDG caches.
os.environ["IMORI_HOME"] = tempfile.mkdtemp(prefix="imori-test-home-")
os.environ["TORCH_HOME"] = os.path.join(os.environ["IMORI_HOME"], "torch-hub")
os.environ["HF_HOME"] = os.path.join(os.environ["IMORI_HOME"], "hf-home")
os.environ["XDG_CACHE_HOME"] = os.path.join(os.environ["IMORI_HOME"], "xdg-cache")
os.environ["IMORI_LOCK_DIR"] = os.path.join(os.environ["IMORI_HOME"], "cpu-lock")  # never a real machine's CPU slot
# The suite's own services come from IMORI_TEST_*; never a developer's real ones.
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)


def pytest_collection_modifyitems(config, items):
    """Tests of an outside server run only when its URL is given (.ci/run gives both)."""
    for marker, variable in (("postgres", "IMORI_TEST_DATABASE_URL"), ("redis_server", "IMORI_TEST_REDIS_URL")):
        if os.environ.get(variable):
            continue
        drop = [item for item in items if item.get_closest_marker(marker)]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = [item for item in items if not item.get_closest_marker(marker)]


def pytest_sessionfinish(session, exitstatus):
    # An embedded Redis is a child of whoever served it and ends with it: nothing to stop.
    shutil.rmtree(os.environ["IMORI_HOME"], ignore_errors=True)


@pytest.fixture
def imori_home(tmp_path, monkeypatch):
    """A fresh, empty IMORI_HOME for tests that look at what was written there."""
    home = tmp_path / "imori-home"
    monkeypatch.setenv("IMORI_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory):
    """One tiny trained checkpoint for the tests that only read one: mnist_cnn, 12 steps
    on digits (right about 85 % of the time). Do not write into its folder."""
    from core.config import RunConfig
    from core.train import fit

    config = RunConfig(model="mnist_cnn", dataset="digits", iterations=12, epochs=None, batch_size=64, threads=2)
    return fit(config, tmp_path_factory.mktemp("digits-checkpoint")).last_checkpoint
