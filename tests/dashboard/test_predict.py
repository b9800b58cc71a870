"""Predict: a run's checkpoint or an outside one, uploaded images with probabilities that
sum to 1, bad uploads as messages, the cached model; evaluation as a job on a worker with
its confusion matrix."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from dashkit import ROOT, app, digit_png, ok, texts, train

from core.records import checkpoints as checkpoint_records
from core.records import queries
from dashboard import fmt, loading, uploads

PREDICT = "app_pages/predict.py"


@pytest.fixture(scope="module")
def run_id(broker):
    return train(iterations=40)


def predictions(at) -> list[dict]:
    return at.session_state["pr_results"]


def test_an_uploaded_image_gets_probabilities_that_sum_to_one(run_id):
    png, _ = digit_png(3)
    at = app(PREDICT, run=run_id)
    ok(at)
    assert at.selectbox(key="pr_ckpt").value.endswith("best.pt")  # the best checkpoint by default
    at.file_uploader(key="pr_images").upload("digit.png", png, "image/png").run()
    ok(at)
    [result] = predictions(at)
    assert result["error"] is None
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert set(result["probabilities"]) == {str(i) for i in range(10)}
    assert any(t.startswith(f"Predicted class: **{result['label']}**") for t in texts(at.markdown))
    assert len(at.get("vega_lite_chart")) == 1  # the top-k bars
    # Every class's probability is also listed.
    assert at.dataframe[0].value["probability"].sum() == pytest.approx(1.0, abs=1e-4)
    # Below the threshold the answer is "not sure".
    assert any("not calibrated" in t for t in texts(at.caption))
    at.slider(key="pr_not_sure").set_value(0.99).run()
    ok(at)
    top = max(result["probabilities"].values())
    answers = [t for t in texts(at.markdown) if t.startswith("Predicted class:")]
    if top < 0.99:
        assert answers[0].startswith("Predicted class: **not sure**"), answers
    else:  # surer than the highest threshold: answered
        assert answers[0].startswith(f"Predicted class: **{result['label']}**"), answers
    at.slider(key="pr_not_sure").set_value(0.0).run()
    # Grad-CAM on demand: off until asked, then the overlay beside the prediction.
    images = len(at.image)
    [why] = [t for t in at.toggle if t.label.startswith("Why?")]
    assert why.value is False
    why.set_value(True).run()
    ok(at)
    assert len(at.image) == images + 1 and f"HiResCAM for {result['label']}" in str(at.image[-1].proto)


def test_several_images_at_once_and_a_corrupt_one_gets_a_message(run_id):
    a, _ = digit_png(0)
    b, _ = digit_png(1)
    at = app(PREDICT, run=run_id)
    uploader = at.file_uploader(key="pr_images")
    uploader.upload("a.png", a, "image/png").upload("broken.png", b"\x89PNG\r\n\x1a\n garbage", "image/png")
    uploader.upload("b.png", b, "image/png")
    at.run()
    ok(at)
    results = predictions(at)
    assert [r["source"] for r in results] == ["a.png", "b.png"]  # judged by its content, broken.png is refused
    assert not results[0]["error"] and not results[1]["error"]
    assert any("broken.png was refused: not an image file Pillow can read" in t for t in texts(at.error)), texts(at.error)
    assert any("2 of 3 images classified" in t for t in texts(at.caption))  # the refused one counts
    # Classify many: a table of the answers, and every probability as CSV.
    [table] = [d.value for d in at.dataframe if "confidence" in d.value.columns]
    assert list(table["file"]) == ["a.png", "b.png"] and list(table["class"]) == [r["label"] for r in results]
    assert any(b.label == "All predictions (CSV)" for b in at.get("download_button"))


def test_a_picture_from_the_camera_is_classified(run_id):
    from PIL import Image

    png, _ = digit_png(4)
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").resize((640, 480)).save(jpeg, format="JPEG")
    at = app(PREDICT, run=run_id)
    assert not at.camera_input  # the browser asks for the camera only when the user wants it
    at.toggle(key="pr_camera_on").set_value(True).run()
    at.camera_input(key="pr_camera").upload("photo.jpg", jpeg.getvalue()).run()
    ok(at)
    [result] = predictions(at)
    assert result["source"] == "camera" and result["error"] is None
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_a_file_of_another_kind_is_refused_with_a_message(run_id):
    at = app(PREDICT, run=run_id)
    at.file_uploader(key="pr_images").upload("notes.exe", b"MZ\x00\x00", "application/octet-stream").run()
    ok(at)
    assert any("refused" in t for t in texts(at.error))


def test_an_image_over_the_size_limit_is_refused_on_the_server(run_id, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_IMAGE_BYTES", 1000)
    png, _ = digit_png(0)
    big = png + b"\0" * 2000  # trailing bytes: still a PNG, but over the limit
    at = app(PREDICT, run=run_id)
    at.file_uploader(key="pr_images").upload("big.png", big, "image/png").run()
    ok(at)
    assert any("may be at most" in t for t in texts(at.error))
    assert not at.session_state["pr_results"] if "pr_results" in at.session_state else True


def test_the_model_is_loaded_once_and_cached(run_id):
    path = checkpoint_records.best_checkpoint(run_id).path
    first = loading.cached_predictor(path)
    assert loading.cached_predictor(path) is first  # a second upload answers without loading it again
    png, _ = digit_png(0)
    threads = torch.get_num_threads()
    try:
        [result] = loading.predict(first, [png], ["a.png"])
        assert result.label is not None
        assert torch.get_num_threads() == 1  # the dashboard predicts on one thread; workers train
    finally:
        torch.set_num_threads(threads)


def test_an_outside_bare_state_dict_predicts_with_its_model_and_class_names(home, tmp_path):
    from core.models.registry import build_model

    # What seed 004's script saves: torch.save(net.state_dict(), ...) of its 3x3-kernel LeNet.
    buffer = io.BytesIO()
    torch.save(build_model("lenet5", 10, options={"kernel": 3}).state_dict(), buffer)
    names = "zero, one, two, three, four, five, six, seven, eight, nine"
    at = app(PREDICT)
    at.button_group(key="pr_source").set_value("an upload").run()
    at.file_uploader(key="pr_ckpt_upload").upload("lenet.pt", buffer.getvalue(), "application/octet-stream").run()
    assert any("does not say which model" in t for t in texts(at.error))  # a bare state_dict needs its model
    at.selectbox(key="pr_model").set_value("lenet5").run()
    at.selectbox(key="pr_opt_lenet5_kernel").set_value(3)
    at.text_input(key="pr_classes").set_value(names).run()
    ok(at)
    assert not at.error, texts(at.error)
    assert any("**lenet5** · 10 classes" in t and "28x28" in t for t in texts(at.caption))
    png, _ = digit_png(2)
    at.file_uploader(key="pr_images").upload("digit.png", png, "image/png").run()
    ok(at)
    [result] = predictions(at)
    assert list(result["probabilities"]) == [n.strip() for n in names.split(",")]
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not a checkpoint", "not a PyTorch checkpoint"),
        ("whole-model", "whole pickled model"),
    ],
)
def test_a_bad_checkpoint_upload_gets_a_message(home, content, expected):
    if content == "whole-model":
        buffer = io.BytesIO()
        torch.save(torch.nn.Linear(2, 2), buffer)  # torch.save(model): refused, never unpickled
        content = buffer.getvalue()
    at = app(PREDICT)
    at.button_group(key="pr_source").set_value("an upload").run()
    at.file_uploader(key="pr_ckpt_upload").upload("cnn.pt", content, "application/octet-stream").run()
    ok(at)
    assert any(expected in t for t in texts(at.error)), texts(at.error)


def confusion_shown(at) -> bool:
    return any("Confusion matrix" in t for t in texts(at.markdown))


def test_evaluation_is_queued_for_a_worker_and_shows_a_confusion_matrix(run_id):
    from core.records import jobs
    from worker.tasks import execute_job

    at = app(PREDICT, run=run_id)
    at.button(key="pr_evaluate").click().run()
    ok(at)
    eval_id = at.session_state["pr_eval_pick"]
    job = jobs.get_job(eval_id)
    assert job.status == "queued" and job.kind == "evaluate" and job.run_id == run_id  # waits for a worker
    assert any("waiting for a worker" in p.proto.text for p in at.get("progress"))
    assert execute_job(eval_id, "test-process") == "succeeded"  # what the worker's task does
    at.run()
    ok(at)
    assert confusion_shown(at)
    result = jobs.get_job(eval_id).result
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy"] == fmt.pct(result["accuracy"], 2) and metrics["Images"] == f"{result['count']:,}"
    assert len(at.get("vega_lite_chart")) >= 2  # heat map and per-class accuracy
    assert metrics["Balanced accuracy"] == fmt.pct(result["balanced_accuracy"], 2)
    [table] = [d.value for d in at.dataframe if "precision" in d.value.columns]
    assert list(table.columns) == ["class", "precision", "recall", "f1", "support"]
    assert table["support"].sum() == result["count"]
    first = result["class_metrics"][table["class"][0]]
    assert table.iloc[0][["precision", "recall", "f1"]].tolist() == pytest.approx([first["precision"], first["recall"], first["f1"]])
    mistakes = result["misclassified"]
    shown = [t for t in texts(at.caption) if t.startswith("true **")]
    assert len(shown) == min(len(mistakes), 48)
    if mistakes:  # most confident first, with what was predicted
        m = mistakes[0]
        assert shown[0].startswith(f"true **{m['true']}** → **{m['predicted']}**")
        assert len(at.image) >= len(shown)
    # A cell of the matrix opens its images, the most confident first; the most confused pairs are listed.
    from core.metrics import most_confused

    pairs = most_confused(result["confusion"], [str(c) for c in result["classes"]])
    cell = at.selectbox(key=f"pr_cell_{eval_id}")
    assert cell.options[0] == "—" and len(cell.options) > 1
    if pairs:
        true, predicted, count = pairs[0]
        assert any(f"{true} → {predicted}: {count}" in t for t in texts(at.markdown))
    else:
        true = predicted = str(result["classes"][0])
        count = result["confusion"][0][0]
    cell.set_value(f"{true} → {predicted}").run()
    ok(at)
    assert any(t.startswith(f"**{true} → {predicted}**: {count:,} image" + ("" if count == 1 else "s")) for t in texts(at.markdown))
    images = len(at.image)
    at.toggle(key=f"pr_cell_{eval_id}_cam").set_value(True).run()
    ok(at)
    assert len(at.image) == images  # the same images, with their Grad-CAM maps
    if mistakes:  # and the mistakes gallery's, on demand
        at.toggle(key=f"pr_mistakes_cam_{eval_id}").set_value(True).run()
        ok(at)
        assert len(at.image) == images


@pytest.mark.slow
def test_evaluation_and_calibration_run_on_a_real_worker_process(run_id, home):
    """The whole path: the button, Redis, an `imori worker` process, the records, the page;
    for an evaluation, then for calibrating the checkpoint (a job of core.jobs)."""
    from core.jobs.kinds import CALIBRATE
    from core.records import jobs
    from worker.presence import live_workers

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(home / "worker.log", "w")
    worker = subprocess.Popen([sys.executable, "-m", "cli", "worker", "--name", "dash-eval"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any(w.name == "dash-eval" for w in live_workers()):
            assert worker.poll() is None and time.monotonic() < deadline, (home / "worker.log").read_text()
            time.sleep(0.3)
        at = app(PREDICT, run=run_id)
        at.selectbox(key="pr_eval_dataset").set_value("digits")
        at.button(key="pr_evaluate").click().run()
        eval_id = at.session_state["pr_eval_pick"]
        while jobs.get_job(eval_id).status in ("queued", "running"):
            assert time.monotonic() < deadline, (home / "worker.log").read_text()
            time.sleep(0.3)
        row = jobs.get_job(eval_id)
        assert row.status == "succeeded", row.error
        assert row.worker and row.worker.startswith("dash-eval")
        at.run()
        ok(at)
        assert confusion_shown(at)
        assert any("Probabilities as trained" in t for t in texts(at.caption))
        at.button(key="pr_calibrate").click().run()
        ok(at)
        [job] = jobs.list_jobs(kind=CALIBRATE, limit=1)
        while jobs.get_job(job.id).status in ("queued", "running"):
            assert time.monotonic() < deadline, (home / "worker.log").read_text()
            time.sleep(0.3)
        done = jobs.get_job(job.id)
        assert done.status == "succeeded" and done.worker.startswith("dash-eval"), done.error
        at.run()
        ok(at)
        assert any(t.startswith("Probabilities are calibrated: temperature") for t in texts(at.caption)), texts(at.caption)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)


def test_a_decompression_bomb_upload_gets_a_message(run_id):
    """A small PNG that claims a huge size: refused by Pillow's limit, shown as a message."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    side = 14_000  # 196 Mpixels, over Pillow's limit (178,956,970), in a few bytes
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)) + chunk(b"IEND", b"")
    at = app(PREDICT, run=run_id)
    at.file_uploader(key="pr_images").upload("bomb.png", bomb, "image/png").run()
    ok(at)
    assert any("too large" in t or "decompression" in t for t in texts(at.error) + texts(at.warning)), texts(at.error)


# -- issue 12.6: small validation sets; 12.7: what the model sees ------------------------------


@pytest.fixture(scope="module")
def small_val_run(home):
    """Digits with 5 % held out: 7 validation images a class, too few to choose best.pt."""
    return train(iterations=4, val_fraction=0.05)


def test_too_few_validation_images_make_the_last_checkpoint_the_default_with_its_own_metrics(small_val_run):
    last = checkpoint_records.latest_checkpoint(small_val_run)
    best = checkpoint_records.best_checkpoint(small_val_run)
    at = app(PREDICT, run=small_val_run)
    ok(at)
    assert at.selectbox(key="pr_ckpt").value == last.path != best.path
    [why] = [t for t in texts(at.warning) if "Validation cannot choose" in t]
    assert "fewer than 10 images" in why and "0 (7)" in why and "the last checkpoint is used" in why
    assert any(t.startswith(f"Using **{os.path.basename(last.path)}**: epoch {last.epoch}, step {last.step}")
               for t in texts(at.markdown))
    shown = {m.label: m.value for m in at.metric}
    assert shown == {
        "Validation accuracy": fmt.pct(last.metrics["val_accuracy"]),
        "Validation loss": fmt.num(last.metrics["val_loss"]),
        "Test accuracy": fmt.pct(last.metrics["test_accuracy"]),
        "Test loss": fmt.num(last.metrics["test_loss"]),
    }
    # best.pt is offered beside it; choosing it shows best.pt's own metrics.
    at.button(key="pr_use_best").click().run()
    ok(at)
    assert at.selectbox(key="pr_ckpt").value == best.path
    assert any(t.startswith("Using **best.pt**") for t in texts(at.markdown))
    assert {m.label: m.value for m in at.metric}["Test loss"] == fmt.num(best.metrics["test_loss"])
    at.button(key="pr_use_last").click().run()
    assert at.selectbox(key="pr_ckpt").value == last.path


def test_enough_validation_images_keep_best_pt_as_the_default_and_offer_the_last(run_id):
    at = app(PREDICT, run=run_id)
    ok(at)
    assert at.selectbox(key="pr_ckpt").value == checkpoint_records.best_checkpoint(run_id).path
    assert not any("Validation cannot choose" in t for t in texts(at.warning))
    assert any("best validation score" in t for t in texts(at.caption))
    assert not at.button(key="pr_use_last").disabled and at.button(key="pr_use_best").disabled


def test_an_inverted_upload_gets_the_polarity_warning_and_can_be_inverted(run_id):
    from PIL import Image, ImageOps

    png, _ = digit_png(3)
    paper = io.BytesIO()  # dark ink on light paper, photographed at 300x300
    ImageOps.invert(Image.open(io.BytesIO(png)).convert("L")).resize((300, 300)).save(paper, format="PNG")
    at = app(PREDICT, run=run_id)
    at.file_uploader(key="pr_images").upload("paper.png", paper.getvalue(), "image/png").run()
    ok(at)
    [before] = predictions(at)
    assert not before["inverted"] and before["input_brightness"] > 0.5
    assert any("paper.png looks inverted" in t for t in texts(at.warning))
    assert any("300x300" in t and "usual size (28x28)" in t for t in texts(at.warning))
    captions = [c for image in at.image for c in image.captions]
    assert "paper.png: 300x300, 1 channel (L)" in captions and "what the model sees: 28x28, grayscale" in captions
    [invert] = [c for c in at.checkbox if str(c.key).startswith("pr_invert_")]
    invert.check().run()
    ok(at)
    [after] = predictions(at)
    assert after["inverted"] and after["input_brightness"] < 0.5  # the model now gets light strokes on dark
    assert not any("looks inverted" in w for w in after["warnings"])
    assert after["probabilities"] != before["probabilities"]
    assert "what the model sees: 28x28, grayscale, inverted" in [c for image in at.image for c in image.captions]


# -- issue 13.5-13.7: what Pillow opens is an image, a 108-megapixel photo, float TIFFs ---------


def test_whatever_pillow_opens_is_classified_whatever_its_name(run_id):
    """newt.jfif (an ordinary JPEG), an iPhone HEIC, a PNG without extension, a 0..1 float
    TIFF and a 108-megapixel phone photo: all accepted by content, like imori predict."""
    import numpy as np
    from PIL import Image

    from core.data.formats import upload_types

    png, _ = digit_png(2)
    digit = Image.open(io.BytesIO(png))
    files = {}
    for name, kind, image in (
        ("newt.jfif", "JPEG", digit.convert("RGB")),
        ("IMG_0001.HEIC", "HEIF", digit.convert("RGB")),
        ("scan.tif", "TIFF", Image.fromarray(np.asarray(digit, dtype=np.float32) / 255.0)),
        ("phone.jpg", "JPEG", Image.new("RGB", (12000, 9000), (30, 30, 30))),
    ):
        buffer = io.BytesIO()
        image.save(buffer, kind, **({"quality": 10} if name == "phone.jpg" else {}))
        files[name] = buffer.getvalue()
    files["digit"] = png
    at = app(PREDICT, run=run_id)
    uploader = at.file_uploader(key="pr_images")
    assert {"jfif", "heic", "tif", "webp", "avif"} <= set(upload_types())
    for name, data in files.items():
        uploader.upload(name, data, "application/octet-stream")
    at.run()
    ok(at)
    results = predictions(at)
    assert [r["source"] for r in results] == list(files) and [r["error"] for r in results] == [None] * 5, texts(at.error)
    captions = [c for image in at.image for c in image.captions]
    assert any(c.startswith("phone.jpg: 12000x9000") for c in captions), captions  # its size as taken
    assert any("phone.jpg is 12000x9000" in t for t in texts(at.warning))  # far larger than the training images
    floats = results[2]
    assert floats["input_brightness"] > 0.05  # the float picture, not black


# -- issue 34.5-34.7: unlike the training images, the operating point everywhere, state per run --


def test_a_colour_photo_is_unlike_the_training_images_and_offers_no_invert(run_id):
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))
    from photos import scene

    photo = io.BytesIO()
    scene(np.random.default_rng(5), "discs", size=28).save(photo, format="PNG")  # RGB, colourful
    at = app(PREDICT, run=run_id)
    at.file_uploader(key="pr_images").upload("portrait.png", photo.getvalue(), "image/png").run()
    ok(at)
    warnings = texts(at.warning)
    assert warnings and "portrait.png is a colour image" in warnings[0] and "unlike the training images" in warnings[0]
    assert not any("inverted" in w for w in warnings)
    assert not [c for c in at.checkbox if str(c.key).startswith("pr_invert_")]  # no invert offered for a photo


def test_the_operating_point_decides_the_headline_the_bars_and_a_second_evaluation(run_id):
    import pyarrow as pa

    from core.checkpoint import write_calibration
    from core.records import jobs
    from worker.tasks import execute_job

    png, _ = digit_png(3)
    at = app(PREDICT, run=run_id)
    path = at.selectbox(key="pr_ckpt").value
    at.file_uploader(key="pr_images").upload("digit.png", png, "image/png").run()
    [plain] = predictions(at)
    ranked = sorted(plain["probabilities"].items(), key=lambda kv: -kv[1])
    cls, p = ranked[1]  # the second likeliest, decided by a threshold just under its probability
    threshold = round(p * 0.9, 4)
    try:
        write_calibration(path, {"temperature": 1.0, "thresholds": {cls: {"threshold": threshold, "recall": 0.95,
                                                                          "precision": 0.5}}})
        at = app(PREDICT, run=run_id)
        at.file_uploader(key="pr_images").upload("digit.png", png, "image/png").run()
        ok(at)
        [decided] = predictions(at)
        assert decided["label"] == cls != ranked[0][0]
        [headline] = [t for t in texts(at.markdown) if t.startswith("Predicted class:")]
        assert headline.startswith(f"Predicted class: **{cls}**") and \
            f"by the operating point: {cls} when p({cls}) ≥ {threshold:.3f}" in headline, headline
        chart = at.get("vega_lite_chart")[0].proto
        frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.datasets] + \
            ([pa.ipc.open_stream(chart.data.data).read_all().to_pandas()] if chart.data.data else [])
        [bars] = [f for f in frames if "chosen" in f.columns]
        assert list(bars["class"][bars["chosen"]]) == [cls]  # the green bar is the answer
        assert f"threshold for {cls}" in chart.spec  # and the line marks where it decides
        # An evaluation now reports both, labelled.
        at.button(key="pr_evaluate").click().run()
        eval_id = at.session_state["pr_eval_pick"]
        assert execute_job(eval_id, "test-process") == "succeeded"
        at.run()
        ok(at)
        result = jobs.get_job(eval_id).result
        assert result["operating_point"]["rule"] == f"{cls} if p({cls}) ≥ {threshold:.3f}"
        shown = texts(at.markdown)
        assert "**By the top class** (each image's likeliest class)" in shown
        assert any(t.startswith(f"**With the operating point: {cls} if p({cls}) ≥ {threshold:.3f}**") for t in shown)
        accuracy = [m.value for m in at.metric if m.label == "Accuracy"]
        assert accuracy == [fmt.pct(result["accuracy"], 2), fmt.pct(result["operating_point"]["accuracy"], 2)]
    finally:
        write_calibration(path, None)


def test_evaluate_s_dataset_follows_the_chosen_run(run_id):
    other = train(model="tiny_net", dataset="shapes2", iterations=2, batch_size=16)
    at = app(PREDICT, run=run_id)
    assert at.selectbox(key="pr_eval_dataset").value == "digits"
    at.selectbox(key="pr_run").set_value(other).run()
    ok(at)
    assert at.selectbox(key="pr_eval_dataset").value == "shapes2"  # not the previous run's digits
    at.selectbox(key="pr_eval_dataset").set_value("digits").run()  # a choice stays while the run does
    at.run()
    assert at.selectbox(key="pr_eval_dataset").value == "digits"
    at.selectbox(key="pr_run").set_value(run_id).run()
    ok(at)
    assert at.selectbox(key="pr_eval_dataset").value == "digits"
    at.selectbox(key="pr_run").set_value(other).run()
    assert at.selectbox(key="pr_eval_dataset").value == "shapes2"


def test_the_image_uploader_names_the_common_kinds_not_forty_extensions(run_id):
    at = app(PREDICT, run=run_id)
    uploader = at.file_uploader(key="pr_images")
    assert uploader.label.startswith("Images: JPEG, PNG, TIFF, BMP, WebP, HEIC, …")
    assert list(uploader.proto.type) == []  # no extension list under the box: the server judges the content
