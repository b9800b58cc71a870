"""A run's time on this machine (core.models.cost.training_seconds): this machine's
measured forward pass, in the precision it trains in (issue 34, point 2: an estimate that
assumed bf16 on a CPU without it was 15 times too short)."""

from __future__ import annotations

import json

import pytest

import core.precision
from core.models import cost
from core.recipes import recipe_config


@pytest.fixture
def no_bf16(monkeypatch):
    monkeypatch.setattr(core.precision, "cpu_supports_bf16", lambda: False)


def test_without_native_bf16_a_finetune_is_estimated_at_fp32_speed(no_bf16):
    config = recipe_config("finetune")  # 5 epochs, the first on the frozen backbone's features
    seconds = cost.training_seconds(config, 1000, 200, ms_per_image=40.0)
    # One forward pass of every image for the features, then 4 epochs: 3 passes a
    # training image, 1 an evaluated one; 40 ms a pass, no bf16 speed-up.
    assert seconds == pytest.approx(((1000 + 200) + 4 * (3 * 1000 + 200)) * 0.040)


def test_with_native_bf16_the_measured_speed_up_applies(monkeypatch):
    monkeypatch.setattr(core.precision, "cpu_supports_bf16", lambda: True)
    config = recipe_config("finetune")
    assert cost.training_seconds(config, 1000, 200, ms_per_image=40.0) == pytest.approx(560.0 / 2.28)
    # fp32 asked for explicitly: no speed-up, whatever the CPU.
    assert cost.training_seconds(config.replace(precision="fp32"), 1000, 200, ms_per_image=40.0) == pytest.approx(560.0)


def test_iterations_a_smaller_input_and_a_frozen_backbone(no_bf16):
    config = recipe_config("seed003")  # mnist_cnn, 28x28, batch 100, iterations
    iterations = config.replace(epochs=None, iterations=20)  # 20 x 100 images = 2 epochs of 1000
    assert cost.training_seconds(iterations, 1000, 0, ms_per_image=1.0) == pytest.approx(2 * 3 * 1000 / 1000)
    finetune = recipe_config("finetune", image_size=(112, 112))  # a quarter of 224x224's area
    full = cost.training_seconds(recipe_config("finetune"), 100, 0, ms_per_image=8.0)
    assert cost.training_seconds(finetune, 100, 0, ms_per_image=8.0) == pytest.approx(full / 4)
    frozen = recipe_config("finetune", freeze_epochs=0, freeze_backbone=True)
    assert cost.training_seconds(frozen, 100, 20, ms_per_image=8.0) == pytest.approx(120 * 0.008)


def test_no_measurement_here_means_no_estimate(imori_home, no_bf16):
    config = recipe_config("finetune")
    assert cost.training_seconds(config, 1000, 200) is None  # never measured on this machine
    cache = imori_home / "cache" / "model_costs.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({cost.cost_key("efficientnet_lite0"): {"ms": 40.0, "load": 0.1}}))
    assert cost.training_seconds(config, 1000, 200) == pytest.approx(560.0)
    assert cost.training_seconds(config.replace(device="cuda"), 1000, 200) is None
