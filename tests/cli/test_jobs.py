"""``imori jobs``: the jobs workers do besides training, listed, shown and cancelled."""

from __future__ import annotations

import json

import pytest

from cli.jobs import SUBJECT_WIDTH
from cli.main import main

jobs = pytest.importorskip("core.records.jobs")  # the one jobs table (issue 23, point 1)

KEYS = {"id", "kind", "subject", "params", "status", "stage", "progress", "result", "error", "worker",
        "created_at", "finished_at"}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def made(imori_home):
    """One job of each state: queued, running (half done), succeeded, failed."""
    checkpoint = str(imori_home / "runs" / "3" / "checkpoints" / "a-rather-long-folder-name" / "best.pt")
    queued = jobs.create_job("health", "digits", {"features": False})
    running = jobs.create_job("evaluate", checkpoint, {"dataset": "digits", "split": "test"})
    assert jobs.claim_job(running, "cpu-host-1")
    jobs.report_progress(running, "predicting", 0.5)
    done = jobs.create_job("calibrate", checkpoint, {})
    jobs.claim_job(done, "cpu-host-1")
    jobs.finish_job(done, result={"temperature": 1.2345678, "ece_before": 0.08, "ece_after": 0.02,
                                  "bins": list(range(40))})
    failed = jobs.create_job("export", checkpoint, {"format": "onnx"})
    jobs.claim_job(failed, "cpu-host-2")
    jobs.finish_job(failed, error="ONNX Runtime disagreed with PyTorch on 3 of 100 images")
    return {"queued": queued, "running": running, "done": done, "failed": failed, "checkpoint": checkpoint}


def test_jobs_are_listed_newest_first_and_filtered(made, capsys):
    code, out, _ = run(capsys, "jobs")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:4] == ["job", "kind", "status", "done"]
    table, waits = out.split("\n\n")
    rows = [line.split() for line in table.splitlines()[1:]]
    assert [int(r[0]) for r in rows] == [made["failed"], made["done"], made["running"], made["queued"]]
    # The queued job says what it waits for: here no queue runs at all.
    assert waits.strip() == (f"job {made['queued']} is queued: waiting for a worker, and the queue does not answer: "
                             "start `imori up` (or `imori worker`)")
    running = next(r for r in rows if int(r[0]) == made["running"])
    assert running[1:5] == ["evaluate", "running", "50", "%"] and running[-1] == "cpu-host-1"
    # A long subject reads from its start and is cut at the right (the trial's lost its start).
    assert made["checkpoint"] not in out and len(made["checkpoint"]) > SUBJECT_WIDTH
    assert made["checkpoint"][:SUBJECT_WIDTH - 1] + "…" in out
    code, out, _ = run(capsys, "jobs", "show", str(made["queued"]))
    assert "  waiting for a worker, and the queue does not answer" in out
    code, out, _ = run(capsys, "jobs", "--kind", "export")
    assert [line.split()[0] for line in out.splitlines()[1:]] == [str(made["failed"])]
    code, out, _ = run(capsys, "jobs", "--status", "queued", "--json")
    listed = json.loads(out)
    assert [j["id"] for j in listed] == [made["queued"]] and KEYS <= set(listed[0])
    code, out, _ = run(capsys, "jobs", "--status", "interrupted")
    assert code == 0 and out.strip() == "no jobs match"


def test_a_job_is_shown_with_its_result_or_error(made, capsys):
    code, out, _ = run(capsys, "jobs", "show", str(made["done"]))
    assert code == 0 and out.startswith(f"job {made['done']}: calibrate a checkpoint  [succeeded, 100 %]")
    assert made["checkpoint"] in out and "temperature: 1.235" in out and "bins: (40 items: --json shows them)" in out
    code, out, _ = run(capsys, "jobs", "show", str(made["failed"]))
    assert "params: format=onnx" in out and "error: ONNX Runtime disagreed" in out
    code, out, _ = run(capsys, "jobs", "show", str(made["running"]), "--json")
    shown = json.loads(out)
    assert KEYS <= set(shown) and shown["stage"] == "predicting" and shown["progress"] == 0.5
    assert shown["params"] == {"dataset": "digits", "split": "test"} and shown["finished_at"] is None


def test_cancel_says_what_happened(made, capsys):
    code, out, _ = run(capsys, "jobs", "cancel", str(made["queued"]))
    assert code == 0 and out.strip() == f"job {made['queued']}: cancelled (it had not started)"
    assert jobs.get_job(made["queued"]).status == "cancelled" and not jobs.claim_job(made["queued"], "late")
    code, out, _ = run(capsys, "jobs", "cancel", str(made["running"]))
    assert out.strip() == f"job {made['running']}: cancel requested: it stops at its next progress report"
    assert jobs.report_progress(made["running"], "predicting", 0.6)  # the worker reads the flag here
    code, out, _ = run(capsys, "jobs")
    assert "cancelling" in out
    code, out, _ = run(capsys, "jobs", "cancel", str(made["done"]))
    assert out.strip() == f"job {made['done']}: already succeeded, nothing to cancel"


@pytest.mark.parametrize("argv", [["jobs", "show", "99999"], ["jobs", "cancel", "99999"]])
def test_an_unknown_job_is_one_line_and_exit_2(imori_home, capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.strip() == "error: job 99999 does not exist: see `imori jobs`"


def test_no_jobs_yet(imori_home, capsys):
    code, out, _ = run(capsys, "jobs")
    assert code == 0 and out.startswith("no jobs yet")


def test_a_subject_is_shortened_from_its_right_and_home_reads_as_a_tilde():
    from pathlib import Path

    from cli.jobs import _shorten

    assert _shorten("digits", 10) == "digits"
    assert _shorten("3 vs 5 on shapes2, test split", 12) == "3 vs 5 on s…"
    home = str(Path.home())
    assert _shorten(f"{home}/.imori/runs/7/best.pt", 80) == "~/.imori/runs/7/best.pt"
    assert _shorten(f"{home}/.imori/runs/7/checkpoints/step-000120.pt", 20) == "~/.imori/runs/7/che…"
