"""Temperature scaling (Guo et al. 2017): ECE, the fit, and where the temperature is used."""

from __future__ import annotations

import json

import pytest
import torch

from cli.main import main
from core.calibration import calibrate, expected_calibration_error, fit_temperature, reliability
from core.checkpoint import load_checkpoint
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
    config = RunConfig(model="mnist_cnn", dataset="digits", iterations=12, epochs=None, batch_size=64)
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
    answer = json.loads(out)
    stored = answer["thresholds"]["star"]
    assert stored["recall"] >= 0.99 and stored["by"] == "recall"
    predictor = Predictor(ckpt)
    # With it, the "none of these" threshold (issue 30.2): 95 % of the validation images within.
    from core.calibration import validation_scores
    from core.ood import ood_scores

    ood = answer["ood"]
    assert ood["method"] == predictor.ood_method == "energy" and predictor.ood_reference == ood
    scores, labels = validation_scores(predictor)
    assert ood["images"] == len(labels) and ood["keep"] == 0.95
    assert ood["threshold"] == pytest.approx(float(ood_scores(scores, "energy").quantile(0.95)), abs=1e-4)
    assert predictor.thresholds["star"]["threshold"] == pytest.approx(stored["threshold"])
    probabilities = {"circle": 1 - stored["threshold"], "star": stored["threshold"]}
    assert predictor.decide(probabilities) == "star"
    assert predictor.decide({"circle": 1 - stored["threshold"] / 2, "star": stored["threshold"] / 2}) == "circle"
    main(["export", ckpt, str(tmp_path / "w.pt")])
    capsys.readouterr()
    sidecar = json.loads((tmp_path / "w.preprocess.json").read_text())
    assert sidecar["thresholds"]["star"]["threshold"] == pytest.approx(stored["threshold"])


def test_a_stored_precision_recall_curve_chooses_the_same_threshold_as_the_full_one():
    from core.calibration import choose_threshold, operating_point, pr_curve
    from core.errors import ConfigError

    torch.manual_seed(1)
    labels = torch.randint(0, 2, (1000,))
    scores = (labels.float() + 0.8 * torch.randn(1000)).sigmoid()
    probs = torch.stack([1 - scores, scores], dim=1)
    full = pr_curve(probs, labels, 1, max_points=2000)
    thin = pr_curve(probs, labels, 1, max_points=300)
    assert len(thin["threshold"]) == 300 and thin["threshold"][0] == full["threshold"][0]
    assert thin["threshold"][-1] == full["threshold"][-1] and thin["threshold"] == sorted(thin["threshold"])
    assert thin["positives"] == int(labels.sum()) and 0.5 < thin["average_precision"] < 1
    exact = operating_point(probs, labels, 1, target_recall=0.9)
    assert exact == choose_threshold(full, target_recall=0.9)
    near = choose_threshold(thin, target_recall=0.9)
    assert near["recall"] >= 0.9 and abs(near["recall"] - exact["recall"]) < 0.02
    with pytest.raises(ConfigError, match="one target"):
        choose_threshold(thin)
    with pytest.raises(ConfigError, match=r"in \(0, 1\]"):
        choose_threshold(thin, target_precision=1.5)


def test_jobs_find_a_learning_rate_and_refuse_an_unknown_kind():
    from core.jobs.kinds import LR_FIND, JobContext
    from core.jobs.lr_find import subject
    from core.jobs.registry import run_job

    config = RunConfig(model="lenet5", dataset="digits", optimizer="sgd", lr=1e-3, batch_size=64).to_dict()
    assert subject(config) == subject({**config, "lr": 0.5, "name": "other"})  # the lr is what is searched
    assert subject(config) != subject({**config, "batch_size": 32})
    seen = []
    found = run_job(LR_FIND, JobContext(1, subject(config), {"config": config, "num_it": 30},
                                        progress=lambda stage, share: seen.append(share)))
    assert len(found["lrs"]) == len(found["losses"]) >= 10 and 1e-7 <= found["suggestion"] <= 10
    assert seen and seen[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no job kind"):
        run_job("bake", JobContext(2, "x", {}))


def test_too_few_or_all_right_validation_images_are_refused_not_calibrated(tmp_path):
    """A temperature fitted on a handful of validation images, or on images the model gets
    all right, falls towards 0 and makes every answer read 100 %: refused with the reason."""
    from core.errors import ConfigError

    config = RunConfig(model="mnist_cnn", dataset="digits", iterations=5, epochs=None, batch_size=64,
                       val_fraction=0.01)
    few = fit(config, tmp_path / "few").last_checkpoint
    with pytest.raises(ConfigError, match=r"only \d+ validation images: too few"):
        calibrate(few)
    # Nor does the run's end place a "none of these" threshold on them (fewer than 20).
    assert load_checkpoint(few).calibration is None and Predictor(few).ood_reference is None
    # The frozen pretrained backbone on shapes2 is right on every validation image (features cached).
    perfect = RunConfig(model="efficientnet_lite0", dataset="shapes2", epochs=1, iterations=None, batch_size=64,
                        pretrained=True, freeze_backbone=True, image_size=(64, 64), optimizer="adam", lr=1e-2)
    result = fit(perfect, tmp_path / "perfect")
    assert result.best_val_accuracy == 1.0
    with pytest.raises(ConfigError, match="right on all .* validation images"):
        calibrate(result.last_checkpoint)


def test_a_calibrated_checkpoint_copied_elsewhere_answers_as_the_original(tmp_path, capsys):
    """The temperature and the operating point travel in the file (issue: a copy read on
    another machine, or from IMORI_HOME mounted elsewhere, predicted uncalibrated)."""
    import shutil

    from core.calibration import set_operating_point
    from core.checkpoint import load_checkpoint, write_calibration
    from core.records import checkpoints as checkpoint_records

    code = main(["train", "--model", "tiny_net", "--dataset", "shapes2", "--iterations", "20", "--batch-size", "32",
                 "--threads", "2", "--run-dir", str(tmp_path / "run"), "--json", "--quiet"])
    assert code == 0
    ckpt = json.loads(capsys.readouterr().out)["last_checkpoint"]
    assert main(["calibrate", ckpt, "--class", "star", "--target-recall", "0.9", "--json"]) == 0
    stored = json.loads(capsys.readouterr().out)
    deployed = tmp_path / "deploy" / "model.pt"
    deployed.parent.mkdir()
    shutil.copy(ckpt, deployed)
    assert checkpoint_records.calibration_of(str(deployed)) is None  # the records know only the original
    copy, original = Predictor(str(deployed)), Predictor(ckpt)
    assert copy.temperature == pytest.approx(stored["temperature"]) == original.temperature
    assert copy.thresholds["star"]["threshold"] == pytest.approx(stored["thresholds"]["star"]["threshold"])
    # A threshold set later on the original travels too, and clearing it as well.
    set_operating_point(ckpt, "star", target_recall=0.99)
    assert load_checkpoint(ckpt).calibration["thresholds"]["star"]["target"] == 0.99
    set_operating_point(ckpt, "star")
    assert "star" not in load_checkpoint(ckpt).calibration["thresholds"]
    # A checkpoint calibrated before files carried it still reads its record.
    assert write_calibration(ckpt, None) and load_checkpoint(ckpt).calibration is None
    assert Predictor(ckpt).temperature == pytest.approx(stored["temperature"])
    # With neither, predict says so.
    write_calibration(deployed, None)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (10, 200, 10)).save(image)
    assert main(["predict", str(image), "--checkpoint", str(deployed)]) == 0
    assert "this checkpoint carries no calibration" in capsys.readouterr().err


def test_a_target_says_how_many_images_it_rests_on_and_warns_when_too_few():
    """A 99 % recall "met" on one validation image of the class is no measurement: the
    point says how many images of the class it rests on, and warns below ~1 / (1 - target)."""
    from core.calibration import images_needed, operating_point

    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.7, 0.3]])
    labels = torch.tensor([0, 1, 0, 0])  # one image of the class
    point = operating_point(probs, labels, 1, target_recall=0.99)
    assert point["recall"] == 1.0 and point["positives"] == 1 and point["needed"] == 100
    assert "rests on 1 validation image of the class" in point["warning"] and "about 100" in point["warning"]
    assert images_needed(0.99) == 100 and images_needed(0.9) == 10 and images_needed(1.0) == 1000
    torch.manual_seed(0)
    labels = torch.tensor([0] * 50 + [1] * 150)
    scores = (labels.float() + 0.3 * torch.randn(200)).sigmoid()
    enough = operating_point(torch.stack([1 - scores, scores], 1), labels, 1, target_recall=0.99)
    assert enough["positives"] == 150 and enough["warning"] is None
