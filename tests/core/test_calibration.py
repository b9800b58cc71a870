"""Temperature scaling (Guo et al. 2017): ECE, the fit, and where the temperature is used."""

from __future__ import annotations

import json

import pytest
import torch

from cli.main import main
from core.calibration import calibrate, expected_calibration_error, fit_temperature, reliability
from core.config import RunConfig
from core.predict import Predictor
from core.train import fit


def test_ece_of_a_perfectly_calibrated_and_of_an_overconfident_classifier():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    # Always 60 % sure of class 1, and right 60 % of the time: calibrated.
    calibrated = torch.tensor([[0.4, 0.6]] * 10)
    assert expected_calibration_error(calibrated, labels) == pytest.approx(0.0, abs=1e-6)
    # Always 99 % sure, right 60 %: ECE 0.39.
    sure = torch.tensor([[0.01, 0.99]] * 10)
    assert expected_calibration_error(sure, labels) == pytest.approx(0.39, abs=1e-6)
    bins = reliability(sure, labels)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 10 and bins[-1]["accuracy"] == pytest.approx(0.6)


def test_the_fitted_temperature_undoes_a_known_scaling():
    torch.manual_seed(0)
    logits = torch.randn(4000, 5)
    labels = torch.distributions.Categorical(logits=logits).sample()  # calibrated at T = 1 by construction
    assert fit_temperature(logits * 3.0, labels) == pytest.approx(3.0, rel=0.08)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Trained briefly: right about 85 % of the time, so over-confidence shows."""
    config = RunConfig(model="mnist_cnn", dataset="digits", iterations=12, epochs=None, batch_size=64, threads=2)
    return fit(config, tmp_path_factory.mktemp("calibration")).last_checkpoint


def test_temperature_scaling_at_least_halves_the_ece_of_an_overconfident_model(trained):
    predictor = Predictor(trained)
    head = predictor.model.get_submodule("classfier.2")
    with torch.no_grad():  # far too sure of itself: every score eight times larger
        head.weight.mul_(8.0)
        head.bias.mul_(8.0)
    result = calibrate(predictor)
    assert result.temperature > 2.0
    # Measured on the test split, which did not fit it (145 validation images in 15 bins are
    # too few for a steady ECE; there it need only not get worse).
    assert result.ece_test_after <= result.ece_test_before / 2, result.describe()
    assert result.ece_val_after <= result.ece_val_before, result.describe()
    assert result.val_images > 100 and result.test_images > 300


def test_a_recorded_temperature_is_used_by_predict_and_written_by_export(tmp_path, capsys):
    code = main(["train", "--model", "mnist_cnn", "--dataset", "digits", "--iterations", "30", "--batch-size", "64",
                 "--threads", "2", "--run-dir", str(tmp_path / "run"), "--json", "--quiet"])
    assert code == 0
    ckpt = json.loads(capsys.readouterr().out)["last_checkpoint"]
    assert Predictor(ckpt).temperature == 1.0
    code = main(["calibrate", ckpt, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    answer = json.loads(out)
    assert answer["recorded"] and answer["bins"] == 15
    predictor = Predictor(ckpt)
    assert predictor.temperature == pytest.approx(answer["temperature"])
    code = main(["export", ckpt, str(tmp_path / "w.pt")])
    capsys.readouterr()
    sidecar = json.loads((tmp_path / "w.preprocess.json").read_text())
    assert sidecar["temperature"] == pytest.approx(answer["temperature"]) and "softmax(scores / temperature)" in sidecar["probabilities"]


def test_an_operating_point_by_target_recall_is_used_by_predict_and_exports(tmp_path, capsys):
    """Two classes (shapes2: circle and star); a threshold for 'star' at 99 % recall on the
    validation split decides Predict's answers, and the export's sidecar says so."""
    from core.calibration import operating_point

    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55], [0.8, 0.2]])
    labels = torch.tensor([0, 1, 1, 1, 0])
    point = operating_point(probs, labels, 1, target_recall=1.0)
    assert point["threshold"] == pytest.approx(0.4) and point["recall"] == 1.0
    strict = operating_point(probs, labels, 1, target_precision=1.0)  # 0.4 is already never wrong here
    assert strict["threshold"] == pytest.approx(0.4) and strict["precision"] == 1.0
    labels = torch.tensor([0, 0, 1, 1, 0])  # now 0.4 is a negative: precision 1 needs 0.55
    assert operating_point(probs, labels, 1, target_precision=1.0)["threshold"] == pytest.approx(0.55)

    code = main(["train", "--model", "tiny_net", "--dataset", "shapes2", "--iterations", "20", "--batch-size", "32",
                 "--threads", "2", "--run-dir", str(tmp_path / "run"), "--json", "--quiet"])
    assert code == 0
    ckpt = json.loads(capsys.readouterr().out)["last_checkpoint"]
    code = main(["calibrate", ckpt, "--class", "star", "--target-recall", "0.99", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    stored = json.loads(out)["thresholds"]["star"]
    assert stored["recall"] >= 0.99 and stored["by"] == "recall"
    predictor = Predictor(ckpt)
    assert predictor.thresholds["star"]["threshold"] == pytest.approx(stored["threshold"])
    probabilities = {"circle": 1 - stored["threshold"], "star": stored["threshold"]}
    assert predictor.decide(probabilities) == "star"
    assert predictor.decide({"circle": 1 - stored["threshold"] / 2, "star": stored["threshold"] / 2}) == "circle"
    main(["export", ckpt, str(tmp_path / "w.pt")])
    capsys.readouterr()
    sidecar = json.loads((tmp_path / "w.preprocess.json").read_text())
    assert sidecar["thresholds"]["star"]["threshold"] == pytest.approx(stored["threshold"])
