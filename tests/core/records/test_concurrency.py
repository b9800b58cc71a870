"""Two processes write two runs while a third reads: no "database is locked", no lost row.

The processes are fresh interpreters (like multiprocessing's spawn, but started as
scripts, since test modules imported with --import-mode=importlib cannot be pickled by
reference). The writers flush every 10 ms, 50 times the recorder's default rate, so the
write lock changes hands hundreds of times while the reader charts both runs.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.records import queries

ROOT = Path(__file__).resolve().parents[3]
SECONDS = 2.5

WRITER = r"""
import json, logging, os, sys, time
from core.recorder import RunEnd, RunStart, StepMetrics
from core.records import DbRecorder, store
from core.records.engine import get_engine

failures = []

class Catch(logging.Handler):
    def emit(self, record):
        failures.append(record.getMessage())

logging.getLogger("core.records").addHandler(Catch())
url, seconds = sys.argv[1], float(sys.argv[2])
engine = get_engine(url)
run_id = store.create_run({"model": "mnist_cnn", "dataset": "digits"}, engine=engine)
attempt = store.claim_run(run_id, f"writer-{os.getpid()}", engine=engine)
recorder = DbRecorder(run_id, attempt, engine, flush_interval=0.01)
recorder.on_start(RunStart(total_steps=10**7, steps_per_epoch=1000, epochs=10**4, start_step=0, device="cpu",
                           classes=["a", "b"], train_size=1, val_size=1, test_size=1, model_summary={}, environment={}))
step, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    step += 1
    recorder.on_step(StepMetrics(step=step, epoch=step // 1000 + 1, loss=1.0 / step, accuracy=0.5, lr=0.01))
    if step % 20 == 0:
        time.sleep(0.001)  # a training step's worth of pause, now and then
recorder.on_end(RunEnd(status="succeeded", step=step, epoch=step // 1000 + 1))
print(json.dumps({"run_id": run_id, "steps": step, "flushes": recorder.flushes, "failures": failures}))
"""

READER = r"""
import json, sys, time
from core.records import queries
from core.records.engine import get_engine

url, seconds = sys.argv[1], float(sys.argv[2])
engine = get_engine(url)
reads, points, end = 0, 0, time.monotonic() + seconds
while time.monotonic() < end:
    for run in queries.list_runs(engine=engine):
        points += len(queries.series(run.id, engine=engine))
        queries.get_run(run.id, engine=engine)
        reads += 1
    time.sleep(0.005)
print(json.dumps({"reads": reads, "points": points}))
"""


@pytest.mark.slow
def test_two_writers_and_a_reader_in_three_processes(engine, db_url):
    def start(script, seconds):
        return subprocess.Popen(
            [sys.executable, "-c", script, db_url, str(seconds)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    procs = [start(WRITER, SECONDS), start(WRITER, SECONDS), start(READER, SECONDS + 1.0)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    writers, reader = outputs[:2], outputs[2]
    for w in writers:
        assert w["failures"] == []  # not one flush had to be retried
        assert w["flushes"] > 20 and w["steps"] > 1000
        # Every step is there once, and the rollups saw them all.
        run = queries.get_run(w["run_id"], engine=engine)
        assert run.status == "succeeded" and run.step == w["steps"]
        assert sum(queries.series(w["run_id"], engine=engine).count) == w["steps"]
    assert reader["reads"] > 10
