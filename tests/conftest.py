"""Shared fixtures: every test session gets its own IMORI_HOME, never the user's."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from core.devices import usable_cores  # reads no path: safe before IMORI_HOME is set

# Set before any imori module computes a path. Always a folder of the suite's own: a user's
# exported IMORI_HOME (their real runs and datasets) is never read or written, and neither
# are their torch hub, Hugging Face or XDG caches.
os.environ["IMORI_HOME"] = tempfile.mkdtemp(prefix="imori-test-home-")
os.environ["TORCH_HOME"] = os.path.join(os.environ["IMORI_HOME"], "torch-hub")
os.environ["HF_HOME"] = os.path.join(os.environ["IMORI_HOME"], "hf-home")
os.environ["XDG_CACHE_HOME"] = os.path.join(os.environ["IMORI_HOME"], "xdg-cache")
os.environ["IMORI_LOCK_DIR"] = os.path.join(os.environ["IMORI_HOME"], "cpu-lock")  # never a real machine's CPU slot
# Under pytest-xdist the cores are shared by its processes: each trains on its share
# (IMORI_TORCH_THREADS, what imori's default_threads reads, and OpenMP's own default, both
# inherited by every process a test starts). Torch on more threads than it has cores runs
# at a fraction of its speed: a test of 9 s alone took 75 s beside another.
_XDIST_PROCESSES = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
if _XDIST_PROCESSES > 1:
    _share = str(max(1, usable_cores() // _XDIST_PROCESSES))
    os.environ.setdefault("IMORI_TORCH_THREADS", _share)
    os.environ.setdefault("OMP_NUM_THREADS", _share)  # torch's default, read at its import (after this file)
# The suite's own services come from IMORI_TEST_*; never a developer's real ones.
os.environ.pop("DATABASE_URL", None)
os.environ.pop("REDIS_URL", None)


# Under pytest-xdist (`make test` runs `-n 2 --dist loadgroup`): each module stays on one
# process (its module-scoped fixtures are set up once), and the modules that start worker
# processes or servers share one group, so that no two of them contend for the two cores
# at once (their heartbeats and deadlines are seconds). The browser's tests (a whole stack
# each, minutes of waiting on pages) are a group of their own, beside them.
BROWSER = ("tests/e2e/",)
PROCESS_HEAVY = (
    "tests/worker/", "tests/cli/test_distributed.py", "tests/cli/test_signals.py",
    "tests/cli/test_cpu_lock.py", "tests/cli/test_endpoint.py", "tests/core/test_distributed.py",
    "tests/core/test_cpu_lock.py", "tests/core/test_faults.py", "tests/core/records/test_concurrency.py",
    "tests/core/test_stream_train.py",
)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Tests of an outside server run only when its URL is given (.ci/run gives both)."""
    for item in items:
        module = item.nodeid.split("::")[0]
        group = "browser" if module.startswith(BROWSER) else "processes" if module.startswith(PROCESS_HEAVY) else module
        item.add_marker(pytest.mark.xdist_group(group))
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

    config = RunConfig(model="mnist_cnn", dataset="digits", iterations=12, epochs=None, batch_size=64)
    return fit(config, tmp_path_factory.mktemp("digits-checkpoint")).last_checkpoint
