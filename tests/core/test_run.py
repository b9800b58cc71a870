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
