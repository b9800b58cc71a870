"""core.run: one queued run claimed and trained, as a worker does it."""

from __future__ import annotations

import time

from core.config import RunConfig

TINY = dict(model="tiny_net", dataset="digits", batch_size=32, epochs=None, iterations=3, device="cpu", threads=1)


def test_a_claimed_run_beats_while_its_data_and_model_load(imori_home):
    """The watchdog must not take a run over while it is still loading (a busy machine, a
    big photo folder): the heartbeat starts at the claim, not when training starts."""
    from core.records import queries, store
    from core.run import execute_run

    run_id = store.create_run(RunConfig(**TINY))
    seen = []

    def slow_setup(run):  # called after the claim, before the loop starts
        claimed = queries.get_run(run_id).heartbeat_at
        time.sleep(1.0)
        seen.append((claimed, queries.get_run(run_id).heartbeat_at))
        return ()

    outcome = execute_run(run_id, "w-test", heartbeat_s=0.2, listeners=slow_setup)
    assert outcome.status == "succeeded", outcome.error
    claimed, later = seen[0]
    assert claimed is not None and later > claimed


def test_a_continued_run_whose_periodic_checkpoints_are_gone_resumes_from_best_or_says_it_starts_over(imori_home):
    """``imori continue`` after the user deleted ckpt-s*.pt: best.pt holds the whole
    training state, so the run resumes from it and its log says which; with no checkpoint
    left at all, the log says the run starts over."""
    from pathlib import Path

    from core.records import checkpoints as checkpoint_records
    from core.records import queries, store
    from core.run import execute_run

    run_id = store.create_run(RunConfig(**TINY))
    assert execute_run(run_id, "w-test", heartbeat_s=0.2).status == "succeeded"
    rows = checkpoint_records.checkpoints(run_id)
    assert any(r.is_best for r in rows) and any(not r.is_best for r in rows)
    for row in rows:
        if not row.is_best:
            Path(row.path).unlink()
    store.requeue_finished(run_id, RunConfig(**{**TINY, "iterations": 5}).to_dict())
    outcome = execute_run(run_id, "w-test", heartbeat_s=0.2)
    assert outcome.status == "succeeded", outcome.error
    best = checkpoint_records.best_checkpoint(run_id).path
    lines = [line.message for line in queries.run_logs(run_id, limit=None)]
    assert any(f"resuming from {best} (step 3), the newest full checkpoint left" in m and "is gone" in m for m in lines)
    assert any("resumed from" in m and "at step 3" in m for m in lines)  # not from step 0
    assert outcome.result.step == 5

    for row in checkpoint_records.checkpoints(run_id):
        Path(row.path).unlink(missing_ok=True)
    store.requeue_finished(run_id, RunConfig(**{**TINY, "iterations": 6}).to_dict())
    assert execute_run(run_id, "w-test", heartbeat_s=0.2).status == "succeeded"
    lines = [line.message for line in queries.run_logs(run_id, limit=None)]
    assert any("no other checkpoint of this run is left: training starts over from step 0" in m for m in lines)
