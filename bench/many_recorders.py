"""Many workers, one database: 16 recorders writing to PostgreSQL while the dashboard reads (issue 17.5).

Synthetic, no training: each recorder is a process of its own with a ``DbRecorder`` (the
worker's, with its defaults: one transaction every 0.5 s or 2,000 steps) that records
steps of its own run, either as fast as it can or at a realistic pace, for ``--seconds``.
Processes, not threads: a cluster's 16 workers are 16 processes with 16 connections, and
a recorder's flush is Python work (rows, SQLAlchemy) that threads would serialise on one
GIL, measuring the GIL instead of the database. Meanwhile one more process reads what
the dashboard reads, back to back: the Runs page (``status_counts`` + ``run_page``) and a
Run detail page for each run in turn (``get_run``, ``run_status``, ``series`` with 1,000
points, ``eval_series``, ``run_logs``), each query timed.

Phases, one after the other in this run (so their figures compare):

1. 16 recorders flat out;
2. 16 recorders at ``--rate`` steps/s each (default 50: a small model trains at 25-100
   steps/s; a recorder sleeps until its next step is due);
3. 1 recorder flat out, the reference for (1);
4. no recorder: the same reads on the same data, the reference for the latencies.

After each phase every run is checked: exactly steps 1..N in ``iteration_metrics`` (N
as the recorder counted it), the run row at step N and ``succeeded``, and each rollup
width's buckets summing to N steps. (The table's primary key (run, step) already makes a
duplicate impossible; the check is that none is missing and none is extra.)

    .venv/bin/python bench/many_recorders.py                    # about 2 minutes
    .venv/bin/python bench/many_recorders.py --seconds 5        # quick
    .venv/bin/python bench/many_recorders.py --server-url postgresql+psycopg://postgres@db-host:5432/postgres

It creates a database of its own on that server (``imori_bench_<random>``) and drops it
at the end, whatever happens. These machines have 2 cores, shared by the 16 recorders,
the reader and PostgreSQL itself: the figures are what such a crowd gets from 2 cores.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_SERVER = os.environ.get("IMORI_TEST_DATABASE_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
STEPS_PER_EPOCH = 1000


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server-url", default=DEFAULT_SERVER,
                   help="a PostgreSQL server (any database on it): the bench creates and drops its own")
    p.add_argument("--recorders", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20.0, help="length of each phase with 16 recorders")
    p.add_argument("--rate", type=float, default=50.0, help="steps/s of each recorder in the paced phase")
    return p.parse_args()


# -- the processes ---------------------------------------------------------------------------


def record(url: str, run_id: int, attempt: int, seconds: float, rate: float | None, start, out) -> None:
    """One worker's recorder: steps 1, 2, ... of run ``run_id`` until ``seconds`` have passed."""
    import math

    sys.path.insert(0, str(ROOT))
    from core.recorder import EvalMetrics, RunEnd, RunStart, StepMetrics
    from core.records import DbRecorder
    from core.records.engine import get_engine

    engine = get_engine(url)
    recorder = DbRecorder(run_id, attempt, engine)  # the worker's defaults
    flushes: list[float] = []
    flush = recorder.flush

    def timed_flush(*args, **kwargs):
        t = time.perf_counter()
        try:
            return flush(*args, **kwargs)
        finally:
            flushes.append(time.perf_counter() - t)

    recorder.flush = timed_flush
    start.wait()
    recorder.on_start(RunStart(total_steps=10**8, steps_per_epoch=STEPS_PER_EPOCH, epochs=10**5, start_step=0,
                               device="cpu", classes=[str(i) for i in range(10)], train_size=64_000, val_size=6_400,
                               test_size=10_000, model_summary={}, environment={}))  # fmt: skip
    t0 = time.monotonic()
    cpu0 = time.process_time()
    end = t0 + seconds
    step = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if rate:
            due = t0 + step / rate
            if due > now:
                time.sleep(due - now)
        step += 1
        epoch = (step - 1) // STEPS_PER_EPOCH + 1
        recorder.on_step(StepMetrics(step=step, epoch=epoch, loss=2.3 * math.exp(-step / 5000) + 0.05,
                                     accuracy=min(1.0, step / 20000), lr=1e-3, time=time.time()))  # fmt: skip
        if step % STEPS_PER_EPOCH == 0:
            for split in ("val", "test"):
                recorder.on_eval(EvalMetrics(epoch=epoch, split=split, loss=0.5, accuracy=0.9, count=1000, step=step,
                                             time=time.time()))  # fmt: skip
    recorder.on_end(RunEnd(status="succeeded", step=step, epoch=(step - 1) // STEPS_PER_EPOCH + 1))
    out.put({"run_id": run_id, "steps": step, "seconds": time.monotonic() - t0, "flushes": flushes,
             "cpu_seconds": time.process_time() - cpu0})


def poll(url: str, run_ids: list[int], seconds: float, start, out) -> None:
    """The dashboard's reads, back to back, each timed: {query: [seconds, ...]}."""
    sys.path.insert(0, str(ROOT))
    from core.records import queries
    from core.records.engine import get_engine

    engine = get_engine(url)
    times: dict[str, list[float]] = {}

    def timed(name: str, fn):
        t = time.perf_counter()
        value = fn()
        times.setdefault(name, []).append(time.perf_counter() - t)
        return value

    start.wait()
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        t = time.perf_counter()
        timed("status_counts", lambda: queries.status_counts(engine=engine))
        timed("run_page (50 a page)", lambda: queries.run_page(per_page=50, engine=engine))
        times.setdefault("Runs page (both)", []).append(time.perf_counter() - t)
        run_id = run_ids[i % len(run_ids)]
        i += 1
        t = time.perf_counter()
        timed("get_run", lambda: queries.get_run(run_id, engine=engine))
        timed("run_status", lambda: queries.run_status(run_id, engine=engine))
        timed("series (1,000 points)", lambda: queries.series(run_id, max_points=1000, engine=engine))
        timed("eval_series", lambda: queries.eval_series(run_id, engine=engine))
        timed("run_logs", lambda: queries.run_logs(run_id, limit=2000, engine=engine))
        times.setdefault("Run detail page (all five)", []).append(time.perf_counter() - t)
    out.put({"poller": times})


def postgres_cpu_s() -> float | None:
    """CPU seconds used so far by this machine's PostgreSQL: its live processes plus the
    backends the postmaster has reaped (its children's time). None when none is found."""
    tick = os.sysconf("SC_CLK_TCK")
    procs = {}  # pid -> (ppid, own seconds, reaped children's seconds)
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if not stat or not stat[stat.index("(") + 1:stat.rindex(")")].startswith("postgres"):
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state) on: see proc(5)
        utime, stime, cutime, cstime = (int(x) / tick for x in fields[11:15])
        procs[int(entry.name)] = (int(fields[1]), utime + stime, cutime + cstime)
    if not procs:
        return None
    return sum(own + (reaped if ppid not in procs else 0.0) for ppid, own, reaped in procs.values())


# -- a phase and its checks ------------------------------------------------------------------


def phase(url: str, recorders: int, seconds: float, rate: float | None, poll_ids: list[int] | None = None) -> dict:
    """``recorders`` recorder processes (each on a new run) and one poller, started
    together; returns their results, then the check of every run."""
    from core.records import store
    from core.records.engine import get_engine

    engine = get_engine(url)
    runs = []
    for i in range(recorders):
        run_id = store.create_run({"model": "mnist_cnn", "dataset": "digits", "name": f"recorder {i}"}, engine=engine)
        runs.append((run_id, store.claim_run(run_id, f"bench-{i}", engine=engine)))
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(recorders + 1)
    out = ctx.Queue()
    ids = poll_ids or [r for r, _ in runs]
    procs = [ctx.Process(target=record, args=(url, r, a, seconds, rate, start, out)) for r, a in runs]
    procs.append(ctx.Process(target=poll, args=(url, ids, seconds, start, out)))
    for proc in procs:
        proc.start()
    pg0 = postgres_cpu_s()
    results = [out.get(timeout=seconds + 300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        if proc.exitcode != 0:
            raise SystemExit(f"a bench process failed (exit {proc.exitcode})")
    pg1 = postgres_cpu_s()
    writers = [r for r in results if "run_id" in r]
    poller = next(r["poller"] for r in results if "poller" in r)
    return {"writers": writers, "poller": poller, "problems": check(engine, writers),
            "postgres_cpu_s": None if pg0 is None or pg1 is None else pg1 - pg0}


def check(engine, writers: list[dict]) -> list[str]:
    """Every run holds exactly steps 1..N, its row says N and succeeded, every rollup
    width sums to N: a list of what is wrong (empty: nothing)."""
    from sqlalchemy import text

    problems = []
    with engine.connect() as conn:
        for w in writers:
            r, n = w["run_id"], w["steps"]
            count, distinct, low, high = conn.execute(
                text("SELECT count(*), count(DISTINCT step), min(step), max(step) FROM iteration_metrics WHERE run_id = :r"),
                {"r": r},
            ).one()
            if (count, distinct, low, high) != (n, n, 1 if n else None, n if n else None):
                problems.append(f"run {r}: {count} rows, {distinct} distinct steps {low}..{high}, recorded {n}")
            status, step = conn.execute(text("SELECT status, step FROM runs WHERE id = :r"), {"r": r}).one()
            if (status, step) != ("succeeded", n):
                problems.append(f"run {r}: row says {status} at step {step}, recorded {n}")
            for width, total in conn.execute(
                text("SELECT width, sum(n) FROM metric_rollups WHERE run_id = :r GROUP BY width"), {"r": r}
            ):
                if total != n:
                    problems.append(f"run {r}: rollups of width {width} hold {total} steps, recorded {n}")
    return problems


# -- the report ------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} / {pct(values, 0.95) * 1000:.1f}"


def main() -> None:
    args = parse_args()
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from core.records.engine import dispose_engines, get_engine

    server = make_url(args.server_url)
    name = f"imori_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        version = conn.execute(text("SHOW server_version")).scalar()
    url = server.set(database=name).render_as_string(hide_password=False)
    load = [os.getloadavg()[0]]
    try:
        get_engine(url)  # migrated once here, not raced by the recorders
        n = args.recorders
        print(f"imori: {n} recorders on one PostgreSQL {version} ({server.host}), {time.strftime('%Y-%m-%d %H:%M')}, "
              f"Python {platform.python_version()}, {len(os.sched_getaffinity(0))} cores, "
              f"load {load[0]:.2f}; {args.seconds:.0f} s a phase")  # fmt: skip
        flat = phase(url, n, args.seconds, None)
        load.append(os.getloadavg()[0])
        paced = phase(url, n, args.seconds, args.rate)
        load.append(os.getloadavg()[0])
        alone = phase(url, 1, args.seconds / 2, None)
        load.append(os.getloadavg()[0])
        idle = phase(url, 0, args.seconds / 4, None, poll_ids=[w["run_id"] for w in flat["writers"]])
        idle_paced = phase(url, 0, args.seconds / 4, None, poll_ids=[w["run_id"] for w in paced["writers"]])
        load.append(os.getloadavg()[0])
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    def writes(p: dict) -> tuple[int, float, list[float], list[float]]:
        total = sum(w["steps"] for w in p["writers"])
        span = max(w["seconds"] for w in p["writers"])
        per = [w["steps"] / w["seconds"] for w in p["writers"]]
        flushes = [f for w in p["writers"] for f in w["flushes"]]
        return total, span, per, flushes

    print()
    cores = len(os.sched_getaffinity(0))
    print("| phase | steps recorded | total steps/s | per recorder steps/s (median, min .. max) | "
          "flush ms (median / p95, max) | CPU of the recorders / of PostgreSQL, share of the cores | "
          "every step once |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for label, p in ((f"{n} recorders, flat out", flat), (f"{n} recorders at {args.rate:.0f} steps/s", paced),
                     ("1 recorder, flat out", alone)):  # fmt: skip
        total, span, per, flushes = writes(p)
        cpu = sum(w["cpu_seconds"] for w in p["writers"])
        pg = "?" if p["postgres_cpu_s"] is None else f"{100 * p['postgres_cpu_s'] / (span * cores):.0f} %"
        ok = "yes" if not p["problems"] else f"NO: {'; '.join(p['problems'][:3])}"
        print(f"| {label} | {total:,} | {total / span:,.0f} | {statistics.median(per):,.0f} ({min(per):,.0f} .. "
              f"{max(per):,.0f}) | {ms(flushes)}, {max(flushes) * 1000:.0f} | "
              f"{100 * cpu / (span * cores):.0f} % / {pg} | {ok} |")  # fmt: skip
    total_flat, span_flat, _, _ = writes(flat)
    total_alone, span_alone, _, _ = writes(alone)
    print(f"\n{n} recorders flat out / 1 alone, total steps/s: "
          f"{(total_flat / span_flat) / (total_alone / span_alone):.2f}x")  # fmt: skip

    print()
    queries = list(flat["poller"])
    print(f"| the dashboard's query, ms median / p95 | {n} flat out | same runs, no writer | ratio | "
          f"{n} at {args.rate:.0f} steps/s | same runs, no writer | ratio | 1 flat out |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for q in queries:
        def pair(busy: dict, quiet: dict) -> str:
            ratio = statistics.median(busy["poller"][q]) / statistics.median(quiet["poller"][q])
            return f"{ms(busy['poller'][q])} | {ms(quiet['poller'][q])} | {ratio:.1f}x"

        print(f"| {q} | {pair(flat, idle)} | {pair(paced, idle_paced)} | {ms(alone['poller'][q])} |")
    passes = [len(p["poller"]["Run detail page (all five)"]) for p in (flat, idle, paced, idle_paced, alone)]
    print(f"\nreader passes (Runs page + one Run detail), in the columns' order: {' / '.join(map(str, passes))}; "
          f"the runs read hold {total_flat // n:,} steps each (flat out) and {writes(paced)[0] // n:,} (paced) "
          "on average")  # fmt: skip
    print(f"load average at start and after each phase: {' / '.join(f'{x:.2f}' for x in load)}")
    bad = flat["problems"] + paced["problems"] + alone["problems"]
    if bad:
        raise SystemExit(f"lost or duplicated steps: {bad[:5]}")


if __name__ == "__main__":
    main()
