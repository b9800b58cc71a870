"""A foreground `imori train` stopped by a signal: Ctrl-C (SIGINT) or SIGTERM (a closed
session, `kill`, a job scheduler) stops it after the iteration in progress, with a
checkpoint, and the run is recorded `cancelled`: never left `running` forever."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_imori_train_with_a_checkpoint_and_a_cancelled_run(tmp_path, sig):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "IMORI_HOME": str(tmp_path / "home"),
           "IMORI_LOCK_DIR": str(tmp_path / "lock")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "train", "--model", "mnist_cnn", "--dataset", "digits", "--iterations", "100000",
         "--threads", "1", "--json", "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # Wait until it trains: its run records steps.
    deadline = time.monotonic() + 120
    db = tmp_path / "home" / "imori.db"
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if db.exists() and _steps(db) >= 5:
            break
        time.sleep(0.3)
    else:
        pytest.fail("the run never started training")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err  # not succeeded (0 means it finished)
    assert "Traceback" not in err
    summary = json.loads(out)
    assert summary["status"] == "cancelled" and 5 <= summary["step"] < 100000
    assert summary["last_checkpoint"] and Path(summary["last_checkpoint"]).is_file()
    import sqlite3

    with sqlite3.connect(db) as conn:
        status, step = conn.execute("SELECT status, step FROM runs").fetchone()
    assert (status, step) == ("cancelled", summary["step"])


def _steps(db: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute("SELECT coalesce(max(step), 0) FROM iteration_metrics").fetchone()[0]
    except sqlite3.Error:
        return 0
