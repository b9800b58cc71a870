"""One run on one process against the same run on two (torchrun, gloo, DDP) on these cores.

    .venv/bin/python bench/distributed.py [--rounds 3] [--epochs 5] [--precision auto fp32]

Each arm is a whole ``imori train --recipe seed003 --dataset digits --epochs E --quiet
--json`` in a fresh process: one process with the default threads (all cores), one
process with ``--threads 1`` (what each rank gets here), and ``--nproc-per-node 2``; in a temporary
IMORI_HOME whose dataset cache the first (untimed) run warms. Rounds interleave the arms
(A B C, C B A, ...: never two at once). Reported per arm: the whole process's wall
time (spawn to exit: imports, torchrun and its ranks' start, data, training,
evaluations, checkpoints), the loop's own seconds and images per second (``FitResult``:
the global batch counted once), and the test accuracy. The 1-minute load average before
each round is printed, since the machine is shared: figures taken under load say so.
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

ROOT = Path(__file__).resolve().parents[1]


ARMS = {"1 process": (1, None), "1 process, 1 thread": (1, 1), "2 processes": (2, None)}


def one_run(home: str, epochs: int, procs: int, precision: str, threads: int | None = None) -> dict:
    cmd = [sys.executable, "-m", "cli", "train", "--recipe", "seed003", "--dataset", "digits", "--epochs", str(epochs),
           "--quiet", "--json", "--precision", precision]
    if procs > 1:
        cmd += ["--nproc-per-node", str(procs)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "IMORI_HOME": home, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout)
    return {"wall": wall, "loop": result["seconds"], "ips": result["images_per_second"],
            "accuracy": result["test"]["accuracy"], "precision": result["precision"], "steps": result["step"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--precision", nargs="+", default=["auto", "fp32"])
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="imori-bench-ddp-")
    print(f"cores: {len(os.sched_getaffinity(0))}; warming the dataset cache", flush=True)
    one_run(home, 1, 1, "fp32")
    rows = []
    for precision in args.precision:
        runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
        for r in range(args.rounds):
            load = os.getloadavg()[0]
            order = list(ARMS) if r % 2 == 0 else list(reversed(ARMS))
            for arm in order:
                procs, threads = ARMS[arm]
                runs[arm].append(one_run(home, args.epochs, procs, precision, threads))
                m = runs[arm][-1]
                print(f"{precision} round {r + 1} (load {load:.1f}): {arm}: wall {m['wall']:.1f} s, "
                      f"loop {m['loop']:.2f} s, {m['ips']:.0f} img/s, test {100 * m['accuracy']:.2f} %", flush=True)
        for arm, ms in runs.items():
            med = {k: statistics.median(m[k] for m in ms) for k in ("wall", "loop", "ips", "accuracy")}
            spread = {k: (min(m[k] for m in ms), max(m[k] for m in ms)) for k in ("wall", "ips")}
            rows.append((precision, ms[0]["precision"], arm, med, spread, ms[0]["steps"]))
    print("\n| precision | arm | whole run (median, min-max) | loop | images/s (median, min-max) | test accuracy |")
    print("|---|---|---|---|---|---|")
    for precision, used, arm, med, spread, steps in rows:
        print(f"| {precision} ({used}) | {arm} | {med['wall']:.1f} s ({spread['wall'][0]:.1f}-{spread['wall'][1]:.1f}) "
              f"| {med['loop']:.2f} s ({steps} steps) | {med['ips']:.0f} ({spread['ips'][0]:.0f}-{spread['ips'][1]:.0f}) "
              f"| {100 * med['accuracy']:.2f} % |")
    for precision in args.precision:
        by = {r[2]: r[3] for r in rows if r[0] == precision}
        for base in ("1 process", "1 process, 1 thread"):
            print(f"{precision}: 2 processes against {base}: whole run {by['2 processes']['wall'] / by[base]['wall']:.2f}x "
                  f"the time, loop throughput {by['2 processes']['ips'] / by[base]['ips']:.2f}x")


if __name__ == "__main__":
    main()
