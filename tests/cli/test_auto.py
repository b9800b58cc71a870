"""``imori train --recipe auto`` on a new user's small photo set: it keeps its budget, and
its one checkpoint answers alike through ``imori predict``, the checkpoint in this process,
the Predict page and its ONNX export."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cli.main import main
from tests.photos import photo_like_folder

BUDGET_MINUTES = 0.5
ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_settings_the_search_chooses_are_refused_before_anything_runs(capsys, imori_home):
    code, out, err = run(capsys, "train", "--recipe", "auto", "--dataset", "digits", "--model", "resnet18", "--lr", "0.1")
    assert code != 0
    assert "--recipe auto chooses --lr, --model itself" in err and "Traceback" not in err
    assert not (imori_home / "runs").exists() or not any((imori_home / "runs").iterdir())  # no run recorded


@pytest.mark.slow
def test_auto_on_a_small_photo_set_keeps_its_budget_and_answers_alike_everywhere(tmp_path, capsys, imori_home):
    import onnxruntime
    import torch
    from streamlit.testing.v1 import AppTest
    from PIL import Image

    from core.export import export
    from core.predict import Predictor

    photos = photo_like_folder(tmp_path / "photos", per_class=30, size=64)
    started = time.monotonic()
    code, out, err = run(capsys, "train", "--recipe", "auto", "--dataset", photos, "--max-minutes", BUDGET_MINUTES,
                         "--json", "--quiet")
    wall = time.monotonic() - started
    assert code == 0, err
    summary = json.loads(out)
    search = summary["search"]
    # The budget is kept: the search's own clock, and the command's (plus the data's first decode).
    assert search["elapsed_seconds"] <= 1.1 * 60 * BUDGET_MINUTES
    assert wall <= 1.1 * 60 * BUDGET_MINUTES + 10
    names = [c["name"] for c in search["candidates"]]
    assert "linear probe: efficientnet_lite0" in names
    assert search["winner"] in names and search["reason"]
    # Sixty photos leave a handful for validation: the probes are compared by k-fold, and it says so.
    assert "cross-validation" in search["chosen_by"]
    assert any("cross-validation" in note for note in search["notes"])
    probe = next(c for c in search["candidates"] if c["name"] == "linear probe: efficientnet_lite0")
    assert 0.5 <= probe["cv_accuracy"] <= 1.0 and probe["seconds"] > 0
    assert summary["test"] and 0 <= summary["test"]["accuracy"] <= 1  # tested once, at the end

    code, out, _ = run(capsys, "show", summary["run_id"], "--json")
    shown = json.loads(out)
    assert shown["search"]["winner"] == search["winner"] and shown["status"] == "succeeded"
    assert shown["progress"] == 1.0 and shown["model"] == search["winner_backbone"]
    assert shown["name"] == f"auto on {photos}"  # not the placeholder model's name
    # One run, one model: best.pt is its only checkpoint, whatever validation's size.
    files = [c["path"] for c in shown["checkpoint_files"]]
    assert [Path(f).name for f in files] == ["best.pt"] and Path(summary["last_checkpoint"]).name == "best.pt"
    # The schedule fitted to the time left is the run's plan: a finished search is n/n steps.
    assert shown["total_steps"] == shown["step"]
    # The run's settings stay the search (a clone searches again); the winner's are beside them,
    # and they are what best.pt carries.
    assert shown["config"]["recipe"] == "auto"
    trained_with = search["trained_with"]
    assert trained_with["model"] == search["winner_backbone"]
    assert torch.load(summary["best_checkpoint"], weights_only=True)["config"]["model"] == trained_with["model"]
    code, out, _ = run(capsys, "show", summary["run_id"], "--config")
    assert code == 0 and "recipe: auto" in out and f"#   model: {trained_with['model']}" in out

    # One checkpoint, the same answers: imori predict, the checkpoint here, its ONNX export.
    images = sorted(photos.glob("*/*.jpg"))[::6]
    code, out, err = run(capsys, "predict", "--run", summary["run_id"], "--json", *images)
    assert code == 0, err
    answered = [row["label"] for row in json.loads(out)]
    predictor = Predictor(summary["best_checkpoint"])
    assert [p.label for p in predictor.predict(images)] == answered
    # The Predict page, with the run's default checkpoint.
    page = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    page.run()
    page.switch_page("app_pages/predict.py")
    page.query_params.update({"run": str(summary["run_id"])})
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    assert page.selectbox(key="pr_ckpt").value.endswith("best.pt")
    uploader = page.file_uploader(key="pr_images")
    for path in images:
        uploader.upload(path.name, path.read_bytes(), "image/jpeg")
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    assert [r["label"] for r in page.session_state["pr_results"]] == answered
    exported = export(summary["best_checkpoint"], tmp_path / "model.onnx", "onnx")
    assert exported.parity.passed
    sidecar = json.loads((tmp_path / "model.preprocess.json").read_text())
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    batch = torch.cat([predictor.model_input(Image.open(p).convert("RGB")) for p in images]).numpy()
    scores = session.run(None, {session.get_inputs()[0].name: batch})[0]
    assert [sidecar["classes"][i] for i in scores.argmax(1)] == answered
