"""A checkpoint folder that is full or read-only: the run fails with the reason, and
what it recorded before is intact. Uses real tmpfs mounts (root ignores file modes, so
chmod proves nothing here)."""

import os
import subprocess

import pytest

from core.config import RunConfig
from core.errors import CheckpointError
from core.records import DbRecorder, queries, store
from core.train import fit

FAST = dict(model="mnist_cnn", dataset="digits", optimizer="adam", lr=2e-3, batch_size=64)


@pytest.fixture
def mount(tmp_path):
    """mount(options) -> a fresh tmpfs folder; unmounted at the end."""
    mounted = []

    def make(options: str):
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True)
        assert result.returncode == 0, f"these tests mount a tmpfs and need root: {result.stderr.strip()}"
        mounted.append(target)
        return target

    yield make
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def recorded_run(tmp_path):
    run_id = store.create_run(RunConfig(**FAST))
    attempt = store.claim_run(run_id, "test")
    return run_id, DbRecorder(run_id, attempt)


@pytest.mark.parametrize("options, reason", [("size=256k", "No space left on device"), ("size=4m,ro", "Read-only file system")])
def test_a_full_or_read_only_checkpoint_folder_fails_the_run_with_the_reason(tmp_path, mount, options, reason):
    folder = mount(options)
    run_id, recorder = recorded_run(tmp_path)
    with pytest.raises(CheckpointError, match=reason):
        fit(RunConfig(**FAST, epochs=1), folder / "run", recorder)
    run = queries.get_run(run_id)
    assert run.status == "failed" and reason in run.error
    steps = [row.step for row in queries.iterations(run_id)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 1  # every step before the failure
    assert {e.split for e in queries.eval_series(run_id)} >= {"val"}  # the evaluation that preceded the write
    leftovers = [p for p in folder.rglob("*") if p.is_file()]
    assert leftovers == []  # no half-written checkpoint, no temporary file


def test_a_run_fails_at_the_first_checkpoint_that_does_not_fit(tmp_path, mount):
    """Room for some checkpoints but not all: the ones written stay loadable."""
    from core.checkpoint import read_file

    folder = mount("size=12m")
    run_id, recorder = recorded_run(tmp_path)
    with pytest.raises(CheckpointError, match="No space left on device"):
        fit(RunConfig(**FAST, epochs=20, keep_checkpoints=100), folder / "run", recorder)
    written = sorted((folder / "run" / "checkpoints").glob("*.pt"))
    assert written, "some checkpoints fit before the disk filled"
    for path in written:
        read_file(path)  # complete, loadable files only
    assert not list((folder / "run" / "checkpoints").glob(".*.tmp"))
    assert queries.get_run(run_id).status == "failed"


KILLABLE = """
import sys
from core.config import RunConfig
from core.train import fit
config = RunConfig(model="mnist_cnn", dataset="digits", batch_size=64, threads=1, epochs=None,
                   iterations=100000, checkpoint_every_minutes=1e-9, keep_checkpoints=3)
print("training", flush=True)
fit(config, sys.argv[1], resume_from=sys.argv[2] if len(sys.argv) > 2 else None)
"""


@pytest.mark.slow
def test_a_process_killed_while_writing_checkpoints_leaves_only_loadable_ones(tmp_path):
    """A checkpoint after every iteration, and SIGKILL at five moments: each time, every
    checkpoint file there loads, and the next start resumes from the newest."""
    import random
    import signal
    import sys
    import time

    from core.checkpoint import read_file

    run_dir = tmp_path / "run"
    folder = run_dir / "checkpoints"
    rng = random.Random(0)
    last_step = 0
    for kill in range(5):
        newest = sorted(folder.glob("ckpt-s*.pt"))[-1:] if folder.exists() else []
        proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(run_dir), *map(str, newest)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "training", proc.stderr.read()
        deadline = time.monotonic() + 60
        while not any(p.name > f"ckpt-s{last_step:08d}.pt" for p in folder.glob("ckpt-s*.pt")):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        time.sleep(rng.uniform(0.05, 0.6))  # somewhere in a stream of checkpoint writes
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        files = sorted(folder.glob("ckpt-s*.pt"))
        assert files
        for path in files:
            state = read_file(path)  # never a torn file
            assert state["training"]["step"] == int(path.stem[len("ckpt-s"):])
        steps = [read_file(p)["training"]["step"] for p in files]
        assert steps[-1] > last_step  # progress was made and kept
        last_step = steps[-1]
