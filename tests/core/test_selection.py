"""Which checkpoint a run predicts with: best.pt, unless validation held too few images of
some class to choose (issue 12.6); the import report's warning of the same."""

from __future__ import annotations

import pytest
import torch

from core import selection
from core.config import RunConfig
from core.data.report import build_report, few_validation_warning
from core.data.splits import stratified_split
from core.recorder import CheckpointInfo
from core.records import DbRecorder, store
from core.records.engine import dispose_engines, get_engine

ENOUGH = {"val_per_class": {"a": 10, "b": 12}}
FEW = {"val_per_class": {"a": 2, "b": 12}}


@pytest.fixture
def engine(tmp_path):
    yield get_engine(f"sqlite:///{tmp_path / 'imori.db'}")
    dispose_engines()


def make_run(engine, checkpoints: list[tuple[str, int, bool]]) -> int:
    run_id = store.create_run({"model": "mnist_cnn", "dataset": "digits"}, engine=engine)
    recorder = DbRecorder(run_id, store.claim_run(run_id, "test", engine=engine), engine)
    for path, step, best in checkpoints:
        recorder.on_checkpoint(CheckpointInfo(path=path, epoch=step // 10, step=step, metrics={"val_accuracy": 0.5},
                                              is_best=best))
    recorder.flush()
    return run_id


def test_too_few_validation_images_of_any_class_make_the_last_checkpoint_the_default(engine):
    run_id = make_run(engine, [("/r/ckpt-s10.pt", 10, False), ("/r/best.pt", 2, True), ("/r/ckpt-s20.pt", 20, False)])
    read: list[str] = []

    def data_of(path):
        read.append(path)
        return FEW

    path, reason = selection.default_checkpoint(run_id, data_of=data_of, engine=engine)
    assert path == "/r/ckpt-s20.pt"
    assert read == ["/r/ckpt-s20.pt"]  # the facts come from the file that may be used
    assert "fewer than 10 images" in reason and "a (2)" in reason and "b (" not in reason
    assert "last checkpoint" in reason
    choice = selection.choose_checkpoint(run_id, data_of=data_of, engine=engine)
    assert choice.rule == "last" and choice.few == {"a": 2} and choice.row.path == "/r/ckpt-s20.pt"
    assert choice.best.path == "/r/best.pt"  # still offered beside it


def test_enough_validation_images_keep_best_pt(engine):
    run_id = make_run(engine, [("/r/best.pt", 2, True), ("/r/ckpt-s20.pt", 20, False)])
    path, reason = selection.default_checkpoint(run_id, data_of=lambda p: ENOUGH, engine=engine)
    assert path == "/r/best.pt" and "best validation score" in reason


def test_unknown_facts_or_an_unreadable_file_keep_best_pt_and_one_checkpoint_is_used(engine):
    run_id = make_run(engine, [("/r/best.pt", 2, True), ("/r/ckpt-s20.pt", 20, False)])
    assert selection.default_checkpoint(run_id, data_of=lambda p: {}, engine=engine)[0] == "/r/best.pt"
    # The real reader on files that are not there: best.pt, not an error.
    assert selection.default_checkpoint(run_id, engine=engine)[0] == "/r/best.pt"
    only_last = make_run(engine, [("/r/ckpt-s20.pt", 20, False)])
    assert selection.default_checkpoint(only_last, data_of=lambda p: FEW, engine=engine)[0] == "/r/ckpt-s20.pt"
    none = make_run(engine, [])
    path, reason = selection.default_checkpoint(none, engine=engine)
    assert path is None and "no checkpoint" in reason


def test_the_threshold_and_the_validation_count_follow_the_split():
    assert selection.MIN_VAL_PER_CLASS == 10
    assert selection.default_val_fraction() == RunConfig().val_fraction
    for n in (1, 2, 5, 24, 94, 95, 96, 200):
        for fraction in (0.05, 0.1, 0.25):
            _, held = stratified_split(torch.zeros(n, dtype=torch.int64), fraction, seed=3)
            assert selection.expected_val_count(n, fraction) == len(held), (n, fraction)
    assert selection.images_needed(0.1) == 95
    assert selection.expected_val_count(95, 0.1) == 10 and selection.expected_val_count(94, 0.1) == 9
    assert selection.few_validation_images({"val_per_class": {"x": 9, "y": 10}}) == {"x": 9}
    assert selection.few_validation_images({}) == {}


def test_the_import_report_warns_when_validation_will_be_too_small():
    # Seed 000's 60-image two-class ZIP: 24 training images a class, 2 for validation.
    report = build_report(["akahara", "madara"], {"train": [0] * 24 + [1] * 24, "test": [0] * 6 + [1] * 6})
    [warning] = [w for w in report.warnings if "validation" in w]
    assert warning.startswith("validation will hold fewer than 10 images of classes 'akahara' (2 of its 24)")
    assert "the best checkpoint cannot be chosen reliably; add images" in warning and "use the last checkpoint" in warning
    big = build_report(["a", "b"], {"train": [0] * 95 + [1] * 200, "test": [0, 1]})
    assert not any("validation" in w for w in big.warnings)
    assert few_validation_warning({"a": 94, "b": 300}).startswith("validation will hold fewer than 10 images of class 'a'")
