"""Every benchmark, one after the other (never two at once), into one report.

    .venv/bin/python bench/run_all.py            # about 45 minutes on 2 cores
    .venv/bin/python bench/run_all.py --quick    # fewer rounds, smaller sizes
    make bench

Prints each benchmark's table as it finishes and writes them all, with the date, the
machine and the commands, to bench/RESULTS.md (``--out`` to write elsewhere). The
figures are ratios measured side by side in one run wherever a target is a ratio:
these machines are noisy, so absolute numbers from different runs do not compare.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SUITE = [
    ("Training speed: imori's loop with the database recorder vs the tutorial's loop (a)", "throughput.py", ["--rounds", "5"], ["--rounds", "2"]),
    ("Recording cost and the 1,000,000-iteration chart query (a, d)", "recording.py", [], ["--rounds", "3", "--steps", "200000", "--whole-rounds", "0"]),
    ("The queue: submit to first iteration, runs per minute, two runs at once vs in turn (b, c, g)", "queueing.py", [], ["--rounds", "5"]),
    ("Prediction latency, warm model, one upload, one torch thread (e)", "predict_latency.py", [], ["--repeats", "20"]),
    ("Data pipeline on an image folder of 64x64 JPEGs (f)", "pipeline.py", [], ["--images", "3000", "--seed000-counts", "250,500,1000"]),
    ("What each recipe reaches on the built-in data (for the recipe cards)", "recipes.py", [], ["seed003", "seed004"]),
    ("CPU precision per model: fp32, bf16, bf16 + channels-last (issue 18)", "precision.py", [], ["--rounds", "2"]),
    ("A whole seed 003 run against the tutorial's own script (issue 18)", "whole_run.py", [], ["--rounds", "1"]),
    ("Real photos: finetune vs the frozen head vs mynet from scratch (issue 12)", "real_photos.py", [], ["--per-class", "120"]),
    ("The runs list with 100,000 runs: one page of 50, searched and filtered (issue 13.11)", "runs_list.py", [], ["--runs", "20000"]),
    ("Dataset health checks on 2,000 and 20,000 images of 128 px (issue 15)", "health.py", [], ["--images", "2000"]),
    ("Calibration of the recipes: ECE before and after temperature scaling (issue 16.4)", "calibration.py", [], ["seed003"]),
    ("Many workers, one database: 16 recorders on PostgreSQL while the dashboard reads (issue 17.5)", "many_recorders.py", [], ["--seconds", "5"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    sections = []
    for title, script, full, quick in SUITE:
        argv = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        print(f"\n## {title}\n$ {' '.join(argv[1:])}", flush=True)
        started = time.time()
        result = subprocess.run(argv, capture_output=True, text=True, cwd=HERE.parent)
        table = "\n".join(line for line in result.stdout.splitlines() if line.strip())
        if result.returncode != 0:
            table += f"\n\n(failed with status {result.returncode}: {result.stderr.strip().splitlines()[-1:]})"
        print(table, flush=True)
        sections.append(
            f"## {title}\n\n`python bench/{script} {' '.join(full if not args.quick else quick)}` "
            f"({time.time() - started:.0f} s)\n\n{table}\n"
        )
    header = (
        "# Benchmark results\n\n"
        f"Produced by `python bench/run_all.py{' --quick' if args.quick else ''}` on {time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()} with {cores} cores, Python {platform.python_version()}, on the CPU "
        "(no GPU was lent to this task). Each benchmark ran alone; ratios are measured side by side in "
        "interleaved rounds.\n"
    )
    Path(args.out).write_text(header + "\n" + "\n".join(sections))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
