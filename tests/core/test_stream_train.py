"""Training from a dataset over IMORI_MAX_DATASET_RAM: batches read from the on-disk cache
record what the same run in memory records, resume exactly, and the process's peak resident
memory stays below the in-memory run's by most of the dataset's decoded size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.checkpoint import load_checkpoint
from core.config import RunConfig
from core.recorder import MemoryRecorder
from core.train import fit

FAST = dict(model="mnist_cnn", dataset="digits", optimizer="adam", lr=2e-3, batch_size=64)
DIGITS_BYTES = 1797 * 28 * 28  # decoded at the model's 28x28


def _steps(recorder, after=0):
    return [(s.step, s.epoch, s.loss, s.accuracy, s.lr) for s in recorder.steps if s.step > after]


def _evals(recorder):
    return [(e.epoch, e.split, e.loss, e.accuracy, e.balanced_accuracy) for e in recorder.evals]


def test_a_streamed_run_records_what_the_in_memory_run_does_and_resumes_exactly(tmp_path, monkeypatch):
    # Augmentation draws random numbers every step and the schedule moves the lr: the
    # batches must be the same images in the same order for the figures to be equal.
    config = RunConfig(**FAST, epochs=2, augment=("flip", "rotate", "crop"), schedule="cosine")
    monkeypatch.delenv("IMORI_MAX_DATASET_RAM", raising=False)
    memory = MemoryRecorder()
    fit(config, tmp_path / "memory", memory)

    monkeypatch.setenv("IMORI_MAX_DATASET_RAM", str(DIGITS_BYTES // 4))  # a quarter of the decoded size
    first = MemoryRecorder(stop_after_step=7)  # mid epoch 1
    part = fit(config, tmp_path / "streamed", first)
    assert part.status == "cancelled" and any("read by index from" in m and ".u8" in m for m in first.logs)
    rest = MemoryRecorder()
    done = fit(config, tmp_path / "streamed", rest, resume_from=part.last_checkpoint)
    assert done.status == "succeeded"
    assert _steps(first) + _steps(rest, after=7) == _steps(memory)
    assert _evals(rest) == _evals(memory)
    # What prediction compares uploads with is the same too.
    assert load_checkpoint(done.last_checkpoint).data == load_checkpoint(memory.checkpoints[-1].path).data


def _write_folder(root: Path, per_class: int, size: int) -> int:
    """train/<class>/*.bmp (two classes told apart by a gradient's direction) and 8 test
    images a class; BMP, because it writes and reads fastest. Returns the decoded bytes."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size, dtype=np.float32)
    bases = [np.broadcast_to(ramp[None, :, None], (size, size, 3)), np.broadcast_to(ramp[:, None, None], (size, size, 3))]
    count = 0
    for split, n in (("train", per_class), ("test", 8)):
        for c, base in enumerate(bases):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                noise = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
                Image.fromarray((base + noise).astype(np.uint8)).save(folder / f"{i:04d}.bmp")
                count += 1
    return count * 3 * size * size


def _train_peak(dataset: Path, home: Path, cap: str | None) -> tuple[dict, int]:
    """``imori train`` in a child process: (its --json summary, its peak resident bytes)."""
    env = dict(os.environ, IMORI_HOME=str(home), IMORI_LOCK_DIR=str(home / "cpu-lock"))
    env.pop("IMORI_MAX_DATASET_RAM", None)
    if cap is not None:
        env["IMORI_MAX_DATASET_RAM"] = cap
    argv = [sys.executable, "-m", "cli", "train", "--dataset", str(dataset), "--model", "resnet18", "--no-pretrained",
            "--image-size", "256", "--iterations", "3", "--batch-size", "8", "--val-fraction", "0.02",
            "--eval-batch-size", "8", "--device", "cpu", "--seed", "3", "--json", "--quiet"]
    out_path, err_path = home / f"out-{cap}.json", home / f"err-{cap}.txt"
    home.mkdir(parents=True, exist_ok=True)
    # The child's VmHWM (its own address space's high-water mark), read until it exits: its
    # ru_maxrss would not do, since Linux records the parent's peak into it at exec (a
    # long test session's several GB).
    peak = 0
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=err, cwd=Path(__file__).resolve().parents[2])
        status_file = Path(f"/proc/{child.pid}/status")
        while child.poll() is None:
            try:
                hwm = next(line for line in status_file.read_text().splitlines() if line.startswith("VmHWM:"))
                peak = max(peak, int(hwm.split()[1]) * 1024)  # kB
            except (OSError, StopIteration, ValueError):
                pass  # exiting: the last reading stands
            time.sleep(0.05)
    assert child.returncode == 0, err_path.read_text()[-2000:]
    assert peak > 0, "the child's memory could not be read"
    return json.loads(out_path.read_text()), peak


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM in /proc is Linux's")
def test_a_streamed_run_peaks_far_below_the_in_memory_run(tmp_path):
    dataset = tmp_path / "photos"
    decoded = _write_folder(dataset, per_class=320, size=256)  # 656 images of 196 KB: 129 MB decoded
    home = tmp_path / "home"
    # Streamed first: it decodes into the cache file, which the in-memory run then reads whole.
    streamed, streamed_peak = _train_peak(dataset, home, str(decoded // 4))
    memory, memory_peak = _train_peak(dataset, home, None)
    assert list((home / "cache").glob("*.u8")), "the streamed run left no on-disk images"
    assert streamed["test"] == memory["test"] and streamed["val"] == memory["val"]
    saved = memory_peak - streamed_peak
    assert saved > 0.75 * decoded, (
        f"peak RSS {streamed_peak / 1e6:.0f} MB streamed against {memory_peak / 1e6:.0f} MB in memory: "
        f"{saved / 1e6:.0f} MB saved of {decoded / 1e6:.0f} MB decoded"
    )
