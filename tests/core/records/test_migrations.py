"""The schema is created and upgraded by Alembic revisions, never by hand, and an older
database is upgraded in place with every row kept."""

import math

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from core.records import queries
from core.records.engine import HEAD_REVISION, current_revision, downgrade, get_engine, head_revision, make_engine, upgrade
from core.records.schema import Base


def test_a_new_database_is_created_at_the_newest_revision_matching_the_models(engine):
    # HEAD_REVISION lets get_engine skip Alembic for an up-to-date database: it must be true.
    assert current_revision(engine) == head_revision() == HEAD_REVISION == "0012"
    tables = set(inspect(engine).get_table_names())
    assert {"runs", "iteration_metrics", "metric_rollups", "eval_metrics", "checkpoints", "datasets", "run_logs"} <= tables
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def _fill_revision_1(conn) -> None:
    """Rows as imori at revision 0001 wrote them: raw SQL, since the models are newer."""
    conn.execute(
        text(
            "INSERT INTO runs (id, name, config, status, created_at, attempt, progress, step, epoch, total_steps) "
            "VALUES (7, 'old run', :config, 'succeeded', '2026-01-01 00:00:00', 1, 1.0, 300, 3, 300)"
        ),
        {"config": '{"model": "lenet5", "dataset": "digits"}'},
    )
    conn.execute(
        text(
            "INSERT INTO iteration_metrics (run_id, step, epoch, loss, accuracy, lr, wall_time) "
            "VALUES (7, :step, :epoch, :loss, :accuracy, 0.01, :t)"
        ),
        [
            {"step": s, "epoch": (s - 1) // 100 + 1, "loss": 2.0 / s if s != 150 else 50.0, "accuracy": s / 300, "t": 1e9 + s}
            for s in range(1, 301)
        ],
    )
    conn.execute(
        text(
            "INSERT INTO eval_metrics (run_id, epoch, split, step, loss, accuracy, count, wall_time) "
            "VALUES (7, 3, 'val', 300, 0.1, 0.93, 100, 1e9)"
        )
    )
    conn.execute(
        text(
            "INSERT INTO checkpoints (run_id, path, epoch, step, metrics, is_best, created_at) "
            "VALUES (7, '/runs/7/best.pt', 3, 300, '{}', :best, '2026-01-01 00:00:00')"
        ),
        {"best": True},
    )
    conn.execute(text("INSERT INTO run_logs (run_id, attempt, wall_time, message) VALUES (7, 1, 1e9, 'hello')"))
    conn.execute(
        text(
            "INSERT INTO datasets (name, kind, classes, counts, created_at, updated_at) "
            "VALUES ('newts', 'folder', '[\"a\", \"b\"]', '{}', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
    )


def test_a_database_at_revision_1_is_upgraded_keeping_every_row(db_url):
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0001")
        assert current_revision(engine) == "0001"
        with engine.begin() as conn:
            _fill_revision_1(conn)
        engine = get_engine(db_url)  # opening an older database upgrades it
        assert current_revision(engine) == HEAD_REVISION
        with engine.connect() as conn:
            counts = {
                table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                for table in ("runs", "iteration_metrics", "eval_metrics", "checkpoints", "run_logs", "datasets")
            }
        assert counts == {"runs": 1, "iteration_metrics": 300, "eval_metrics": 1, "checkpoints": 1, "run_logs": 1, "datasets": 1}
        # The new revision filled in what it added: the runs list's latest values...
        run = queries.list_runs(engine=engine)[0]
        assert run.last_loss == 2.0 / 300 and run.best_val_accuracy == 0.93
        # ...and the rollups, so the old run's series is reduced like a new one's.
        whole = queries.series(7, max_points=5000, engine=engine)
        assert whole.width == 1 and len(whole) == 300
        reduced = queries.series(7, max_points=10, engine=engine)
        assert reduced.width > 1 and len(reduced) <= 10
        assert sum(reduced.count) == 300
        assert max(reduced.loss_max) == 50.0
        # 0004: evaluations recorded before balanced accuracy existed read as unknown.
        assert [e.balanced_accuracy for e in queries.eval_series(7, engine=engine)] == [None]
        # 0005: and per-class metrics likewise.
        assert [e.per_class for e in queries.eval_series(7, engine=engine)] == [None]
        # 0006: model and dataset come out of the config JSON into searchable columns.
        old = queries.get_run(7, engine=engine)
        assert (old.model, old.dataset, old.tags, old.note) == ("lenet5", "digits", (), None)
        assert [r.id for r in queries.list_runs(where=queries.RunFilter(model="lenet5"), engine=engine)] == [7]
        assert queries.list_runs(where=queries.RunFilter(dataset="mnist"), engine=engine) == []
        expected_mean = sum(2.0 / s if s != 150 else 50.0 for s in range(1, 301)) / 300
        total = sum(m * n for m, n in zip(reduced.loss, reduced.count))
        assert math.isclose(total / 300, expected_mean, rel_tol=1e-9)
        # Down and up again keeps the rows too.
        downgrade(engine, "0001")
        upgrade(engine)
        assert queries.series(7, max_points=10, engine=engine).loss_max == reduced.loss_max
    finally:
        engine.dispose()


def test_a_database_from_a_newer_imori_is_refused_with_the_reason(tmp_path):
    import pytest

    from core.records import RecordsError
    from core.records.engine import dispose_engines

    url = f"sqlite:///{tmp_path / 'newer.db'}"
    get_engine(url)
    with make_engine(url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    dispose_engines()
    with pytest.raises(RecordsError, match="written by a newer imori .schema revision 9999; this one knows up to"):
        get_engine(url)
