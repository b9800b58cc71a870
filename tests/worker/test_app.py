"""worker.app: the Celery app's settings from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import ImoriError
from worker import app as worker_app

ROOT = Path(__file__).resolve().parents[2]


def test_the_visibility_timeout_defaults_to_twelve_hours(monkeypatch):
    monkeypatch.delenv("IMORI_VISIBILITY_TIMEOUT_S", raising=False)
    assert worker_app.visibility_timeout_s() == 12 * 3600
    options = worker_app.make_app("redis://127.0.0.1:1/0").conf.broker_transport_options
    assert options["visibility_timeout"] == 12 * 3600
    assert options["unacked_restore_interval"] == 60 and options["unacked_restore_throttle"] == 1


@pytest.mark.parametrize("raw, seconds, sweep", [("3", 3.0, 1.0), (" 90.5 ", 90.5, 22.625), ("86400", 86400.0, 60.0)])
def test_the_visibility_timeout_and_its_sweep_come_from_the_environment(monkeypatch, raw, seconds, sweep):
    monkeypatch.setenv("IMORI_VISIBILITY_TIMEOUT_S", raw)
    options = worker_app.make_app("redis://127.0.0.1:1/0").conf.broker_transport_options
    assert options["visibility_timeout"] == seconds
    assert options["unacked_restore_interval"] == sweep


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "0.5", "nan", "inf", "12h"])
def test_a_nonsense_visibility_timeout_is_a_one_line_error(monkeypatch, raw):
    monkeypatch.setenv("IMORI_VISIBILITY_TIMEOUT_S", raw)
    with pytest.raises(ImoriError) as err:
        worker_app.make_app("redis://127.0.0.1:1/0")
    message = str(err.value)
    assert "IMORI_VISIBILITY_TIMEOUT_S" in message and repr(raw) in message and "\n" not in message


def test_the_unacknowledged_messages_are_kept_under_the_namespace(monkeypatch):
    """kombu's keys are global by default: one installation's short timeout would
    redeliver another's messages on a shared Redis."""
    monkeypatch.setenv("IMORI_NAMESPACE", "lab1-")
    options = worker_app.transport_options()
    assert (options["unacked_key"], options["unacked_index_key"], options["unacked_mutex_key"]) == (
        "lab1-unacked", "lab1-unacked_index", "lab1-unacked_mutex")
    monkeypatch.delenv("IMORI_NAMESPACE")
    assert worker_app.transport_options()["unacked_key"] == "unacked"  # kombu's own: an upgrade keeps its messages


def test_a_worker_with_a_nonsense_visibility_timeout_says_so_and_exits():
    env = {**os.environ, "IMORI_VISIBILITY_TIMEOUT_S": "soon"}
    done = subprocess.run([sys.executable, "-m", "cli", "worker"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: IMORI_VISIBILITY_TIMEOUT_S must be a number of seconds, at least 1 "
                                   "(e.g. 43200 for 12 hours, the default), not 'soon'")
