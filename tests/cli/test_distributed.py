"""`imori train --nproc-per-node 2`: two gloo processes on the CPU, launched by the
command in the foreground, against one process (the issue's "done when"), and two
"machines" (`imori train --nnodes 2` + `imori join`) on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def imori(*argv: str, home: Path) -> subprocess.Popen:
    env = {**os.environ, "IMORI_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "cli", *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def train(*argv: str, home: Path) -> dict:
    proc = imori("train", "--quiet", "--json", *argv, home=home)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def losses(home: Path, run_id: int) -> list[tuple[int, float]]:
    """(step, loss) of every recorded step, from the run records under ``home``."""
    code = ("import json; from sqlalchemy import select; from core.records import get_engine; "
            "from core.records.schema import SqlIterationMetric as M; "
            f"rows = get_engine().connect().execute(select(M.step, M.loss).where(M.run_id == {run_id}).order_by(M.step)); "
            "print(json.dumps([list(r) for r in rows]))")
    env = {**os.environ, "IMORI_HOME": str(home)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return [tuple(row) for row in json.loads(out.stdout)]


def one_process(tmp_path: Path, **overrides) -> tuple[list[tuple[int, float]], dict]:
    """The same recipe on one process, here: (step, loss) of each step and the test figures."""
    from core.recipes import recipe_config
    from core.recorder import MemoryRecorder
    from core.train import fit

    memory = MemoryRecorder()
    result = fit(recipe_config("seed003", dataset="digits", **overrides), tmp_path / f"one-{len(overrides)}", memory)
    return [(m.step, m.loss) for m in memory.steps], result.test


def test_two_processes_train_the_recipe_like_one(tmp_path):
    """The done-when command: every step recorded once, test accuracy within one point of
    one process's. Under the recipe's bf16 autocast (this CPU has it) the losses agree to
    bf16's rounding; in fp32, within 1e-4."""
    two = train("--recipe", "seed003", "--dataset", "digits", "--nproc-per-node", "2", "--epochs", "2", home=tmp_path)
    steps_one, test_one = one_process(tmp_path, epochs=2)
    assert two["status"] == "succeeded" and two["step"] == len(steps_one)
    steps_two = losses(tmp_path, two["run_id"])
    assert [s for s, _ in steps_two] == list(range(1, len(steps_one) + 1))  # every step once
    assert abs(two["test"]["accuracy"] - test_one["accuracy"]) <= 0.01
    tolerance = 1e-4 if two["precision"] == "fp32" else 2e-2  # bf16 keeps 8 bits of mantissa
    assert max(abs(a - b) for (_, a), (_, b) in zip(steps_two[:10], steps_one[:10])) <= tolerance

    fp32 = train("--recipe", "seed003", "--dataset", "digits", "--nproc-per-node", "2", "--iterations", "10",
                 "--precision", "fp32", home=tmp_path)
    steps_one, _ = one_process(tmp_path, iterations=10, precision="fp32")
    steps_two = losses(tmp_path, fp32["run_id"])
    assert [s for s, _ in steps_two] == list(range(1, 11))
    assert max(abs(a - b) for (_, a), (_, b) in zip(steps_two, steps_one)) < 1e-4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_machines_meet_at_the_rendezvous_endpoint(tmp_path):
    """`imori train --nnodes 2` records, `imori join --node-rank 1` adds a second
    "machine" (here the same one, on loopback): the losses are one process's."""
    endpoint = f"127.0.0.1:{free_port()}"
    joiner = imori("join", "--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", endpoint, home=tmp_path)
    two = train("--recipe", "seed003", "--dataset", "digits", "--nnodes", "2", "--rdzv-endpoint", endpoint,
                "--iterations", "6", "--precision", "fp32", home=tmp_path)
    _, err = joiner.communicate(timeout=120)
    assert joiner.returncode == 0, err[-3000:]
    a, (b, _) = losses(tmp_path, two["run_id"]), one_process(tmp_path, iterations=6, precision="fp32")
    assert [s for s, _ in a] == list(range(1, 7))
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) < 1e-4


def test_more_processes_than_cores_is_a_one_line_error(tmp_path):
    proc = imori("train", "--recipe", "seed003", "--dataset", "digits", "--iterations", "2",
                 "--nproc-per-node", str((os.cpu_count() or 1) + 1), home=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err
    assert "CPU core" in err and "--nproc-per-node" in err
