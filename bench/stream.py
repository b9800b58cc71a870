"""Datasets over IMORI_MAX_DATASET_RAM: what streaming from the on-disk cache costs.

    PYTHONPATH=. python bench/stream.py [--images 20000] [--size 64] [--rounds 3]

1. Peak resident memory of `imori train` (a child process, read through wait4) on a folder
   of PNGs, streamed (cap a quarter of the decoded size) and in memory, from one cache.
2. Later epochs: the same Trainer's second epoch, in memory and streamed, in interleaved
   rounds in this process (median and spread of the epoch's wall time).
3. One random batch gathered: from a tensor, by positional reads (DiskImages), through a
   numpy memory map (with the resident memory it leaves), against one training step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def write_folder(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size, dtype=np.float32)
    bases = [np.broadcast_to(ramp[None, :, None], (size, size, 3)), np.broadcast_to(ramp[:, None, None], (size, size, 3))]
    for split, count in (("train", n // 2), ("test", 50)):
        for c, base in enumerate(bases):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
                Image.fromarray((base + noise).astype(np.uint8)).save(folder / f"{i:05d}.png", compress_level=1)


def train_child(dataset: Path, home: Path, size: int, cap: str | None) -> tuple[int, float, dict]:
    env = dict(os.environ, IMORI_HOME=str(home), IMORI_LOCK_DIR=str(home / "lock"), PYTHONPATH=str(ROOT))
    env.pop("IMORI_MAX_DATASET_RAM", None)
    if cap:
        env["IMORI_MAX_DATASET_RAM"] = cap
    argv = [sys.executable, "-m", "cli", "train", "--dataset", str(dataset), "--model", "mynet", "--image-size", str(size),
            "--iterations", "3", "--batch-size", "16", "--val-fraction", "0.01", "--eval-batch-size", "16",
            "--threads", "2", "--device", "cpu", "--json", "--quiet"]
    out = home / "out.json"
    started = time.monotonic()
    with open(out, "wb") as handle:
        child = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.DEVNULL, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss * 1024, time.monotonic() - started, json.loads(out.read_text())


def later_epochs(dataset: Path, size: int, cap: str, rounds: int) -> dict[str, list[float]]:
    from core.config import RunConfig
    from core.recorder import Recorder
    from core.train import Trainer

    config = RunConfig(dataset=str(dataset), model="mnist_cnn", optimizer="adam", lr=1e-3, batch_size=100, epochs=2,
                       threads=2, device="cpu", image_size=(28, 28))
    times: dict[str, list[float]] = {"memory": [], "streamed": []}
    for _ in range(rounds):
        for path in ("memory", "streamed"):
            if path == "streamed":
                os.environ["IMORI_MAX_DATASET_RAM"] = cap
            else:
                os.environ.pop("IMORI_MAX_DATASET_RAM", None)
            with tempfile.TemporaryDirectory() as run_dir:
                trainer = Trainer(config, run_dir, Recorder())
                trainer.deadline = None  # fit() sets it; the epochs are called directly here
                trainer.train_epoch(1)  # the first epoch warms the page cache and the allocator
                trainer.next_batch = 0  # fit() does this between epochs
                started = time.monotonic()
                trainer.train_epoch(2)
                times[path].append(time.monotonic() - started)
    os.environ.pop("IMORI_MAX_DATASET_RAM", None)
    return times


def gathers(file: Path, shape: tuple[int, ...], batch: int = 32, repeats: int = 300) -> dict[str, float]:
    import torch

    from core.data.cache import DiskImages

    disk = DiskImages(file, shape)
    tensor = disk.to_tensor()
    mapped = np.memmap(file, dtype=np.uint8, mode="r", shape=shape)
    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(rng.choice(shape[0], batch, replace=False)) for _ in range(repeats)]
    out = {}
    for name, read in (("tensor", lambda i: tensor[i]), ("positional reads", lambda i: disk[i]),
                       ("numpy memmap", lambda i: torch.from_numpy(np.take(mapped, i.numpy(), axis=0)))):
        for idx in batches[:20]:  # warm up
            read(idx)
        started = time.perf_counter()
        for idx in batches:
            read(idx)
        out[name] = (time.perf_counter() - started) / repeats * 1e3
    total, mine = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:
                mine = line.rstrip().endswith(str(file))
            elif mine and head and head[0] == "Rss:":
                total += int(head[1]) * 1024
    out["memmap resident MB"] = total / 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="imori-bench-stream-"))
    dataset, home = work / "photos", work / "home"
    home.mkdir()
    started = time.monotonic()
    write_folder(dataset, args.images, args.size)
    n = args.images + 100
    decoded = n * 3 * args.size * args.size
    print(f"{n} PNGs of {args.size}x{args.size} written in {time.monotonic() - started:.0f} s: {decoded / 1e6:.0f} MB decoded")
    cap = str(decoded // 4)
    streamed_peak, streamed_s, streamed = train_child(dataset, home, args.size, cap)  # decodes into the file
    again_peak, again_s, _ = train_child(dataset, home, args.size, cap)  # reads the file
    memory_peak, memory_s, memory = train_child(dataset, home, args.size, None)  # reads the file whole
    print(f"imori train, peak RSS: streamed {streamed_peak / 1e6:.0f} MB (decoding, {streamed_s:.0f} s), "
          f"streamed again {again_peak / 1e6:.0f} MB ({again_s:.0f} s), in memory {memory_peak / 1e6:.0f} MB "
          f"({memory_s:.0f} s); saved {(memory_peak - again_peak) / 1e6:.0f} MB of {decoded / 1e6:.0f} MB decoded; "
          f"same test metrics: {streamed['test'] == memory['test']}")
    os.environ["IMORI_HOME"] = str(home)
    times = later_epochs(dataset, args.size, str(n * 28 * 28 // 4), args.rounds)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"epoch 2 of mnist_cnn at 28x28 gray ({n} images), {args.rounds} interleaved rounds: "
          + ", ".join(f"{k} {med[k]:.2f} s (range {min(v):.2f}-{max(v):.2f})" for k, v in times.items())
          + f"; streamed / memory = {med['streamed'] / med['memory']:.3f}")
    row = 3 * args.size * args.size
    file = next(f for f in (home / "cache").glob("*.u8") if f.stat().st_size == n * row)
    print("one random batch of 32 images of 3x%dx%d, ms: %s" % (args.size, args.size, json.dumps(
        {k: round(v, 3) for k, v in gathers(file, (n, 3, args.size, args.size)).items()})))


if __name__ == "__main__":
    main()
