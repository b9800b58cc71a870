"""Run detail: charts from the reduced series, the "not learning" notice, config, model,
log, checkpoints with downloads (only under IMORI_HOME), metrics CSV, a failed run's error."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from dashkit import app, ok, run_queued_jobs, texts, train

from core.records import checkpoints as checkpoint_records
from core.records import queries, store
from dashboard import charts, loading

DETAIL = "app_pages/run_detail.py"


def vega_charts(at) -> list:
    return [e for e in at.get("vega_lite_chart")]


def test_a_finished_run_shows_charts_tabs_and_downloads(home, broker):
    run_id = train(iterations=30)
    at = app(DETAIL, run=run_id)
    ok(at)
    assert at.selectbox(key="detail_run").value == run_id
    assert len(vega_charts(at)) == 3  # loss, accuracy, learning rate
    assert any("step 30 of 30 · 30 chart points" in t for t in texts(at.caption))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Step"] == "30 / 30" and metrics["Best val accuracy"].endswith("%")
    labels = [b.label for b in at.get("download_button")]
    assert labels.count("imori checkpoint") >= 1 and labels.count("bare state_dict") >= 1
    assert "Every iteration (CSV)" in labels and "Every evaluation (CSV)" in labels
    [config] = [d.value for d in at.dataframe if "setting" in d.value.columns]
    config = config.set_index("setting")["value"]
    assert config["model"] == "mnist_cnn" and config["iterations"] == "30"
    assert not any(queries.NOT_LEARNING in t for t in texts(at.warning))  # 30 steps: not even two epochs
    # The latest test evaluation's per-class table: one row a digit, with its support.
    [per_class] = [d.value for d in at.dataframe if "precision" in d.value.columns]
    assert list(per_class.columns) == ["class", "precision", "recall", "f1", "support"]
    assert list(per_class["class"]) == [str(i) for i in range(10)]
    test = [e for e in queries.eval_series(run_id) if e.split == "test"][-1]
    assert int(per_class["support"].sum()) == test.count
    assert any(t.startswith("**Per-class precision, recall and F1** (test split") for t in texts(at.markdown))
    # The Log tab tells the run's story: its start, each evaluation, its end.
    log = "\n".join(texts(at.code))
    assert "training on cpu:" in log and "epoch 1 val (" in log and "succeeded at step 30 (epoch 2)" in log, log
    # Calibrated, a checkpoint shows its reliability diagram, before and after.
    assert any("imori calibrate CHECKPOINT" in t for t in texts(at.caption))
    from core.calibration import calibrate
    from core.records import store

    best = [r for r in checkpoint_records.checkpoints(run_id) if r.is_best][0]
    checkpoint_records.set_calibration(best.path, calibrate(best.path).to_dict())
    at.run()
    ok(at)
    assert any(t.startswith("**Calibration of") and "expected calibration error" in t for t in texts(at.markdown))
    # An ONNX export, on a worker (done here as the worker does it), checked against PyTorch on the
    # test split, offered as a ZIP with its sidecar.
    import zipfile

    from core.jobs.kinds import EXPORT
    from core.records import jobs

    at.selectbox(key="rd_export_format").set_value("onnx")
    at.button(key="rd_export").click().run()
    ok(at)
    job = jobs.list_jobs(kind=EXPORT, limit=1)[0]
    assert job.status == "queued" and job.params == {"format": "onnx"} and job.run_id == run_id
    assert at.button(key="rd_export").disabled  # one at a time
    assert run_queued_jobs() == ["succeeded"], jobs.get_job(job.id).error
    at.run()
    ok(at)
    assert any("Checked against PyTorch: top-1 agreement 100.00 %" in t for t in texts(at.success)), texts(at.error)
    assert any(b.label.startswith("Download the onnx export") for b in at.get("download_button"))
    archive = jobs.get_job(job.id).result["zip"]
    assert sorted(zipfile.ZipFile(archive).namelist()) == ["model.onnx", "model.preprocess.json"]


def test_each_x_axis_and_log_scale_draw(home):
    run_id = train(iterations=25)
    at = app(DETAIL, run=run_id)
    for x in ("epoch", "time", "step"):
        at.button_group(key="detail_x").set_value(x).run()
        ok(at)
        assert len(vega_charts(at)) == 3
    at.toggle(key="detail_log").set_value(True)
    at.slider(key="detail_smooth").set_value(0.9).run()
    ok(at)
    assert len(vega_charts(at)) == 3


@pytest.mark.slow  # trains two runs of three epochs
def test_a_run_that_does_not_learn_gets_the_notice(home, capsys):
    # Plain SGD at a tiny learning rate: two epochs (digits: 21 steps each) and the loss stays put.
    stuck = train(model="lenet5", optimizer="sgd", lr=1e-6, loss="cross_entropy", iterations=None, epochs=3)
    at = app(DETAIL, run=stuck)
    ok(at)
    assert queries.not_learning_advice({"optimizer": "sgd"}) in texts(at.warning)  # SGD without momentum
    learns = train(lr=3e-3, iterations=None, epochs=3)
    at = app(DETAIL, run=learns)
    assert not any(queries.NOT_LEARNING in t for t in texts(at.warning))
    # The rule is the records' own: `imori show` says it too.
    from cli.main import main

    import json

    capsys.readouterr()
    assert main(["show", str(stuck), "--json"]) == 0 and json.loads(capsys.readouterr().out)["not_learning"] is True
    assert main(["show", str(stuck)]) == 0 and queries.NOT_LEARNING in capsys.readouterr().out
    assert main(["show", str(learns), "--json"]) == 0 and json.loads(capsys.readouterr().out)["not_learning"] is False


def test_a_failed_run_shows_its_error(home):
    run_id = store.create_run({"model": "mnist_cnn", "dataset": "digits", "epochs": 1})
    attempt = store.claim_run(run_id, "w")
    store.set_status(run_id, "failed", attempt=attempt, error="DatasetError: the images went away\ntraceback line")
    at = app(DETAIL, run=run_id)
    ok(at)
    assert any("This run failed" in t and "the images went away" in t for t in texts(at.error))
    assert any("No iterations recorded" in t or "recorded no iterations" in t for t in texts(at.info))


def test_the_bare_state_dict_download_loads_into_the_model(home):
    from core.models.registry import build_model

    run_id = train()
    best = checkpoint_records.best_checkpoint(run_id)
    path = loading.under_home(best.path)
    assert path is not None
    state = torch.load(io.BytesIO(loading.state_dict_reader(path)()), weights_only=True)
    build_model("mnist_cnn", 10).load_state_dict(state, strict=True)  # what the tutorial's class loads
    assert loading.file_reader(path)() == path.read_bytes()


def test_files_outside_imori_home_are_never_offered(home, tmp_path):
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(b"x")
    assert loading.under_home(outside) is None
    assert loading.under_home(Path(home) / "runs" / ".." / ".." / "etc" / "passwd") is None
    assert loading.under_home(Path(home) / "missing.pt") is None


@pytest.mark.parametrize(
    ("early", "latest", "expected"),
    [
        ([2.3, 2.3, 2.3], [2.29, 2.3, 2.31], True),  # flat
        ([2.3, 2.3, 2.3], [1.2, 0.9, 1.0], False),  # falling
        ([2.3, 2.3, 2.3], [2.0, 2.1, 9.9], False),  # one spike does not decide: medians
        ([], [1.0], False),
    ],
)
def test_stalled_compares_medians(early, latest, expected):
    assert queries.stalled(early, latest) is expected


def test_stall_windows_wait_for_two_full_epochs_or_more():
    assert queries.stall_windows(20, 20) is None  # never epoch 1 against its own start
    assert queries.stall_windows(39, 20) is None
    assert queries.stall_windows(40, 20) == ((1, 2), (21, 40))
    assert queries.stall_windows(41, 20) == ((1, 2), (21, 40))  # epoch 3 barely begun: judge epoch 2
    assert queries.stall_windows(55, 20) == ((1, 2), (41, 55))
    # Adam/AdamW or a fine-tune: three epochs (queries.stall_epochs).
    assert queries.stall_windows(55, 20, 3) is None
    assert queries.stall_windows(60, 20, 3) == ((1, 2), (41, 60))


def test_smoothing_is_a_debiased_moving_average():
    assert charts.ema([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])
    assert charts.ema([0.0, 10.0], 0.0) == [0.0, 10.0]
    smoothed = charts.ema([10.0, None, 0.0], 0.5)
    assert smoothed[1] is None and 0 < smoothed[2] < 10


def test_the_run_picker_follows_links_and_keeps_the_url_current(home):
    a, b = train(), train()
    at = app(DETAIL, run=a)
    assert at.selectbox(key="detail_run").value == a
    at.selectbox(key="detail_run").set_value(b).run()
    ok(at)
    assert at.query_params["run"] == [str(b)] or at.query_params["run"] == str(b)  # shareable
    at.query_params["run"] = str(a)  # a link to run a, followed later
    at.run()
    assert at.selectbox(key="detail_run").value == a
    assert any(f"Run {a} · " in t for t in texts(at.title))


def test_a_fine_tune_marks_where_the_backbone_joins():
    from dashboard import charts

    assert charts.phase_markers({"freeze_epochs": 2}, 30, "step") == {"all layers train": 60.0}
    assert charts.phase_markers({"freeze_epochs": 2}, 30, "epoch") == {"all layers train": 2.0}
    assert charts.phase_markers({"freeze_epochs": 0}, 30, "step") == {}
    import pandas as pd

    band = pd.DataFrame({"x": [1.0, 90.0], "value": [1.0, 0.5], "lo": [0.9, 0.4], "hi": [1.1, 0.6],
                         "series": ["train", "train"], "step": [1, 90]})
    spec = charts.line_chart(band, x_title="step", y_title="loss", markers={"all layers train": 60.0}).to_dict()
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in spec["layer"]]
    assert "rule" in marks and "text" in marks


def test_tags_and_a_note_are_edited_on_the_run_page(home):
    from core.records import store

    other = train(iterations=5)
    store.tag_runs([other], add=["baseline"])
    run_id = train(iterations=5)
    at = app(DETAIL, run=run_id)
    ok(at)
    tags = at.multiselect(key=f"detail_tags_{run_id}")
    assert "baseline" in tags.options  # tags already in use are offered
    tags.set_value(["baseline"])
    at.text_area(key=f"detail_note_{run_id}").set_value("lr 3e-3 was too high")
    at.button(key="detail_save").click().run()
    ok(at)
    run = queries.get_run(run_id)
    assert run.tags == ("baseline",) and run.note == "lr 3e-3 was too high"
    # Removing the tag and clearing the note saves too.
    at.multiselect(key=f"detail_tags_{run_id}").set_value([])
    at.text_area(key=f"detail_note_{run_id}").set_value("")
    at.button(key="detail_save").click().run()
    run = queries.get_run(run_id)
    assert run.tags == () and run.note is None
    assert queries.get_run(other).tags == ("baseline",)


def test_calibrate_on_a_worker_then_choose_an_operating_point(home, broker):
    """The Calibrate button queues a job (core.jobs); what the worker's task does fits the
    temperature and draws every class's precision-recall curve; a target recall then sets
    a threshold from the stored curve, which the Predictor uses, and Clear removes it."""
    from core.jobs.kinds import CALIBRATE
    from core.predict import Predictor
    from core.records import jobs
    from worker.tasks import execute_job

    run_id = train(iterations=30)
    at = app(DETAIL, run=run_id)
    best = at.selectbox(key="rd_calibrate_ckpt").value
    at.button(key="rd_calibrate").click().run()
    ok(at)
    job = jobs.latest_job(CALIBRATE, best)
    assert job is not None and job.status == "queued"
    assert any("waiting for a worker" in t for t in texts(at.get("progress")) + [str(p.proto.text) for p in at.get("progress")])
    assert at.button(key="rd_calibrate").disabled  # one at a time
    assert execute_job(job.id, "test-process") == "succeeded", jobs.get_job(job.id).error
    at.run()
    ok(at)
    assert any(t.startswith("**Calibration of") for t in texts(at.markdown))
    assert any(t.startswith("**Operating points**") for t in texts(at.markdown))
    stored = checkpoint_records.calibration_of(best)
    assert sorted(stored["pr_curves"]) == [str(i) for i in range(10)]
    assert Predictor(best).temperature == pytest.approx(stored["temperature"])
    key = f"rd_op_{best}"
    at.selectbox(key=f"{key}_class").set_value("3")
    at.number_input(key=f"{key}_target").set_value(90.0)
    at.button(key=f"{key}_set").click().run()
    ok(at)
    point = checkpoint_records.calibration_of(best)["thresholds"]["3"]
    assert point["recall"] >= 0.9 and point["by"] == "recall"
    assert any(t.startswith("Decides **3** when p(3) ≥") for t in texts(at.markdown))
    assert Predictor(best).thresholds["3"]["threshold"] == pytest.approx(point["threshold"])
    at.button(key=f"{key}_clear").click().run()
    ok(at)
    assert "3" not in (checkpoint_records.calibration_of(best).get("thresholds") or {})


KFOLD_NOTE = ("validation holds 40 images (under 100): the probes are compared by 5-fold cross-validation on the "
              "cached features of 200 images")


def auto_search(**changes):
    """A search record as core.auto writes it: probes compared by k-fold, one skipped, the
    most promising fine-tuned."""
    probe = dict(settings={"l2": 0.01}, seconds=20.0, status="done")
    search = {
        "candidates": [
            {"name": "linear probe: efficientnet_lite0", "backbone": "efficientnet_lite0", "val_accuracy": 0.9,
             "val_balanced_accuracy": 0.88, "cv_accuracy": 0.87, **probe},
            {"name": "linear probe: efficientnet_lite1", "backbone": "efficientnet_lite1", "val_accuracy": 0.85,
             "val_balanced_accuracy": 0.84, "cv_accuracy": 0.83, **probe},
            {"name": "linear probe: efficientnet_lite2", "backbone": "efficientnet_lite2", "settings": {},
             "val_accuracy": None, "val_balanced_accuracy": None, "seconds": 0.0,
             "status": "skipped: its features would take about 400 s"},
            {"name": "fine-tune: efficientnet_lite0", "backbone": "efficientnet_lite0",
             "settings": {"epochs": 6, "lr": 0.001}, "val_accuracy": 0.95, "val_balanced_accuracy": 0.94,
             "seconds": 200.0, "status": "done"},
        ],
        "winner": "fine-tune: efficientnet_lite0", "winner_backbone": "efficientnet_lite0",
        "reason": "efficientnet_lite0 has the best score of the probes (87.0 % by cross-validation)",
        "chosen_by": "5-fold cross-validation", "notes": [KFOLD_NOTE],
        "budget_seconds": 300.0, "elapsed_seconds": 280.0, "deadline": 0.0, "progress": 1.0,
        "phases": {"probes": 45.0, "training": 200.0, "soup": 5.0, "tta": 10.0, "test": 3.0},
        "trained_with": {"recipe": "auto", "model": "efficientnet_lite0", "lr": 1e-4, "label_smoothing": 0.1,
                         "tta_views": ["identity"]},
    }
    return {**search, **changes}


def auto_run(search: dict, *, end: str | None = "succeeded") -> int:
    """A run of recipe auto whose search was recorded as the worker's recorder records it."""
    from core.recipes import recipe_config
    from core.records import DbRecorder
    from core.recorder import RunEnd

    run_id = store.create_run(recipe_config("auto", dataset="shapes2", max_minutes=5))
    recorder = DbRecorder(run_id, store.claim_run(run_id, "test-process"))
    recorder.on_search(search)
    recorder.flush()
    if end is not None:
        recorder.on_end(RunEnd(status=end, step=0, epoch=0))
    return run_id


def test_an_automatic_run_shows_its_leaderboard_winner_reason_notes_and_minutes(home):
    at = app(DETAIL, run=auto_run(auto_search()))
    ok(at)
    [board] = [d.value for d in at.dataframe if "candidate" in d.value.columns]
    assert list(board.columns) == ["winner", "candidate", "status", "validation accuracy", "balanced",
                                   "cross-validation accuracy", "seconds", "settings"]
    assert list(board[board["winner"] == "★"]["candidate"]) == ["fine-tune: efficientnet_lite0"]
    assert board["status"].iloc[2].startswith("skipped: its features")
    assert board["cross-validation accuracy"].iloc[0] == 0.87
    assert any(t.startswith("**Winner: fine-tune: efficientnet_lite0**: efficientnet_lite0 has "
                            "the best score") for t in texts(at.success)), texts(at.success)
    # Chosen by k-fold, and the run page says so.
    assert any(t.startswith("Chosen by 5-fold cross-validation") for t in texts(at.info)), texts(at.info)
    assert any(KFOLD_NOTE in t for t in texts(at.markdown))
    assert any(t.startswith("**Where the minutes went** (4 min 40 s of a 5 min 00 s budget)") for t in texts(at.markdown))
    assert len(vega_charts(at)) == 1  # the phases' bars (no iterations recorded: no metric charts)
    # The Config tab: the run's own settings (what a clone searches again), then the winner's.
    [own, winner] = [d.value for d in at.dataframe if list(d.value.columns) == ["setting", "value"]]
    assert dict(zip(own["setting"], own["value"]))["recipe"] == "auto"
    assert dict(zip(winner["setting"], winner["value"]))["label_smoothing"] == "0.1"
    assert any(t.startswith("**What the search's winner trained with** (fine-tune: efficientnet_lite0")
               for t in texts(at.markdown))


def test_a_running_search_shows_the_whole_search_progress_eta_and_leader(home):
    import time

    probes = [{k: v for k, v in c.items() if k != "cv_accuracy"} for c in auto_search()["candidates"][:2]]
    running = {"name": "fine-tune: efficientnet_lite0", "backbone": "efficientnet_lite0", "settings": {},
               "val_accuracy": None, "val_balanced_accuracy": None, "seconds": 0.0, "status": "running"}
    search = auto_search(candidates=[*probes, running], chosen_by="validation", notes=[], progress=0.5,
                         deadline=time.time() + 150, elapsed_seconds=150.0, phases={"probes": 45.0})
    run_id = auto_run(search, end=None)
    at = app(DETAIL, run=run_id)
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["ETA (whole search)"] in ("2 min 30 s", "2 min 29 s", "2 min 28 s"), metrics
    [bar] = at.get("progress")
    assert bar.proto.text.startswith("50 % of the search's 5 min 00 s · now: fine-tune: efficientnet_lite0"), bar.proto.text
    assert any(t.startswith("**Leading: fine-tune: efficientnet_lite0**") for t in texts(at.info)), texts(at.info)
    assert not any(t.startswith("Chosen by") for t in texts(at.info))  # decided on validation: nothing to say
    [board] = [d.value for d in at.dataframe if "candidate" in d.value.columns]
    assert "cross-validation accuracy" not in board.columns
    # The next tick reads the search again: a changed leaderboard shows without reloading the page.
    from core.records import DbRecorder

    recorder = DbRecorder(run_id, queries.get_run(run_id).attempt)
    recorder.on_search({**search, "candidates": [*probes, {**running, "status": "done", "val_accuracy": 0.97}]})
    recorder.flush()
    at.run()
    [board] = [d.value for d in at.dataframe if "candidate" in d.value.columns]
    assert list(board["status"]) == ["done", "done", "done"]


def test_a_run_in_a_long_stage_shows_it_instead_of_no_iterations(home):
    """The pass over a frozen backbone's features, before the first iteration: its stage,
    counts and time left on the page, redrawn by the live part as the worker records it."""
    import time

    from core.recorder import StageProgress
    from core.records import DbRecorder

    run_id = store.create_run({"model": "efficientnet_lite0", "dataset": "digits", "freeze_backbone": True})
    recorder = DbRecorder(run_id, store.claim_run(run_id, "test-process"))
    started = time.time() - 120  # 1,200 images in 2 min: 900 left take 1 min 30 s
    recorder.on_stage(StageProgress("computing the frozen backbone's features", 1200, 2100, started=started,
                                    time=started + 120))
    at = app(DETAIL, run=run_id)
    ok(at)
    [bar] = at.get("progress")
    assert bar.proto.text == "Computing the frozen backbone's features: 1,200 / 2,100 images, about 2 min left"
    assert bar.proto.value == 57  # percent
    assert not any("No iterations recorded yet" in t for t in texts(at.info))
    # The stage ends: the next tick shows the iterations' own progress again.
    recorder.on_stage(StageProgress("computing the frozen backbone's features", 2100, 2100, started=started,
                                    finished=True))
    at.run()
    ok(at)
    [bar] = at.get("progress")
    assert not bar.proto.text.startswith("Computing") and any("No iterations recorded yet" in t for t in texts(at.info))


def test_a_watched_run_stays_live_at_a_pace_that_fits_it(home):
    """The live parts follow a running run (new iterations show on the next tick), slower
    for a slow or long run, and the charts are built again only when something new came."""
    import time

    from core.recorder import RunStart, StepMetrics
    from core.records import DbRecorder
    from dashboard import live

    run_id = store.create_run({"model": "mnist_cnn", "dataset": "digits", "epochs": 5})
    recorder = DbRecorder(run_id, store.claim_run(run_id, "test-process"))
    recorder.on_start(RunStart(total_steps=100, steps_per_epoch=20, epochs=5, start_step=0, device="cpu",
                               classes=[str(i) for i in range(10)], train_size=1280, val_size=128, test_size=128,
                               model_summary={}, environment={}))
    t0 = time.time() - 10

    def record(steps):
        for step in steps:
            recorder.on_step(StepMetrics(step, 1 + (step - 1) // 20, 2.0 / step, 0.5, 1e-3, t0 + step * 0.1, 64))
        recorder.flush()

    record(range(1, 11))
    at = app(DETAIL, run=run_id)
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Step"] == "10 / 100" and len(vega_charts(at)) == 3
    assert any("· 10 chart points" in t and "figures refreshed every 2 s" in t for t in texts(at.caption))
    record(range(11, 31))
    at.run()
    ok(at)
    assert {m.label: m.value for m in at.metric}["Step"] == "30 / 100"
    assert any("· 30 chart points" in t for t in texts(at.caption)), texts(at.caption)
    # The pace: 2 s for a short fast run, the time between iterations of a slow one, a
    # hundredth of the time left of a long one, never slower than 15 s; 5 s in a stage.
    assert live.refresh_every(10.0, 60.0) == 2.0
    assert live.refresh_every(1 / 8, 600.0) == 8.0 and live.refresh_every(1 / 60, 600.0) == 15.0
    assert live.refresh_every(5.0, 1000.0) == 10.0 and live.refresh_every(None, None, in_stage=True) == 5.0
    # The charts: with the figures for a short run (or one of unknown length), else at most
    # every 15 s, and less often where building them is slow.
    assert live.chart_every(2.0, 1.0, 60.0) == live.chart_every(2.0, 1.0, None) == 2.0
    assert live.chart_every(2.0, 0.1, 3600.0) == live.CHART_EVERY
    assert live.chart_every(2.0, 1.0, 3600.0) == 1.0 / live.CHART_SHARE



def test_an_automatic_run_won_by_a_linear_probe_says_so_not_step_0(home, capsys):
    """The trial's probe-only run read "Step 0 / Epoch 0": a probe is fitted on features, with
    no training steps; the page and `imori show` name the winner instead."""
    from cli.main import main

    probe = auto_run(auto_search(winner="linear probe: efficientnet_lite0"))
    at = app(DETAIL, run=probe)
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Winner"] == "Linear probe" and metrics["Training steps"] == "None", metrics
    assert "Step" not in metrics and "Epoch" not in metrics
    capsys.readouterr()
    assert main(["show", str(probe)]) == 0
    out = capsys.readouterr().out
    assert "linear probe: efficientnet_lite0, was fitted on features: no training steps" in out and "step 0/" not in out
    # A fine-tune that won keeps its steps and epochs.
    at = app(DETAIL, run=auto_run(auto_search()))
    ok(at)
    assert {"Step", "Epoch"} <= {m.label for m in at.metric}
