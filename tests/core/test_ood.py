"""The out-of-distribution score and its "none of these" threshold (issue 30 point 2):
the scores' formulas and shapes, the threshold that keeps 95 % of the validation images
(stored by every run's end), and the answer for an image unlike every class."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch
from PIL import Image

from core.calibration import validation_scores
from core.data.registry import load_dataset
from core.errors import ConfigError
from core.ood import MIN_OOD_IMAGES, OOD_KEEP, ood_method, ood_reference, ood_scores
from core.predict import NONE_OF_THESE, NOT_SURE, Predictor, answer_rule, predictions_csv


def test_the_scores_formulas_shapes_and_threshold():
    logits = torch.tensor([[10.0, 0.0], [0.0, 0.0], [-3.0, -3.0]])
    energy = ood_scores(logits, "energy")
    assert energy.shape == (3,)
    # Liu et al.'s free energy at T = 1: a confident, large logit is the least strange.
    assert energy.tolist() == pytest.approx([-float(torch.logsumexp(row, 0)) for row in logits])
    assert energy[0] < energy[1] < energy[2]
    top = torch.tensor([10.0, 0.0]).softmax(0).max().item()
    assert ood_scores(logits, "max_softmax").tolist() == pytest.approx([-top, -0.5, -0.5])
    assert ood_method("logits") == "energy"
    assert ood_method("logits", views=2) == ood_method("log_probs") == "max_softmax"
    with pytest.raises(ConfigError, match="energy or max_softmax"):
        ood_scores(logits, "mahalanobis")

    scores = torch.randn(1000, 4) * 3
    ref = ood_reference(scores, "energy")
    assert ref["method"] == "energy" and ref["keep"] == OOD_KEEP == 0.95 and ref["images"] == 1000
    kept = float((ood_scores(scores, "energy") <= ref["threshold"]).float().mean())
    assert kept == pytest.approx(0.95, abs=0.002)
    # Fewer than 20 validation images cannot place the 95 % threshold: refused, not guessed.
    assert MIN_OOD_IMAGES == 20 and ood_reference(scores[:20], "energy")["images"] == 20
    for few in (0, 19):
        with pytest.raises(ConfigError, match=f"held out {few} validation images: .* at least 20"):
            ood_reference(scores[:few], "energy")
    with pytest.raises(ConfigError, match=r"in \(0, 1\)"):
        ood_reference(scores, "energy", keep=1.0)


def test_every_run_stores_its_threshold_and_answers_none_of_these(digits_checkpoint):
    # The run's end fitted it on its validation split (core.train), stored in the file.
    predictor = Predictor(digits_checkpoint)
    ref = predictor.checkpoint.calibration["ood"]
    assert "temperature" not in predictor.checkpoint.calibration  # not a temperature calibration
    # mnist_cnn gives log-probabilities, whose logits' scale is lost: the top probability it is.
    assert predictor.ood_method == ref["method"] == "max_softmax" and predictor.ood_reference == ref
    scores, labels = validation_scores(predictor)
    assert ref["images"] == len(labels) > 100
    kept = float((predictor.ood(scores) <= ref["threshold"]).float().mean())
    assert abs(kept - 0.95) <= 1 / len(labels)  # 95 % of the knowns kept, to one image

    # Digits of the test split against images of no class at all: the strange ones score
    # above the digits and are answered "none of these", and say why.
    data = load_dataset("digits", predictor.preprocessing)
    digits = predictor.predict([Image.fromarray(x[0].numpy(), mode="L") for x in data.test.images[:20]])
    assert sum(p.none_of_these for p in digits) <= 4  # about 5 % of the knowns would be
    known = next(Image.fromarray(x[0].numpy(), mode="L") for x, p in zip(data.test.images[:20], digits)
                 if not p.none_of_these)
    strange = [Image.new("L", (28, 28), 128),
               Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8), mode="L")]
    digit, *others = predictor.predict([known, *strange], names=["digit.png", "grey.png", "noise.png"])
    assert not digit.none_of_these and digit.answer == digit.label
    for p in others:
        assert p.ood_score > digit.ood_score and p.ood_score > ref["threshold"]
        assert p.none_of_these and p.answer == NONE_OF_THESE and p.label in predictor.classes
        assert any("looks like none of the classes" in w and f"{ref['images']} validation images" in w
                   for w in p.warnings), p.warnings
        assert p.to_dict()["none_of_these"] is True and p.to_dict()["ood_score"] == pytest.approx(p.ood_score)
    # "none of these" comes before "not sure": a strange image is not merely unsure.
    [grey] = predictor.predict(strange[:1], min_confidence=0.99)
    assert grey.answer == NONE_OF_THESE and not grey.sure
    [digit_unsure] = predictor.predict([known], min_confidence=0.999)
    assert digit_unsure.answer == NOT_SURE

    rows = list(csv.DictReader(io.StringIO(predictions_csv([digit, *others], predictor.classes))))
    assert [r["none_of_these"] for r in rows] == ["false", "true", "true"]
    assert [r["class"] for r in rows][1:] == [NONE_OF_THESE] * 2
    assert float(rows[1]["ood_score"]) == pytest.approx(others[0].ood_score, abs=1e-5)

    # What an export's preprocess.json says, so that a deployment answers the same.
    rule = answer_rule(0.0, ref)
    assert rule["none_of_these"] == NONE_OF_THESE and rule["ood"]["threshold"] == ref["threshold"]
    assert rule["ood"]["ood_score"].startswith("minus the largest softmax probability")
    assert "none of these" in rule["rule"]

