"""core.diff: two checkpoints compared image by image, McNemar's exact test on what they
disagree about (issue 30, point 1)."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from core.config import RunConfig
from core.diff import Side, compare, mcnemar_exact, settings_diff
from core.errors import ImoriError
from core.jobs.diff import diff
from core.train import fit


def side(label, keys, truth, predicted, settings=None):
    return Side(label=label, checkpoint=f"{label}.pt", keys=keys, paths=[f"img/{k}.png" for k in keys], truth=truth,
                predicted=predicted, confidence=[0.5 + 0.01 * i for i in range(len(keys))], settings=settings or {})


def test_images_meet_by_hash_and_fall_into_fixed_broken_and_both_wrong():
    # A and B drew their splits differently: "e" only in A's, "f" only in B's; "c" twice.
    a = side("A", ["a", "b", "c", "c", "d", "e"], list("xyxyxy"), list("xxyyxy"), {"lr": 0.1, "seed": 0, "name": "r1"})
    b = side("B", ["f", "d", "c", "c", "b", "a"], list("xxxyyx"), list("yxxyyy"), {"lr": 0.2, "seed": 0, "name": "r2"})
    result = compare(a, b, dataset="toy")
    path = lambda group: sorted(e["path"] for e in group)  # noqa: E731
    assert result.matched == 5
    assert path(result.only_a) == ["img/e.png"] and path(result.only_b) == ["img/f.png"]
    assert path(result.fixed) == ["img/b.png", "img/c.png"]  # b: A said x for a y; the first c: A said y for an x
    assert path(result.broken) == ["img/a.png"]  # B says y for an x
    assert path(result.both_wrong) == []  # the second c and d: both right
    b_image = next(e for e in result.fixed if e["path"] == "img/b.png")
    assert b_image["truth"] == "y" and b_image["a"]["class"] == "x" and b_image["b"]["class"] == "y"
    assert len(result.fixed) - len(result.broken) == result.b_correct - result.a_correct
    assert (result.a_correct, result.b_correct) == (3, 4)
    assert result.p_value == pytest.approx(binomtest(1, 3, 0.5).pvalue)
    assert result.settings == {"lr": [0.1, 0.2]}  # the run's name is not a setting
    assert result.to_dict()["only_b"][0]["a"] is None
    same = compare(a, a)  # against itself: nothing fixed or broken, p = 1
    assert same.fixed == same.broken == [] and same.p_value == 1.0 and same.a_correct == same.b_correct == 4


def test_mcnemar_is_one_without_disagreements_and_refuses_negative_counts():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 17) == pytest.approx(binomtest(3, 20, 0.5).pvalue)
    assert mcnemar_exact(3, 17) == mcnemar_exact(17, 3) < 0.01
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)
    assert settings_diff({"a": 1}, {"a": 1, "b": 2}) == {"b": [None, 2]}


def test_two_digits_checkpoints_diff_on_their_test_split(digits_checkpoint, tmp_path):
    longer = fit(RunConfig(model="mnist_cnn", dataset="digits", iterations=30, epochs=None, batch_size=64),
                 tmp_path / "longer").last_checkpoint
    result = diff(str(digits_checkpoint), str(longer))
    listed = result.fixed + result.broken + result.both_wrong
    # The same built-in test split on both sides: every image meets its twin.
    assert result.only_a == result.only_b == [] and result.matched > 300
    assert all(e["path"].startswith("digits:test/") for e in listed)
    assert all(e["a"]["class"] != e["truth"] for e in result.fixed + result.both_wrong)
    assert all(e["b"]["class"] == e["truth"] for e in result.fixed)
    assert all(e["a"]["class"] == e["truth"] != e["b"]["class"] for e in result.broken)
    assert len(result.fixed) - len(result.broken) == result.b_correct - result.a_correct
    assert result.b_correct > result.a_correct  # 30 steps learn more than 12
    assert result.p_value == pytest.approx(binomtest(min(len(result.fixed), len(result.broken)),
                                                     len(result.fixed) + len(result.broken), 0.5).pvalue)
    assert result.settings == {"iterations": [12, 30]}


def test_a_bad_reference_is_a_clear_error(digits_checkpoint, tmp_path):
    with pytest.raises(ImoriError, match="neither a run id nor a checkpoint file"):
        diff(str(tmp_path / "missing.pt"), str(digits_checkpoint))
    with pytest.raises(ImoriError, match="split must be"):
        diff(str(digits_checkpoint), str(digits_checkpoint), split="val")
