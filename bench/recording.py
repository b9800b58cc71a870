"""What recording into the database costs, and how fast a million-step chart is read.

Part 1, recording overhead: the same model and data (the seed 003 MNIST CNN on the
built-in ``digits``, Adam, batch 64, a fixed number of iterations, CPU) trained by
``core.train.fit`` bare (the do-nothing ``Recorder``) and with ``DbRecorder``, in
interleaved rounds (ABBA order, never concurrently), after one warm-up pair. Reported:
the median of the per-round speed ratios bare/recorded (>= 0.97 is the target) with its
spread, for the training loop (``on_start`` to ``on_end``: every step, evaluation and
checkpoint, and the recorder's writes) and for the whole ``fit()`` call (data and model
setup too), and the time spent inside the recorder itself. Optionally, whole runs as
fresh processes (interpreter start, imports, data, training, checkpoints).

Part 2, a chart of 1,000,000 iterations: a run of 1M steps written through the
recorder's own write path, then ``queries.series`` (at most 2,000 points, each bucket's
min, max and mean) timed cold and warm (target: under 0.3 s), a zoom, a comparison,
the runs list, and, for scale, the plain GROUP BY over the raw rows that the rollups
replace.

    .venv/bin/python bench/recording.py                    # about 3-5 minutes on 2 cores
    .venv/bin/python bench/recording.py --rounds 3 --steps 200000 --whole-rounds 0   # quick
    .venv/bin/python bench/recording.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench

Runs under a temporary IMORI_HOME (deleted at the end) unless --home is given; the
database is that home's SQLite file unless --database-url names another (which must be
empty or imori's).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7, help="measured bare/recorded pairs (after one warm-up pair)")
    p.add_argument("--iterations", type=int, default=300, help="training steps per run")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the usable cores)")
    p.add_argument("--whole-rounds", type=int, default=3, help="pairs of whole runs as fresh processes (0: skip)")
    p.add_argument("--steps", type=int, default=1_000_000, help="iterations in the stored run of part 2")
    p.add_argument("--queries", type=int, default=30, help="repetitions of each timed query")
    p.add_argument("--home", default=None, help="IMORI_HOME to use (default: a temporary folder)")
    p.add_argument("--database-url", default=None, help="records database (default: SQLite under the home)")
    p.add_argument("--skip-training", action="store_true", help="part 2 only")
    p.add_argument("--json", dest="json_path", default=None, help="also write the figures to this file")
    return p.parse_args()


def abba_pair(one, r: int):
    """Round ``r`` of an ABBA schedule: (bare, recorded), measured bare first on even
    rounds and recorded first on odd ones, so drift over time cancels out."""
    if r % 2 == 0:
        bare = one(False, r)
        return bare, one(True, r)
    rec = one(True, r)
    return one(False, r), rec


def spread(values: list[float]) -> str:
    return f"{min(values):.4f} .. {max(values):.4f}"


# -- part 1: recording overhead ----------------------------------------------------------------


def training_overhead(args: argparse.Namespace, url: str) -> dict:
    import torch  # noqa: F401  (imported before timing anything)

    from core.config import RunConfig
    from core.recorder import Recorder, Recorders
    from core.records import DbRecorder, store
    from core.records.engine import get_engine
    from core.devices import usable_cores
    from core.train import fit

    engine = get_engine(url)
    threads = args.threads or usable_cores()
    config = RunConfig(
        model="mnist_cnn", dataset="digits", optimizer="adam", lr=1e-3, batch_size=args.batch_size,
        epochs=None, iterations=args.iterations, device="cpu", threads=threads, seed=0,
    )  # fmt: skip

    class Clock(Recorder):
        """Marks the loop's start (first in line) or end (last in line)."""

        def __init__(self) -> None:
            self.start = self.end = 0.0
            self.steps = 0

        def on_start(self, start) -> None:
            self.start = time.perf_counter()

        def on_step(self, metrics) -> None:
            self.steps += 1

        def on_end(self, end) -> None:
            self.end = time.perf_counter()

    class TimedDbRecorder(DbRecorder):
        """DbRecorder that keeps the time spent inside its hooks."""

        inside = 0.0

        def _timed(name):  # noqa: N805 - a decorator factory in the class body
            def hook(self, *a, **kw):
                t = time.perf_counter()
                try:
                    return getattr(DbRecorder, name)(self, *a, **kw)
                finally:
                    self.inside += time.perf_counter() - t

            return hook

        on_start = _timed("on_start")
        on_step = _timed("on_step")
        on_eval = _timed("on_eval")
        on_checkpoint = _timed("on_checkpoint")
        on_checkpoint_removed = _timed("on_checkpoint_removed")
        on_log = _timed("on_log")
        should_stop = _timed("should_stop")
        on_end = _timed("on_end")

    work = Path(os.environ["IMORI_HOME"]) / "bench-loop"

    def one(recorded: bool, n: int) -> dict:
        first, last = Clock(), Clock()
        if recorded:
            run_id = store.create_run(config, engine=engine)
            attempt = store.claim_run(run_id, "bench", engine=engine)
            db = TimedDbRecorder(run_id, attempt, engine)
            recorder = Recorders(first, db, last)
        else:
            db = None
            recorder = Recorders(first, Recorder(), last)
        t = time.perf_counter()
        fit(config, work / f"{'rec' if recorded else 'bare'}-{n}", recorder)
        whole = time.perf_counter() - t
        out = {"loop": last.end - first.start, "fit": whole, "steps": last.steps}
        if db is not None:
            out.update(inside=db.inside, flushes=db.flushes)
        return out

    print(f"part 1: mnist_cnn on digits, {args.iterations} iterations, batch {args.batch_size}, "
          f"{threads} torch threads, {args.rounds} rounds (+1 warm-up), ABBA order")  # fmt: skip
    one(False, -1), one(True, -1)  # warm-up: caches, allocator, first-call costs
    rounds = []
    for r in range(args.rounds):
        bare, rec = abba_pair(one, r)
        rounds.append((bare, rec))
        print(f"  round {r + 1}: loop bare {bare['loop']:.3f} s, recorded {rec['loop']:.3f} s "
              f"(ratio {bare['loop'] / rec['loop']:.4f}); inside the recorder {rec['inside'] * 1000:.1f} ms "
              f"in {rec['flushes']} flushes")  # fmt: skip
    loop_ratios = [b["loop"] / r["loop"] for b, r in rounds]
    fit_ratios = [b["fit"] / r["fit"] for b, r in rounds]
    inside_share = [r["inside"] / r["loop"] for _, r in rounds]
    result = {
        "iterations": args.iterations,
        "threads": threads,
        "rounds": len(rounds),
        "loop_seconds_bare_median": statistics.median(b["loop"] for b, _ in rounds),
        "loop_seconds_recorded_median": statistics.median(r["loop"] for _, r in rounds),
        "loop_ratio_median": statistics.median(loop_ratios),
        "loop_ratio_min": min(loop_ratios),
        "loop_ratio_max": max(loop_ratios),
        # Noise from other processes only ever adds time: each arm's fastest round is
        # the robust estimate of its cost (shown next to the median of the pairs).
        "loop_ratio_of_fastest": min(b["loop"] for b, _ in rounds) / min(r["loop"] for _, r in rounds),
        "fit_ratio_median": statistics.median(fit_ratios),
        "fit_ratio_min": min(fit_ratios),
        "fit_ratio_max": max(fit_ratios),
        "recorder_share_median": statistics.median(inside_share),
        "recorder_share_max": max(inside_share),
        "flushes_median": statistics.median(r["flushes"] for _, r in rounds),
        "steps_per_second_bare": args.iterations / statistics.median(b["loop"] for b, _ in rounds),
    }
    if args.whole_rounds:
        result.update(whole_runs(args, url, threads))
    return result


WHOLE = r"""
import sys, time
t0 = float(sys.argv[1])
from core.config import RunConfig
from core.train import fit
recorded, url, run_dir, iterations, batch, threads = sys.argv[2] == "1", sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
config = RunConfig(model="mnist_cnn", dataset="digits", optimizer="adam", lr=1e-3, batch_size=batch, epochs=None,
                   iterations=iterations, device="cpu", threads=threads, seed=0)
recorder = None
if recorded:
    from core.records import DbRecorder, store
    from core.records.engine import get_engine
    engine = get_engine(url)
    run_id = store.create_run(config, engine=engine)
    recorder = DbRecorder(run_id, store.claim_run(run_id, "bench", engine=engine), engine)
fit(config, run_dir, recorder)
"""


def whole_runs(args: argparse.Namespace, url: str, threads: int) -> dict:
    """Fresh processes: interpreter start, imports, data, training, checkpoints."""
    work = Path(os.environ["IMORI_HOME"]) / "bench-whole"
    print(f"part 1b: whole runs as fresh processes, {args.whole_rounds} rounds, ABBA order")

    def one(recorded: bool, n: int) -> float:
        t = time.time()
        subprocess.run(
            [sys.executable, "-c", WHOLE, str(t), "1" if recorded else "0", url, str(work / f"{recorded}-{n}"),
             str(args.iterations), str(args.batch_size), str(threads)],
            cwd=ROOT, check=True,
        )  # fmt: skip
        return time.time() - t

    pairs = []
    for r in range(args.whole_rounds):
        bare, rec = abba_pair(one, r)
        pairs.append((bare, rec))
        print(f"  round {r + 1}: bare {bare:.2f} s, recorded {rec:.2f} s (ratio {bare / rec:.4f})")
    ratios = [b / r for b, r in pairs]
    return {
        "whole_seconds_bare_median": statistics.median(b for b, _ in pairs),
        "whole_seconds_recorded_median": statistics.median(r for _, r in pairs),
        "whole_ratio_median": statistics.median(ratios),
        "whole_ratio_min": min(ratios),
        "whole_ratio_max": max(ratios),
    }


# -- part 2: a million-step chart ------------------------------------------------------------


def million_step_chart(args: argparse.Namespace, url: str) -> dict:
    from sqlalchemy import text

    from core.recorder import RunEnd, RunStart, StepMetrics
    from core.records import DbRecorder, queries, store
    from core.records.engine import dispose_engines, get_engine

    n = args.steps
    engine = get_engine(url)
    run_id = store.create_run({"model": "mnist_cnn", "dataset": "digits", "name": "a million steps"}, engine=engine)
    attempt = store.claim_run(run_id, "bench", engine=engine)
    recorder = DbRecorder(run_id, attempt, engine, flush_interval=3600, max_rows=20_000)
    recorder.on_start(
        RunStart(total_steps=n, steps_per_epoch=1000, epochs=-(-n // 1000), start_step=0, device="cpu",
                 classes=[str(i) for i in range(10)], train_size=64_000, val_size=0, test_size=0,
                 model_summary={}, environment={})  # fmt: skip
    )
    rng = random.Random(0)
    t0 = 1.8e9
    print(f"part 2: writing {n:,} iterations through the recorder's write path")
    t = time.perf_counter()
    for i in range(1, n + 1):
        loss = 2.3 * math.exp(-i / (n / 5)) + 0.05 + 0.02 * rng.random() + (5.0 if i % 99_991 == 0 else 0.0)
        recorder.on_step(StepMetrics(step=i, epoch=(i - 1) // 1000 + 1, loss=loss, accuracy=min(1.0, 0.1 + i / n),
                                     lr=1e-3, time=t0 + i * 0.01))  # fmt: skip
    recorder.on_end(RunEnd(status="succeeded", step=n, epoch=-(-n // 1000)))
    write_s = time.perf_counter() - t
    small = store.create_run({"model": "lenet5", "dataset": "digits"}, engine=engine)
    a2 = store.claim_run(small, "bench", engine=engine)
    store.log_batch(small, a2, steps=[StepMetrics(step=i, epoch=1, loss=1 / i, accuracy=0.5, lr=0.01) for i in range(1, 5001)], engine=engine)

    def timed(fn, repeat: int) -> tuple[float, float, float, object]:
        times = []
        value = None
        for _ in range(repeat):
            t = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times), min(times), max(times), value

    # Cold: a new engine (new connections, pragmas, the schema check) and its first query.
    dispose_engines()
    t = time.perf_counter()
    engine = get_engine(url)
    s = queries.series(run_id, engine=engine)
    cold = time.perf_counter() - t
    med, lo, hi, s = timed(lambda: queries.series(run_id, engine=engine), args.queries)
    spikes = sum(1 for v in s.loss_max if v is not None and v > 4.0)
    zoom = timed(lambda: queries.series(run_id, step_from=n // 2, step_to=n // 2 + n // 10, engine=engine), args.queries)
    compare = timed(lambda: queries.compare_series([run_id, small], engine=engine), args.queries)
    runs = timed(lambda: queries.list_runs(engine=engine), args.queries)
    with engine.connect() as conn:
        t = time.perf_counter()
        naive = conn.execute(
            text(f"SELECT (step - 1) / {max(1, n // 2000)} AS g, min(loss), max(loss), avg(loss) FROM iteration_metrics "
                 "WHERE run_id = :r GROUP BY g"),  # fmt: skip
            {"r": run_id},
        ).all()
        naive_s = time.perf_counter() - t
    size = None
    if engine.dialect.name == "sqlite":
        size = sum(os.path.getsize(p) for p in Path(engine.url.database).parent.glob(Path(engine.url.database).name + "*"))
    return {
        "stored_steps": n,
        "write_seconds": write_s,
        "write_rows_per_second": n / write_s,
        "series_points": len(s),
        "series_width": s.width,
        "series_spikes_kept": spikes,
        "spikes_written": n // 99_991,
        "series_cold_seconds": cold,
        "series_warm_median_seconds": med,
        "series_warm_min_seconds": lo,
        "series_warm_max_seconds": hi,
        "zoom_median_seconds": zoom[0],
        "zoom_points": len(zoom[3]),
        "compare_median_seconds": compare[0],
        "runs_list_median_seconds": runs[0],
        "naive_group_by_seconds": naive_s,
        "naive_group_by_points": len(naive),
        "database_bytes": size,
    }


def main() -> None:
    args = parse_args()
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="imori-bench-home-"))
    os.environ["IMORI_HOME"] = str(home)
    url = args.database_url or f"sqlite:///{home / 'imori.db'}"
    from core.records.engine import is_sqlite

    print(f"imori recording benchmark, {time.strftime('%Y-%m-%d %H:%M')}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, database {'SQLite' if is_sqlite(url) else url.split(':')[0]}")  # fmt: skip
    results: dict = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    if not args.skip_training:
        results["training"] = training_overhead(args, url)
    results["chart"] = million_step_chart(args, url)
    results["load_after"] = os.getloadavg()[0]

    print()
    print("| figure | value | target |")
    print("|---|---|---|")
    if "training" in results:
        t = results["training"]
        print(f"| training loop speed, recorded / bare (median of {t['rounds']} pairs) | {t['loop_ratio_median']:.4f} "
              f"(spread {t['loop_ratio_min']:.4f} .. {t['loop_ratio_max']:.4f}) | >= 0.97 |")  # fmt: skip
        print(f"| same, fastest round of each arm | {t['loop_ratio_of_fastest']:.4f} | >= 0.97 |")
        print(f"| whole fit() call, recorded / bare | {t['fit_ratio_median']:.4f} "
              f"(spread {t['fit_ratio_min']:.4f} .. {t['fit_ratio_max']:.4f}) | >= 0.97 |")  # fmt: skip
        print(f"| time inside DbRecorder, share of the loop | {t['recorder_share_median'] * 100:.2f} % "
              f"(max {t['recorder_share_max'] * 100:.2f} %) in {t['flushes_median']:.0f} flushes per run | <= 3 % |")  # fmt: skip
        print(f"| loop seconds, bare / recorded (median) | {t['loop_seconds_bare_median']:.3f} / "
              f"{t['loop_seconds_recorded_median']:.3f} ({t['steps_per_second_bare']:.1f} steps/s) | |")  # fmt: skip
        if "whole_ratio_median" in t:
            print(f"| whole run as a process, recorded / bare | {t['whole_ratio_median']:.4f} "
                  f"(spread {t['whole_ratio_min']:.4f} .. {t['whole_ratio_max']:.4f}; "
                  f"{t['whole_seconds_bare_median']:.2f} s / {t['whole_seconds_recorded_median']:.2f} s) | >= 0.97 |")  # fmt: skip
    c = results["chart"]
    print(f"| series of {c['stored_steps']:,} steps, warm (median of {args.queries}) | "
          f"{c['series_warm_median_seconds'] * 1000:.1f} ms (max {c['series_warm_max_seconds'] * 1000:.1f} ms), "
          f"{c['series_points']} points of {c['series_width']} steps | < 300 ms, <= 2000 points |")  # fmt: skip
    print(f"| same, cold (new engine: connect, pragmas, schema check, query) | {c['series_cold_seconds'] * 1000:.1f} ms | < 300 ms |")
    print(f"| spikes kept (min/max per bucket) | {c['series_spikes_kept']} of {c['spikes_written']} | all |")
    print(f"| zoom to 10 % of the run | {c['zoom_median_seconds'] * 1000:.1f} ms, {c['zoom_points']} points | |")
    print(f"| compare: 1M-step run + 5k-step run | {c['compare_median_seconds'] * 1000:.1f} ms | |")
    print(f"| runs list | {c['runs_list_median_seconds'] * 1000:.1f} ms | |")
    print(f"| plain GROUP BY over the raw rows (what rollups avoid) | {c['naive_group_by_seconds'] * 1000:.0f} ms | |")
    print(f"| writing {c['stored_steps']:,} steps through the recorder | {c['write_seconds']:.1f} s "
          f"({c['write_rows_per_second']:,.0f} rows/s) | |")  # fmt: skip
    if c["database_bytes"]:
        print(f"| SQLite file (rows + rollups) | {c['database_bytes'] / 1e6:.0f} MB | |")
    print(f"\nload average before / after: {results['load_before']:.2f} / {results['load_after']:.2f} "
          "(other processes on these cores widen the spread)")  # fmt: skip
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    if not args.home:
        from core.records.engine import dispose_engines

        dispose_engines()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
