"""The reads the CLI and the dashboard use: runs list, reduced series that keep their
spikes, comparisons, checkpoints, CSV, datasets."""

import csv
import io
import math
import random

import pytest

from core.records import datasets as dataset_index
from core.recorder import EvalMetrics, RunEnd, StepMetrics
from core.records import DbRecorder, queries, store
from core.records.errors import RunNotFound, RunStateError
from core.records.queries import plan_reduction


def _record(engine, helpers, losses, *, max_rows=5000):
    """A finished run whose step i has loss ``losses[i - 1]``."""
    run_id, attempt = helpers.start_run(engine)
    recorder = DbRecorder(run_id, attempt, engine, flush_interval=3600, max_rows=max_rows)
    recorder.on_start(helpers.run_start(total_steps=len(losses)))
    for i, loss in enumerate(losses, start=1):
        recorder.on_step(helpers.step(i, loss=loss))
    recorder.on_end(RunEnd(status="succeeded", step=len(losses), epoch=1))
    return run_id


def _brute_force(losses, first, last):
    chunk = [v for v in losses[first - 1 : last]]
    return min(chunk), max(chunk), sum(chunk) / len(chunk)


def test_reduction_keeps_a_spike_that_a_plain_stride_drops(engine, helpers):
    n, spike_at = 20_000, 12_345
    losses = [1.0 + 0.001 * math.sin(i / 50) for i in range(1, n + 1)]
    losses[spike_at - 1] = 100.0
    run_id = _record(engine, helpers, losses)

    reduced = queries.series(run_id, max_points=100, engine=engine)
    assert 50 <= len(reduced) <= 100
    assert reduced.step_first[0] == 1 and reduced.step[-1] == n and sum(reduced.count) == n
    # The spike survives as its bucket's max; its mean moves by exactly 99 / bucket size.
    hit = next(i for i, (a, b) in enumerate(zip(reduced.step_first, reduced.step)) if a <= spike_at <= b)
    assert reduced.loss_max[hit] == 100.0 and max(reduced.loss_max) == 100.0
    for i in range(len(reduced)):
        low, high, mean = _brute_force(losses, reduced.step_first[i], reduced.step[i])
        assert (reduced.loss_min[i], reduced.loss_max[i]) == (low, high)
        assert reduced.loss[i] == pytest.approx(mean, rel=1e-12)
    # A plain stride to the same number of points never sees it.
    stride = n // len(reduced)
    assert max(losses[::stride]) < 2.0


def test_reduction_reads_rollups_and_matches_the_raw_rows_at_any_zoom(engine, helpers):
    rng = random.Random(0)
    n = 10_000
    losses = [rng.random() for _ in range(n)]
    run_id = _record(engine, helpers, losses, max_rows=777)  # flushes that straddle buckets
    for first, last, points in [(1, n, 2000), (1, n, 7), (37, 9_001, 50), (4_000, 4_100, 2000), (5, 5, 10)]:
        reduced = queries.series(run_id, step_from=first, step_to=last, max_points=points, engine=engine)
        assert 1 <= len(reduced) <= points
        assert reduced.step_first[0] <= first and reduced.step[-1] >= last
        for i in range(len(reduced)):
            low, high, mean = _brute_force(losses, reduced.step_first[i], reduced.step[i])
            assert reduced.count[i] == reduced.step[i] - reduced.step_first[i] + 1
            assert (reduced.loss_min[i], reduced.loss_max[i]) == (low, high)
            assert reduced.loss[i] == pytest.approx(mean, rel=1e-9)
    assert len(queries.series(run_id, max_points=7, engine=engine)) == 7  # from 40 rollup rows of 256 steps
    whole = queries.series(run_id, max_points=2000, engine=engine)
    assert whole.width == 5 and len(whole) == 2000  # raw rows, merged 5 by 5


def test_plan_reduction_chooses_the_finest_level_under_the_read_budget():
    assert plan_reduction(1, 2000, 2000) == (1, 1)
    assert plan_reduction(1, 8000, 2000) == (1, 4)
    assert plan_reduction(1, 1_000_000, 2000) == (256, 2)  # 3,907 rows read, 1,954 points
    for first, last, points in [(1, 10**6, 2000), (999, 123_456, 300), (7, 7, 1), (1, 10**8, 2000), (1, 2**31 - 1, 2000)]:
        width, k = plan_reduction(first, last, points)
        b0, b1 = (first - 1) // width, (last - 1) // width
        assert b1 - b0 + 1 <= 16 * points or width == 65536  # rows read
        n_points = b1 // k - b0 // k + 1
        assert n_points <= points
        assert n_points >= min(points // 2, last - first + 1) or width == 65536


def test_runs_list_with_latest_metrics_and_best_accuracy(engine, helpers):
    done, attempt = helpers.start_run(engine)
    recorder = DbRecorder(done, attempt, engine)
    recorder.on_start(helpers.run_start(total_steps=20))
    for i in range(1, 21):
        recorder.on_step(helpers.step(i))
    for epoch, (val, test) in enumerate([(0.6, 0.55), (0.8, 0.75), (0.7, 0.72)], start=1):
        recorder.on_eval(EvalMetrics(epoch=epoch, step=epoch * 5, split="val", loss=1 - val, accuracy=val, count=100))
        recorder.on_eval(EvalMetrics(epoch=epoch, step=epoch * 5, split="test", loss=1 - test, accuracy=test, count=100))
    recorder.on_end(RunEnd(status="succeeded", step=20, epoch=3))
    queued = store.create_run({"model": "lenet5", "dataset": "shapes"}, name="waiting", engine=engine)

    runs = queries.list_runs(engine=engine)
    assert [r.id for r in runs] == [queued, done]  # newest first
    first = runs[1]
    assert first.status == "succeeded" and first.progress == 1.0
    assert first.last_loss == pytest.approx(1 / 20) and first.last_accuracy == pytest.approx((20 % 7) / 7)
    assert first.best_val_accuracy == 0.8 and first.test_accuracy == 0.72  # the latest test, not the best
    assert runs[0].name == "waiting" and runs[0].model == "lenet5" and runs[0].best_val_accuracy is None
    assert [r.id for r in queries.list_runs(status="queued", engine=engine)] == [queued]
    as_json = first.to_dict()
    assert isinstance(as_json["created_at"], str) and as_json["best_val_accuracy"] == 0.8
    with pytest.raises(RunNotFound):
        queries.get_run(12345, engine=engine)


def test_compare_series_of_several_runs(engine, helpers):
    a = _record(engine, helpers, [1.0] * 100)
    b = _record(engine, helpers, [2.0] * 5000)
    both = queries.compare_series([a, b], max_points=50, engine=engine)
    assert set(both) == {a, b}
    assert both[a].loss_max == [1.0] * len(both[a]) and sum(both[a].count) == 100
    assert len(both[b]) <= 50 and set(both[b].loss) == {2.0}
    assert queries.series(999, engine=engine).step == []


def test_metrics_as_csv(engine, helpers):
    run_id = _record(engine, helpers, [0.5, float("nan"), 0.25])
    rows = list(csv.reader(io.StringIO(queries.metrics_csv(run_id, engine=engine))))
    assert rows[0] == ["step", "epoch", "loss", "accuracy", "lr", "time"]
    assert [r[0] for r in rows[1:]] == ["1", "2", "3"] and rows[2][2] == "" and float(rows[3][2]) == 0.25
    out = io.StringIO()
    queries.metrics_csv(run_id, out, kind="eval", engine=engine)
    assert out.getvalue().splitlines() == ["epoch,split,step,loss,accuracy,count,time"]


def test_cancel_a_queued_run_and_delete_runs(engine, helpers, tmp_path):
    queued = store.create_run({"model": "mnist_cnn"}, run_dir=tmp_path / "elsewhere", engine=engine)
    assert store.request_cancel(queued, engine=engine) == "cancelled"
    with pytest.raises(RunStateError):
        store.claim_run(queued, "w", engine=engine)
    running, _ = helpers.start_run(engine)
    with pytest.raises(RunStateError, match="cancel it first"):
        store.delete_run(running, engine=engine)
    assert store.request_cancel(running, engine=engine) == "running"  # flagged, its worker stops it
    assert queries.run_status(running, engine=engine) == ("running", 1, True)
    (tmp_path / "elsewhere").mkdir()
    assert store.delete_run(queued, remove_files=True, engine=engine) == str(tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere").exists()  # never a folder outside IMORI_HOME/runs
    assert [r.id for r in queries.list_runs(engine=engine)] == [running]


def test_stale_runs_and_logs(engine, helpers):
    run_id, attempt = helpers.start_run(engine)
    store.add_log(run_id, "first", engine=engine)
    store.add_log(run_id, "second", attempt=attempt, engine=engine)
    lines = queries.run_logs(run_id, engine=engine)
    assert [(line.message, line.attempt) for line in lines] == [("first", 1), ("second", 1)]
    assert [line.message for line in queries.run_logs(run_id, after_id=lines[0].id, engine=engine)] == ["second"]
    assert queries.stale_runs(60, engine=engine) == []
    assert [r.id for r in queries.stale_runs(-1, engine=engine)] == [run_id]


def test_datasets_are_recorded_once_per_name(engine):
    first = dataset_index.record_dataset("newts", "folder", ["akahara", "madara"], {"train": {"akahara": 3}}, location="/d/newts", engine=engine)
    again = dataset_index.record_dataset("newts", "zip", ["akahara", "madara"], {"train": {"akahara": 4}}, report={"skipped": []}, engine=engine)
    assert first == again
    row = dataset_index.dataset_record("newts", engine=engine)
    assert row.kind == "zip" and row.counts == {"train": {"akahara": 4}} and row.report == {"skipped": []}
    assert [d.name for d in dataset_index.dataset_records(engine=engine)] == ["newts"]
    assert dataset_index.forget_dataset("newts", engine=engine) and dataset_index.dataset_record("newts", engine=engine) is None


def test_runs_are_searched_filtered_ordered_and_paged(engine, helpers):
    """The runs list's search (issue 13.11): name, model, dataset, note, tag or id; status,
    model, dataset, tags, dates; pages of any size; ordered by a figure."""
    from datetime import datetime, timedelta, timezone

    from core.errors import ConfigError
    from core.records.queries import RunFilter

    ids = [
        store.create_run({"model": "lenet5" if i % 3 == 0 else "mnist_cnn", "dataset": "digits" if i % 2 else "shapes"},
                         name=f"sweep 100%_{i}" if i < 3 else f"run {i}", engine=engine)
        for i in range(12)
    ]
    newest_first = sorted(ids, reverse=True)
    store.tag_runs(ids[:4], add=["paper", "baseline"], engine=engine)
    store.tag_runs(ids[1:2], remove=["baseline"], engine=engine)
    store.set_note(ids[5], "  The ODD learning rate  ", engine=engine)
    store.claim_run(ids[6], "worker-a", engine=engine)  # running: the rest stay queued

    def found(**parts):
        return [r.id for r in queries.list_runs(where=RunFilter(**parts), limit=None, engine=engine)]

    assert found() == newest_first
    assert found(text="odd LEARNING") == [ids[5]]  # the note, any case
    assert queries.get_run(ids[5], engine=engine).note == "The ODD learning rate"  # trimmed
    assert found(text="100%_") == sorted(ids[:3], reverse=True)  # % and _ are plain characters
    assert ids == list(range(1, 13))  # a fresh database: run i + 1 is named "run i" (from 3 on)
    assert found(text="#9") == [9]  # "#N" is a run id
    assert found(text="9") == [10, 9]  # a bare number: the id, and names that hold it ("run 9")
    assert found(model="lenet5") == [i for i in newest_first if ids.index(i) % 3 == 0]
    assert found(model="lenet5", dataset="shapes") == [i for i in newest_first if ids.index(i) % 6 == 0]
    assert found(tags=["paper"]) == sorted(ids[:4], reverse=True)
    assert found(tags=["paper", "baseline"]) == sorted([ids[0], ids[2], ids[3]], reverse=True)  # all of them
    assert found(tags=["PAPER"]) == found(tags=["paper"])  # whatever its case
    assert queries.status_counts(RunFilter(tags=["paper"]), engine=engine) == {"queued": 4}
    assert found(text="basel") == sorted([ids[0], ids[2], ids[3]], reverse=True)  # a tag is searched too
    assert queries.run_tags(engine=engine) == {"paper": 4, "baseline": 3}
    assert queries.get_run(ids[0], engine=engine).tags == ("baseline", "paper")
    now = datetime.now(timezone.utc)
    assert found(since=now - timedelta(hours=1)) == newest_first
    assert found(until=now - timedelta(hours=1)) == []
    assert found(status=["queued"]) == [i for i in newest_first if i != ids[6]]
    assert found(status=["running"], model="lenet5") == [ids[6]]
    assert queries.count_runs(RunFilter(tags=["paper"]), engine=engine) == 4
    assert queries.status_counts(engine=engine) == {"queued": 11, "running": 1}
    assert queries.run_facets(engine=engine) == {"model": ["lenet5", "mnist_cnn"], "dataset": ["digits", "shapes"]}

    page = queries.run_page(page=2, per_page=5, engine=engine)
    assert (page.total, page.pages, page.page) == (12, 3, 2)
    assert [r.id for r in page.runs] == newest_first[5:10]
    assert queries.run_page(page=99, per_page=5, engine=engine).page == 3  # past the end: the last page
    with pytest.raises(ValueError):
        queries.run_page(page=0, engine=engine)

    with pytest.raises(ConfigError, match="no commas"):
        store.tag_runs(ids[:1], add=["a,b"], engine=engine)
    with pytest.raises(RunNotFound):
        store.tag_runs([ids[0], 10_000], add=["x"], engine=engine)
    assert "x" not in queries.run_tags(engine=engine)  # nothing changed
    store.set_note(ids[5], "", engine=engine)
    assert queries.get_run(ids[5], engine=engine).note is None
    store.delete_run(ids[0], engine=engine)
    assert queries.run_tags(engine=engine)["paper"] == 3  # a deleted run's tags go with it


def test_the_runs_list_keeps_each_runs_figures_on_its_row(engine, helpers):
    """Best validation and latest test accuracy are kept on the runs row by the recorder's
    writes (revision 0006), and follow a resumed run's rewind."""
    from core.recorder import EvalMetrics

    run_id, attempt = helpers.start_run(engine)
    recorder = DbRecorder(run_id, attempt, engine, flush_interval=3600)
    recorder.on_start(helpers.run_start())
    for epoch, (val, test) in enumerate(((0.5, 0.4), (0.8, 0.7), (0.6, 0.65)), start=1):
        recorder.on_eval(EvalMetrics(epoch=epoch, step=epoch * 5, split="val", loss=1 - val, accuracy=val, count=100))
        recorder.on_eval(EvalMetrics(epoch=epoch, step=epoch * 5, split="test", loss=1 - test, accuracy=test, count=100))
    recorder.flush()
    [row] = queries.list_runs(engine=engine)
    assert (row.best_val_accuracy, row.test_accuracy, row.test_loss) == (0.8, 0.65, pytest.approx(0.35))
    order = [r.id for r in queries.list_runs(order="best validation accuracy", engine=engine)]
    assert order == [run_id]
    with pytest.raises(ValueError):
        queries.list_runs(order="loudest", engine=engine)


def test_a_live_view_reads_a_run_in_three_statements_and_judges_learning_on_its_series(engine, helpers):
    from sqlalchemy import event

    flat = _record(engine, helpers, [2.3] * 300)  # 100 steps an epoch: three epochs of no progress
    falls = _record(engine, helpers, [2.3 / (1 + i / 10) for i in range(300)])
    statements = []

    def count(conn, cursor, statement, *args):
        if statement.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):  # SQLite's explicit BEGIN
            statements.append(statement)

    queries.live_run(flat, engine=engine)  # the pool's first connection says its pragmas
    event.listen(engine, "before_cursor_execute", count)
    try:
        now = queries.live_run(flat, engine=engine)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 3, statements
    assert now.run.step == 300 and now.run.steps_per_epoch == 100 and len(now.series) == 300
    assert now.not_learning and queries.not_learning(now.run, engine=engine)
    moving = queries.live_run(falls, engine=engine)
    assert not moving.not_learning and not queries.not_learning(moving.run, engine=engine)
    # A long run's series is reduced: the verdict holds on its bucket means too.
    assert queries.live_run(flat, max_points=20, engine=engine).not_learning


def test_a_live_tick_reads_the_series_only_when_the_run_recorded_something(engine, helpers):
    """The run page's live parts: one statement a tick while nothing new was recorded."""
    run_id, attempt = helpers.start_run(engine)
    recorder = DbRecorder(run_id, attempt, engine)
    for step in range(1, 6):
        recorder.on_step(StepMetrics(step, 1, 1.0, 0.5, 1e-3))
    recorder.flush()
    first = queries.live_run(run_id, engine=engine)
    same = queries.live_run(run_id, since=first, engine=engine)
    assert same.series is first.series and same.evals is first.evals  # nothing new: not read again
    recorder.on_step(StepMetrics(6, 1, 1.0, 0.5, 1e-3))
    recorder.flush()
    figures_only = queries.live_run(run_id, since=first, series=False, engine=engine)
    assert figures_only.run.step == 6 and figures_only.series is first.series
    fresh = queries.live_run(run_id, since=first, engine=engine)
    assert fresh.run.step == 6 and len(fresh.series) == 6


def _record_with(engine, helpers, losses, config):
    """``_record`` for a run of these settings (100 steps an epoch)."""
    run_id = store.create_run({"model": "mnist_cnn", "dataset": "digits", **config}, engine=engine)
    attempt = store.claim_run(run_id, "test-worker", engine=engine)
    recorder = DbRecorder(run_id, attempt, engine, flush_interval=3600)
    recorder.on_start(helpers.run_start(total_steps=len(losses)))
    for i, loss in enumerate(losses, start=1):
        recorder.on_step(helpers.step(i, loss=loss))
    recorder.on_end(RunEnd(status="succeeded", step=len(losses), epoch=len(losses) // 100))
    return run_id


def test_a_fine_tune_with_adamw_is_not_called_stalled_after_one_or_two_epochs(engine, helpers):
    """The new user's trial: every fine-tune (AdamW, pretrained backbone) was told after one
    epoch to raise the learning rate or add momentum. A flat loss is judged from the third
    epoch for an adaptive optimizer or a fine-tune, from the second for plain SGD, and never
    epoch 1 against itself; momentum is suggested only to SGD without it."""
    fine_tune = {"optimizer": "adamw", "pretrained": True, "model": "resnet18"}
    for epochs, judged in ((1, False), (2, False), (3, True)):
        run_id = _record_with(engine, helpers, [0.7] * (100 * epochs), fine_tune)
        assert queries.live_run(run_id, engine=engine).not_learning is judged, epochs
        assert queries.not_learning(queries.get_run(run_id, engine=engine), engine=engine) is judged, epochs
    sgd = {"optimizer": "sgd", "momentum": 0.0}
    for epochs, judged in ((1, False), (2, True)):
        run_id = _record_with(engine, helpers, [2.3] * (100 * epochs), sgd)
        assert queries.live_run(run_id, engine=engine).not_learning is judged, epochs
    # A warm-up's epochs are added: the rate was still rising.
    run_id = _record_with(engine, helpers, [2.3] * 300, {**sgd, "warmup_epochs": 1.5})
    assert not queries.live_run(run_id, engine=engine).not_learning

    advice = queries.not_learning_advice
    assert "momentum" in advice({"optimizer": "sgd", "momentum": 0.0})
    for config in ({"optimizer": "sgd", "momentum": 0.9}, {"optimizer": "adam"}, {"optimizer": "adamw"}):
        assert "momentum" not in advice(config) and "raise the learning rate" in advice(config), config
    # An automatic run is judged by what its winner trained with, not its nominal settings.
    trained = queries.trained_settings({"optimizer": "sgd"}, {"trained_with": {"optimizer": "adamw"}})
    assert queries.stall_epochs(trained) == 3 and "momentum" not in advice(trained)
    # ... its budget and recipe as asked (the winner's max_minutes is what was left of it).
    asked = {"recipe": "auto", "max_minutes": 3.0, "lr": 0.001}
    trained = queries.trained_settings(asked, {"trained_with": {"recipe": "auto", "max_minutes": 0.889802, "lr": 1e-4}})
    assert trained == {"recipe": "auto", "max_minutes": 3.0, "lr": 1e-4}
    assert queries.trained_settings(asked, {}) == asked  # not an automatic run: its own
