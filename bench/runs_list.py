"""The runs list with 100,000 runs: one page of 50, searched and filtered (issue 13.11).

Fills a fresh database (SQLite under a temporary folder, and PostgreSQL when a URL is
given) with ``--runs`` runs of ten evaluations each (five epochs, validation and test),
as imori records them: model, dataset, status, creation time spread over a year, the
best validation and latest test figures on the runs row, tags on one run in ten. Then
times ``queries.run_page`` (the count, the page of 50 and the page's tags: what the Runs
page and `imori runs` ask) for each filter below, the median of ``--repeats`` after one
warm-up, against a target of 0.3 s; and, side by side, the unfiltered first page as
imori read it before revision 0006 (every evaluation grouped on each read, no filters).

    .venv/bin/python bench/runs_list.py                       # SQLite, 100,000 runs (about 2 minutes)
    .venv/bin/python bench/runs_list.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/runs_list.py --runs 20000          # quick

A PostgreSQL database gets a schema of its own for the run, dropped at the end.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ["mnist_cnn", "lenet5", "mynet", "resnet18", "efficientnet_lite0", "tiny_net"]
DATASETS = ["digits", "shapes", "shapes2", "newts", "leaves"]
STATUSES = ["succeeded"] * 16 + ["failed", "cancelled", "queued", "running"]
TARGET_S = 0.3


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--database-url", action="append", default=[],
                   help="a PostgreSQL server to measure too (repeatable); SQLite is always measured")
    return p.parse_args()


def fill(engine, runs: int) -> None:
    """``runs`` runs with ten evaluations each, written in large batches."""
    from sqlalchemy import insert

    from core.records.schema import SqlEvalMetric, SqlRun, SqlRunTag

    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    batch = 5000
    with engine.begin() as conn:
        for first in range(1, runs + 1, batch):
            run_rows, eval_rows, tag_rows = [], [], []
            for i in range(first, min(runs, first + batch - 1) + 1):
                model, dataset = MODELS[i % len(MODELS)], DATASETS[(i // 7) % len(DATASETS)]
                lr = [0.1, 0.01, 0.001, 0.0001][i % 4]
                vals = [rng.uniform(0.3, 0.99) for _ in range(5)]
                tests = [v - rng.uniform(0, 0.05) for v in vals]
                run_rows.append({
                    "id": i, "name": f"sweep {i // 100} lr {lr}", "config": {"model": model, "dataset": dataset, "lr": lr},
                    "status": STATUSES[(i // 3) % len(STATUSES)], "created_at": now - timedelta(minutes=(runs - i) * 5),
                    "model": model, "dataset": dataset, "step": 500, "epoch": 5, "progress": 1.0, "attempt": 1,
                    "best_val_accuracy": max(vals), "test_accuracy": tests[-1], "test_loss": 1 - tests[-1],
                    "last_loss": rng.uniform(0.01, 2), "last_accuracy": vals[-1],
                })
                for epoch in range(1, 6):
                    for split, acc in (("val", vals[epoch - 1]), ("test", tests[epoch - 1])):
                        eval_rows.append({"run_id": i, "epoch": epoch, "split": split, "step": epoch * 100,
                                          "loss": 1 - acc, "accuracy": acc, "count": 1000, "wall_time": 1.7e9 + i})
                if i % 10 == 0:
                    tag_rows.append({"run_id": i, "tag": f"sweep-{i // 1000}"})
                if i % 100 == 0:
                    tag_rows.append({"run_id": i, "tag": "paper"})
            conn.execute(insert(SqlRun), run_rows)
            conn.execute(insert(SqlEvalMetric), eval_rows)
            if tag_rows:
                conn.execute(insert(SqlRunTag), tag_rows)
    if engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with engine.begin() as conn:
            conn.execute(text("SELECT setval(pg_get_serial_sequence('runs', 'id'), (SELECT max(id) FROM runs))"))
            conn.execute(text("ANALYZE"))


def old_first_page(engine):
    """The runs list as imori read it before revision 0006: the whole runs row and its
    figures grouped from every evaluation on each read (no search, no count)."""
    from sqlalchemy import and_, func, select
    from sqlalchemy.orm import Session

    from core.records.schema import SqlEvalMetric, SqlRun

    best = (select(SqlEvalMetric.run_id, func.max(SqlEvalMetric.accuracy).label("best"))
            .where(SqlEvalMetric.split == "val").group_by(SqlEvalMetric.run_id).subquery())
    latest = (select(SqlEvalMetric.run_id, func.max(SqlEvalMetric.epoch).label("epoch"))
              .where(SqlEvalMetric.split == "test").group_by(SqlEvalMetric.run_id).subquery())
    test = SqlEvalMetric.__table__.alias("test")
    stmt = (select(SqlRun, best.c.best, test.c.accuracy, test.c.loss)
            .outerjoin(best, best.c.run_id == SqlRun.id).outerjoin(latest, latest.c.run_id == SqlRun.id)
            .outerjoin(test, and_(test.c.run_id == SqlRun.id, test.c.epoch == latest.c.epoch, test.c.split == "test"))
            .order_by(SqlRun.id.desc()).limit(50))
    with Session(engine) as session:
        return session.execute(stmt).all()


def cases(runs: int):
    from core.records.queries import RunFilter

    month = datetime.now(timezone.utc) - timedelta(days=30)
    deep = max(1, math.ceil(runs / 50) // 2)
    return [
        ("first page, no filter", RunFilter(), 1, "newest"),
        ("search a name: 'sweep 421 '", RunFilter(text="sweep 421 "), 1, "newest"),
        ("search a common word: 'lr 0.01'", RunFilter(text="lr 0.01"), 1, "newest"),
        ("status failed + model mynet", RunFilter(status=["failed"], model="mynet"), 1, "newest"),
        ("tag 'paper'", RunFilter(tags=["paper"]), 1, "newest"),
        ("created in the last 30 days", RunFilter(since=month), 1, "newest"),
        ("dataset newts, best validation first", RunFilter(dataset="newts"), 1, "best validation accuracy"),
        (f"page {deep:,} (offset {(deep - 1) * 50:,}), no filter", RunFilter(), deep, "newest"),
    ]


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(label: str, url: str, args: argparse.Namespace) -> list[str]:
    from core.records import queries
    from core.records.engine import dispose_engines, get_engine

    engine = get_engine(url)
    started = time.perf_counter()
    fill(engine, args.runs)
    filled = time.perf_counter() - started
    lines = [f"{label}: {args.runs:,} runs, {10 * args.runs:,} evaluations (filled in {filled:.0f} s)", "",
             "| query (one page of 50: count + rows + tags) | matches | median | target 0.3 s |",
             "|---|---:|---:|:--|"]
    for name, where, page, order in cases(args.runs):
        result = queries.run_page(where, page=page, per_page=50, order=order, engine=engine)
        seconds = timed(lambda: queries.run_page(where, page=page, per_page=50, order=order, engine=engine), args.repeats)
        lines.append(f"| {name} | {result.total:,} | {seconds * 1000:.1f} ms | {'met' if seconds < TARGET_S else 'MISSED'} |")
    new = timed(lambda: queries.run_page(page=1, per_page=50, engine=engine), args.repeats)
    old = timed(lambda: old_first_page(engine), max(3, args.repeats // 3))
    lines += ["", f"First page before revision 0006 (grouping every evaluation): {old * 1000:.0f} ms; "
                  f"now {new * 1000:.1f} ms: **{old / new:.0f}x** faster, side by side on the same data."]
    dispose_engines()
    return lines


def main() -> None:
    args = parse_args()
    import torch  # noqa: F401 - nothing here trains; imported so that core's imports match a real process

    from sqlalchemy import create_engine, make_url, text

    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="imori-bench-runs-") as home:
        os.environ["IMORI_HOME"] = home
        out += measure("SQLite", f"sqlite:///{Path(home) / 'imori.db'}", args)
        for server in args.database_url:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(server, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
            try:
                out += ["", *measure("PostgreSQL", url, args)]
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    print("\n".join(out))


if __name__ == "__main__":
    main()
