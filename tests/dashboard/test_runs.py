"""Runs: the table with status, progress and queue notes; cancel, clone, continue and
delete (after a confirm, with its checkpoints)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dashkit import TINY, app, ok, texts, train

from core.config import RunConfig
from core.records import RunNotFound, queries

RUNS = "app_pages/runs.py"


def submit(**overrides) -> int:
    from worker.client import submit as queue

    return queue(RunConfig.from_dict({**TINY, **overrides}))


def pick(at, run_id: int):
    at.selectbox(key="runs_pick").set_value(run_id).run()
    ok(at)
    return at


def test_the_table_lists_every_run_with_status_and_queue_place(broker):
    done = train()
    waiting = submit(name="waits")
    gpu = submit(name="wants a gpu", device="cuda")
    at = app(RUNS)
    ok(at)
    table = at.dataframe[0].value
    assert set(table["run"]) >= {done, waiting, gpu}
    row = table.set_index("run")
    assert row.loc[done, "status"] == "succeeded" and row.loc[done, "progress"] == pytest.approx(1.0)
    assert row.loc[done, "best val acc"] > 0 and row.loc[done, "step"] == "10 / 10"
    assert row.loc[waiting, "status"] == "queued"
    assert row.loc[waiting, "note"].startswith("waiting for a worker")  # no worker runs in this test
    assert row.loc[gpu, "note"] == "waiting for a GPU worker"
    assert any("Refreshing every" in t for t in texts(at.caption))  # live while runs wait


def test_cancel_a_queued_run(broker):
    run_id = submit()
    at = pick(app(RUNS), run_id)
    at.button(key="runs_cancel").click().run()
    ok(at)
    assert queries.get_run(run_id).status == "cancelled"


def test_clone_queues_a_copy(broker):
    run_id = train(lr=0.002)
    at = pick(app(RUNS), run_id)
    at.button(key="runs_clone").click().run()
    ok(at)
    clone = queries.list_runs(limit=1)[0]
    assert clone.id != run_id and clone.status == "queued"
    assert queries.get_run(clone.id).config["lr"] == 0.002
    assert f"cloned as run {clone.id}" in " ".join(texts(at.success))


def test_continue_queues_a_finished_run_for_more(broker):
    run_id = train()
    at = pick(app(RUNS), run_id)
    at.number_input(key="runs_continue_total").set_value(25)
    at.button(key="runs_continue").click().run()
    ok(at)
    run = queries.get_run(run_id)
    assert run.status == "queued" and run.config["iterations"] == 25  # resumes from its checkpoint


def test_delete_asks_first_then_removes_the_run_and_its_checkpoints(broker):
    run_id = train()
    folder = Path(queries.get_run(run_id).run_dir)
    assert any(folder.rglob("*.pt"))
    at = pick(app(RUNS), run_id)
    at.button(key="runs_delete").click().run()
    ok(at)
    assert any("cannot be undone" in t for t in texts(at.warning))
    assert queries.get_run(run_id)  # nothing deleted yet
    at.button(key="runs_delete_no").click().run()
    assert queries.get_run(run_id) and not any("cannot be undone" in t for t in texts(at.warning))
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_yes").click().run()
    ok(at)
    with pytest.raises(RunNotFound):
        queries.get_run(run_id)
    assert not folder.exists()


def test_a_running_run_cannot_be_deleted_before_it_is_cancelled(broker):
    from core.records import store

    run_id = submit()
    store.claim_run(run_id, "somewhere")
    at = pick(app(RUNS), run_id)
    assert at.button(key="runs_delete").disabled
    assert not at.button(key="runs_cancel").disabled
    at.button(key="runs_cancel").click().run()
    run = queries.get_run(run_id)
    assert run.status == "running" and run.cancel_requested  # stops at its next iteration
