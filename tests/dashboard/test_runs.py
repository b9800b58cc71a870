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
    assert row.loc[done, "best val acc"].endswith(" %") and row.loc[done, "step"] == "10 / 10"
    assert row.loc[waiting, "best val acc"] == "—"  # no figure yet: a dash, never "None"
    assert not (table.astype(str) == "None").any().any()
    assert row.loc[waiting, "status"] == "queued"
    assert row.loc[waiting, "note"].startswith("waiting for a worker")  # no worker runs in this test
    assert row.loc[gpu, "note"] == "waiting for a GPU worker"
    assert any("refreshing every 2 s" in t for t in texts(at.caption))  # live while runs wait


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


# -- many runs (issue 13.11) ---------------------------------------------------------------------


def select_rows(at, run_ids):
    """Tick these runs' rows in the table (what a click in its first column does)."""
    table = at.dataframe[0].value
    rows = [int(i) for i in table.index[table["run"].isin(run_ids)]]
    at.session_state[at.session_state["runs_table_key"]] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    at.run()
    ok(at)
    return at


def test_runs_are_searched_filtered_and_paged(home):
    from core.records import store

    for earlier in queries.list_runs(limit=None):  # this module's earlier tests share the home
        if earlier.status == "running":
            store.set_status(earlier.id, "cancelled")
        store.delete_run(earlier.id)
    ids = [store.create_run({**TINY, "model": "lenet5" if i % 3 == 0 else "mnist_cnn"}, name=f"sweep {i}")
           for i in range(57)]
    newest = sorted(ids, reverse=True)
    store.tag_runs(ids[:5], add=["paper"])
    store.set_note(ids[10], "the one with the odd learning rate")
    at = app(RUNS)
    ok(at)
    assert at.dataframe[0].value["run"].tolist() == newest[:50]
    assert any("runs 1-50 of 57 · page 1 of 2" in t for t in texts(at.caption))
    assert at.metric[0].value == "57"  # queued: counted over every run, not the page
    first_key = at.session_state["runs_table_key"]
    at.button(key="runs_next").click().run()
    ok(at)
    assert at.dataframe[0].value["run"].tolist() == newest[50:]
    assert at.session_state["runs_table_key"] != first_key  # ticks never carry over to other runs
    assert at.button(key="runs_next").disabled
    # A search goes back to the first page and finds a run by its note.
    at.text_input(key="runs_search").set_value("odd learning").run()
    ok(at)
    assert at.dataframe[0].value["run"].tolist() == [ids[10]]
    assert at.session_state["runs_page"] == 1
    at.text_input(key="runs_search").set_value("").run()
    at.multiselect(key="runs_tags").set_value(["paper"]).run()
    assert sorted(at.dataframe[0].value["run"]) == sorted(ids[:5])
    assert at.metric[0].value == "5"  # the counters follow the filters
    assert set(at.dataframe[0].value["tags"]) == {"paper"}
    at.multiselect(key="runs_tags").set_value([]).run()
    at.selectbox(key="runs_model").set_value("lenet5").run()
    assert at.dataframe[0].value["run"].tolist() == [i for i in newest if ids.index(i) % 3 == 0]
    at.text_input(key="runs_search").set_value("no such run anywhere").run()
    ok(at)
    assert "No run matches the search and filters." in texts(at.info)
    # The run picker below finds any run, however old.
    at.text_input(key="runs_search").set_value("").run()
    at.selectbox(key="runs_model").set_value("any").run()
    at.text_input(key="runs_pick_search").set_value("sweep 1").run()
    options = at.selectbox(key="runs_pick").options
    assert f"#{ids[1]} sweep 1" in options and f"#{ids[2]} sweep 2" not in options, options
    assert at.selectbox(key="runs_pick").value == ids[19]  # a search picks its newest match ("sweep 19")
    at.text_input(key="runs_pick_search").set_value("#%d" % ids[4]).run()
    assert at.selectbox(key="runs_pick").value == ids[4]
    at.text_input(key="runs_pick_search").set_value("nothing matches this").run()
    ok(at)
    assert "No run matches." in texts(at.caption) and not [b for b in at.button if b.key == "runs_delete"]


def test_several_runs_are_tagged_and_deleted_at_once(broker):
    from core.records import store

    a, b, keep = train(), train(), train()
    running = submit(name="busy")
    store.claim_run(running, "somewhere")
    at = select_rows(app(RUNS), [a, b, running])
    assert any(t == "**3 selected**" for t in texts(at.markdown))
    at.text_input(key="runs_bulk_tags").set_value("baseline, paper").run()
    at.button(key="runs_bulk_tag_add").click().run()
    ok(at)
    assert [queries.get_run(i).tags for i in (a, b, running, keep)] == [("baseline", "paper")] * 3 + [()]
    assert any("Tagged 3 runs: baseline, paper" in t for t in texts(at.success))
    assert not any(t.endswith(" selected**") for t in texts(at.markdown))  # done: the ticks are cleared
    at = select_rows(at, [a, b, running])
    assert at.button(key="runs_bulk_delete").label == "Delete 2"  # a running run is left alone
    at.button(key="runs_bulk_delete").click().run()
    assert any("cannot be undone" in t for t in texts(at.warning))
    at.button(key="runs_bulk_delete_yes").click().run()
    ok(at)
    for gone in (a, b):
        with pytest.raises(RunNotFound):
            queries.get_run(gone)
    assert queries.get_run(keep) and queries.get_run(running).status == "running"
    at = select_rows(at, [running])
    assert at.button(key="runs_bulk_compare").disabled  # one run: nothing to compare with
    at.button(key="runs_bulk_cancel").click().run()
    ok(at)
    assert queries.get_run(running).cancel_requested


def test_live_parts_tick_only_while_something_is_active_and_redraw_the_page_on_a_change(monkeypatch):
    """dashboard.live.fragment: the one helper for every page's live part."""
    import streamlit as st

    from dashboard import live

    made = []

    def fake_fragment(run_every=None):
        made.append(run_every)
        return lambda body: body

    reruns = []
    monkeypatch.setattr(st, "fragment", fake_fragment)
    monkeypatch.setattr(st, "rerun", lambda: reruns.append(True))
    state = {"status": "running"}
    part = live.fragment(lambda: state["status"])(lambda: "drawn")
    assert made == [live.REFRESH] and part() == "drawn" and reruns == []
    state["status"] = "succeeded"
    part()
    assert reruns == [True]  # finished: the whole page once, which then stops the timer
    live.fragment(lambda: ("succeeded", "failed"))(lambda: None)
    live.fragment(lambda: {"queued": 0, "succeeded": 3})(lambda: None)
    live.fragment(lambda: {"queued": 2})(lambda: None)
    assert made == [live.REFRESH, None, None, live.REFRESH]


def test_a_worker_of_jobs_alone_does_not_count_as_one_that_trains():
    from types import SimpleNamespace

    from dashboard.live import queue_notes
    from worker.app import cpu_queue, jobs_queue
    from worker.presence import WorkerInfo

    jobs_only = WorkerInfo(name="j", host="h", pid=1, device="cpu", device_name="CPU", queues=[jobs_queue()], threads=1)
    queued = [SimpleNamespace(id=4)]
    assert queue_notes(queued, {4: "auto"}, [jobs_only], None)[4].startswith("waiting for a worker")
    trainer = WorkerInfo(name="t", host="h", pid=2, device="cpu", device_name="CPU", queues=[cpu_queue()], threads=2)
    assert queue_notes(queued, {4: "auto"}, [jobs_only, trainer], None)[4] == "#1 in the queue"


def test_the_sidebar_tells_the_training_worker_from_the_jobs_worker(monkeypatch):
    """`imori up` starts a training worker and a jobs worker on one machine: the trial's
    sidebar read "x86_64 CPU — idle" twice. Each line says which lane it serves."""
    from streamlit.testing.v1 import AppTest

    from dashboard import live
    from worker.app import cpu_queue, jobs_queue
    from worker.presence import WorkerInfo

    both = [WorkerInfo(name="t", host="h", pid=1, device="cpu", device_name="x86_64 CPU", queues=[cpu_queue()],
                       threads=2),
            WorkerInfo(name="j", host="h", pid=2, device="cpu", device_name="x86_64 CPU", queues=[jobs_queue()],
                       threads=1, job_id=12),
            WorkerInfo(name="a", host="h", pid=3, device="cpu", device_name="x86_64 CPU",
                       queues=[cpu_queue(), jobs_queue()], threads=2, run_id=7)]
    monkeypatch.setattr(live, "workers", lambda: (both, None))

    def sidebar():
        from dashboard import live

        live.sidebar_status()

    at = AppTest.from_function(sidebar).run()
    lines = [c.value for c in at.sidebar.caption]
    assert "`cpu` x86_64 CPU · training — idle" in lines, lines
    assert "`cpu` x86_64 CPU · jobs — job 12" in lines, lines
    assert "`cpu` x86_64 CPU · training and jobs — training run 7" in lines, lines
