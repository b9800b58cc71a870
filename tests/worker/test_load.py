"""Load: several runs on two workers while charts are polled; a soak of many tiny runs.
Every run accounted for, every step recorded once, no "database is locked"."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import select

from core.config import RunConfig

pytestmark = [pytest.mark.slow]

TINY = dict(model="tiny_net", dataset="digits", optimizer="adam", lr=2e-3, batch_size=64, device="cpu")

# A separate process reading what the dashboard reads, as fast as it can, until every run
# has ended (at most argv[2] seconds).
POLLER = textwrap.dedent(
    """
    import sys, time
    from core.records import queries
    ids = [int(x) for x in sys.argv[1].split(",")]
    end = time.monotonic() + float(sys.argv[2])
    passes = 0
    while time.monotonic() < end:
        queries.list_runs()
        runs = [queries.get_run(run_id) for run_id in ids]
        for run_id in ids:
            queries.series(run_id, max_points=500)
            queries.eval_series(run_id)
        passes += 1
        if all(run.status in ("succeeded", "failed", "cancelled") for run in runs):
            break
    print(passes)
    """
)


def steps_of(run_id: int) -> list[int]:
    from core.records import get_engine
    from core.records.schema import SqlIterationMetric

    with get_engine().connect() as conn:
        rows = conn.execute(select(SqlIterationMetric.step).where(SqlIterationMetric.run_id == run_id).order_by(SqlIterationMetric.step))
        return list(rows.scalars())


def test_four_runs_on_two_workers_while_the_charts_are_polled(embedded_stack):
    stack = embedded_stack
    from worker.client import submit

    # Two workers of one torch thread each: together they fit the two cores.
    workers = [stack.start_worker(f"load{i}", IMORI_TORCH_THREADS="1") for i in range(2)]
    ids = [submit(RunConfig(**TINY, threads=1, epochs=None, iterations=150, seed=i)) for i in range(4)]
    poller = subprocess.Popen([sys.executable, "-c", POLLER, ",".join(map(str, ids)), "240"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**__import__("os").environ})
    runs = [stack.wait_status(i, ("succeeded", "failed"), timeout=240) for i in ids]
    out, err = poller.communicate(timeout=120)
    assert poller.returncode == 0, err
    assert "database is locked" not in err and int(out) > 10
    assert all(r.status == "succeeded" for r in runs), [r.error for r in runs]
    assert {r.worker.split("@")[0] for r in runs} == {"load0", "load1"}  # both took their share
    for r in runs:
        assert steps_of(r.id) == list(range(1, 151)) and r.attempt == 1
    for proc in workers:
        log = stack.log_of(proc)
        assert "database is locked" not in log and "Traceback" not in log
        stack.stop_worker(proc)


def test_a_soak_of_many_tiny_runs_accounts_for_every_one(embedded_stack):
    stack = embedded_stack
    from core.records import queries
    from worker.client import cancel, submit

    worker = stack.start_worker("soak")
    ids = [submit(RunConfig(**TINY, epochs=None, iterations=3, seed=i)) for i in range(40)]
    cancelled = ids[5::10]  # a few cancelled while queued, as a user would
    for run_id in cancelled:
        cancel(run_id)
    start = time.monotonic()
    for run_id in ids:
        stack.wait_status(run_id, ("succeeded", "failed", "cancelled"), timeout=300)
    runs = {r.id: r for r in queries.list_runs(ids=ids, limit=None)}
    assert len(runs) == 40
    assert [i for i in ids if runs[i].status == "succeeded"] == [i for i in ids if i not in cancelled]
    assert all(runs[i].status == "cancelled" and runs[i].started_at is None for i in cancelled)
    for i in ids:
        expected = [] if i in cancelled else [1, 2, 3]
        assert steps_of(i) == expected
    print(f"soak: 40 runs accounted for in {time.monotonic() - start:.1f} s")
    stack.stop_worker(worker)
