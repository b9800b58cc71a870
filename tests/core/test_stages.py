"""Long stages outside the iterations (``core.recorder.Stage``): a frozen backbone's feature
pass and a dataset's decoding tell their stage, how far they are, and their time left."""

from __future__ import annotations

import pytest

from core.config import RunConfig
from core.recorder import MemoryRecorder, Stage, StageProgress
from core.train import Trainer

# A pretrainable backbone at its smallest size, frozen, its weights random, on 48 digits a
# split in batches of 16: the feature pass is the stage, in a second or two.
FROZEN = dict(model="efficientnet_lite0", dataset="digits", image_size=(32, 32), freeze_backbone=True,
              pretrained=False, epochs=1, batch_size=16, eval_batch_size=16, device="cpu")


def tiny_trainer(folder, recorder=None) -> Trainer:
    trainer = Trainer(RunConfig(**FROZEN), folder, recorder)
    for split in ("train", "val", "test"):
        setattr(trainer, f"{split}_x", getattr(trainer, f"{split}_x")[:48])
    return trainer


def test_the_frozen_backbone_feature_pass_reports_its_stage_with_growing_counts(tmp_path, monkeypatch):
    monkeypatch.setattr(Stage, "EVERY", 0.0)  # every batch, so the test sees the counts move
    recorder = MemoryRecorder()
    trainer = tiny_trainer(tmp_path / "run", recorder)
    total = 3 * 48
    trainer.feed_for(1)
    stages = [s for s in recorder.stages if s.name == "computing the frozen backbone's features"]
    done = [s.done for s in stages]
    assert done[0] == 0 and done == sorted(done) and len(set(done)) > 5, done
    assert all(s.total == total for s in stages) and not any(s.finished for s in stages[:-1])
    assert stages[-1].finished and stages[-1].done == total
    middle = next(s for s in stages if 0 < s.done < total)
    assert middle.eta_seconds is not None and middle.eta_seconds >= 0
    assert f"Computing the frozen backbone's features: {middle.done:,} / {total:,} images, about" in middle.describe()
    # The run's log: a line when the stage starts and one when it ends, with its duration.
    assert f"computing the frozen backbone's features: {total:,} images" in recorder.logs
    assert any(line.startswith("computing the frozen backbone's features: done in ") for line in recorder.logs)


def test_a_second_pass_reads_the_cache_and_still_closes_its_stage(tmp_path):
    tiny_trainer(tmp_path / "a").feed_for(1)
    recorder = MemoryRecorder()
    tiny_trainer(tmp_path / "b", recorder).feed_for(1)
    assert recorder.stages[-1].finished
    assert any("read from the feature cache" in line for line in recorder.logs)


@pytest.mark.parametrize(("done", "elapsed", "text"), [
    (0, 5.0, "Decoding x: 0 / 100 images, measuring the speed"),
    (25, 60.0, "Decoding x: 25 / 100 images, about 3 min left"),
    (50, 10.0, "Decoding x: 50 / 100 images, about 10 s left"),
])
def test_the_eta_is_the_speed_measured_so_far(done, elapsed, text):
    assert StageProgress("decoding x", done, 100, started=1000.0, time=1000.0 + elapsed).describe() == text


def test_a_stage_that_fails_says_how_far_it_got():
    recorder = MemoryRecorder()
    with pytest.raises(RuntimeError), Stage(recorder, "decoding x", 10) as stage:
        stage(4)
        raise RuntimeError("boom")
    assert recorder.stages[-1].finished and recorder.stages[-1].done == 4
    assert recorder.logs[-1].startswith("decoding x: stopped after ") and recorder.logs[-1].endswith("at 4 of 10 images")


def test_a_stage_named_after_a_backbone_keeps_its_lower_case():
    from core.recorder import StageProgress

    assert StageProgress("efficientnet_lite0: computing the features", 1, 2).describe().startswith("efficientnet_lite0:")
    assert StageProgress("decoding digits", 1, 2).describe().startswith("Decoding digits: 1 / 2 images")
