"""The dashboard under AppTest: a fresh IMORI_HOME per test module, the embedded Redis for
submitting (no worker: a queued run is asserted queued), and finished runs trained
in-process. The helpers the tests share are in dashkit.py."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import dashkit` (tests run in importlib mode)

from dashkit import reset_clients  # noqa: E402


@pytest.fixture(scope="module")
def home():
    """This module's own IMORI_HOME (short: Redis's socket lives there)."""
    path = Path(tempfile.mkdtemp(prefix="imori-dash-", dir="/tmp"))
    saved = {k: os.environ.get(k) for k in ("IMORI_HOME", "REDIS_URL", "DATABASE_URL")}
    os.environ["IMORI_HOME"] = str(path)
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("DATABASE_URL", None)
    reset_clients()
    yield path
    reset_clients()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def broker(home):
    """The embedded Redis under this module's home, served by the test process (as `imori
    up` serves it), so that pages can submit."""
    from worker.broker import serve

    server = serve()
    yield home
    server.close()
