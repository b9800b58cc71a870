"""Fine-tuning a pretrained backbone: a frozen phase on cached features, then every layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import RunConfig
from core.recipes import recipe_config
from core.recorder import MemoryRecorder
from core.train import Trainer, fit

# shapes2 at 64 px: the smallest size at which the frozen ImageNet features still tell a
# circle from a star perfectly, and a feature pass over its 1,250 images takes seconds.
FROZEN = dict(model="efficientnet_lite0", dataset="shapes2", image_size=(64, 64), freeze_backbone=True,
              optimizer="adam", lr=1e-3, batch_size=32, epochs=1, device="cpu")


@pytest.mark.slow
def test_pretrained_frozen_features_learn_shapes2_in_one_epoch_random_ones_do_not(tmp_path):
    pretrained = fit(RunConfig(**FROZEN, pretrained=True), tmp_path / "pretrained", MemoryRecorder())
    random = fit(RunConfig(**FROZEN, pretrained=False), tmp_path / "random", MemoryRecorder())
    assert pretrained.test["accuracy"] >= 0.95, pretrained.test
    assert random.test["accuracy"] <= 0.7, random.test  # chance is 0.5


@pytest.mark.slow
def test_a_frozen_backbone_trains_its_head_on_cached_features(tmp_path):
    recorder = MemoryRecorder()
    trainer = Trainer(RunConfig(**FROZEN, pretrained=True), tmp_path / "a", recorder)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if not k.startswith("classifier.")}
    result = trainer.fit()
    assert trainer.feed is trainer.features and trainer.features.train.shape[1] == 1280
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics included
    assert "computing the frozen backbone's features: 1,250 images" in recorder.logs
    # The same data, weights and preprocessing again: the features come from the cache.
    again = MemoryRecorder()
    second = fit(RunConfig(**FROZEN, pretrained=True), tmp_path / "b", again)
    assert any("read from the feature cache" in line for line in again.logs)
    assert second.test == result.test
    # Augmentation changes the images every epoch: no cache then.
    augmented = Trainer(RunConfig(**{**FROZEN, "augment": ("flip",)}, pretrained=True), tmp_path / "c")
    assert augmented.feed_for(1) is augmented.images


def photo_like(folder, per_class=20, size=48):
    """Two classes that differ by texture: stripes and dots, random colours."""
    rng = np.random.default_rng(0)
    for name in ("stripes", "dots"):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            base = rng.integers(0, 256, 3)
            image = np.zeros((size, size, 3), np.uint8) + (base // 2).astype(np.uint8)
            if name == "stripes":
                image[:, ::6] = 255 - base // 2
            else:
                image[::6, ::6] = 255 - base // 2
            Image.fromarray(image).save(folder / name / f"{i}.png")
    return folder


@pytest.mark.slow
def test_the_finetune_recipe_trains_the_head_first_then_every_layer(tmp_path):
    data = photo_like(tmp_path / "photos")
    config = recipe_config("finetune", dataset=str(data), image_size=(64, 64), epochs=2, batch_size=8, device="cpu")
    recorder = MemoryRecorder()
    trainer = Trainer(config.validate(), tmp_path / "run", recorder)
    backbone = {k: v.clone() for k, v in trainer.model.state_dict().items() if not k.startswith("classifier.")}
    result = trainer.fit()
    assert result.status == "succeeded" and result.epoch == 2
    steps_per_epoch = trainer.steps_per_epoch
    assert any(f"the backbone joins training (step {steps_per_epoch})" in line for line in recorder.logs)
    # Every layer trained in the second epoch, the backbone at a tenth of the head's rate.
    after = trainer.model.state_dict()
    assert any(not torch.equal(backbone[k], after[k]) for k in backbone)
    groups = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert set(groups) == {"head", "backbone"}
    assert all(p.requires_grad for p in trainer.model.parameters())


def test_fine_tune_settings_that_cannot_work_are_refused():
    assert "freeze_epochs" in " ".join(RunConfig(model="mynet", freeze_epochs=1).problems())
    both = RunConfig(model="efficientnet_lite0", pretrained=True, freeze_epochs=1, freeze_backbone=True, epochs=3)
    assert any("choose one" in p for p in both.problems())
    short = RunConfig(model="efficientnet_lite0", pretrained=True, freeze_epochs=2, epochs=2)
    assert any("leaves no epoch" in p for p in short.problems())
    assert recipe_config("finetune").problems() == []
