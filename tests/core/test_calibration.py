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
