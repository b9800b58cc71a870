"""RunConfig validation and the tutorials' recipes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import RunConfig
from core.recipes import RECIPES, recipe_config
from core.errors import ConfigError


def test_defaults_validate_and_round_trip_through_json():
    config = RunConfig().validate()
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"lr": 0}, "learning rate must be a positive number"),
        ({"lr": -0.1}, "learning rate must be a positive number"),
        ({"lr": float("nan")}, "learning rate must be a positive number"),
        ({"batch_size": 0}, "batch size must be a whole number >= 1"),
        ({"epochs": 0}, "epochs must be a whole number >= 1"),
        ({"epochs": None, "iterations": None}, "exactly one of epochs or iterations"),
        ({"iterations": 10}, "exactly one of epochs or iterations"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"model": "mynet", "image_size": (60, 60)}, "multiples of 16"),
        ({"model": "mnist_cnn", "image_size": (32, 32)}, "28"),
        ({"model": "mynet", "loss": "nll"}, "NLL loss needs log-probabilities"),
        ({"model": "mynet", "freeze_backbone": True}, "apply to models with pretrained weights"),
        ({"momentum": 0.9, "optimizer": "adam"}, "momentum applies to SGD only"),
        ({"val_fraction": 0}, "validation fraction"),
        ({"augment": ("flip", "blur")}, "unknown augmentation blur"),
        ({"model": "nope"}, "nope"),
        ({"std": (0.0,)}, "std values must be positive"),
        ({"model": "resnet18", "image_size": (32, 32), "batch_size": 1}, "BatchNorm layers would see a single value"),
        ({"model": "efficientnet_lite0", "image_size": (32, 32), "batch_size": 1}, "batch of 2 or more"),
    ],
)
def test_nonsense_is_refused_with_a_reason(changes, message):
    with pytest.raises(ConfigError) as err:
        RunConfig(**changes).validate()
    assert message in str(err.value)


def test_unknown_setting_is_refused():
    with pytest.raises(ConfigError, match="unknown setting"):
        RunConfig.from_dict({"learning_rate": 0.1})


def test_recipes_keep_the_tutorials_numbers():
    seed000 = recipe_config("seed000")
    assert (seed000.model, seed000.optimizer, seed000.lr, seed000.momentum) == ("mynet", "sgd", 0.01, 0.9)
    assert (seed000.batch_size, seed000.iterations, seed000.epochs) == (32, 100, None)
    assert seed000.preprocessing().channel_order == "BGR"
    assert seed000.preprocessing().size == (64, 64)

    seed003 = recipe_config("seed003")
    assert (seed003.model, seed003.optimizer, seed003.lr, seed003.batch_size, seed003.epochs) == ("mnist_cnn", "adam", 1e-3, 100, 5)
    assert seed003.loss_name() == "nll"
    prep = seed003.preprocessing()
    assert (prep.channels, prep.size, prep.mean, prep.std) == (1, (28, 28), (0.1307,), (0.3081,))

    seed004 = recipe_config("seed004")
    assert (seed004.model, seed004.optimizer, seed004.lr, seed004.momentum, seed004.batch_size, seed004.epochs) == (
        "lenet5", "sgd", 1e-3, 0.0, 64, 10)
    assert seed004.preprocessing().size == (32, 32)

    seed002 = recipe_config("seed002")
    assert seed002.pretrained and seed002.effective_backbone_lr_mult() == 0.1
    assert seed002.preprocessing().size == (224, 224) and seed002.preprocessing().channels == 3
    assert set(RECIPES) == {"seed000", "seed002", "seed003", "seed004", "finetune", "auto"}
    auto = recipe_config("auto", dataset="digits")  # the search chooses the rest (core.auto)
    assert (auto.recipe, auto.max_minutes, auto.validate().dataset) == ("auto", 10.0, "digits")


def test_recipe_overrides_swap_epochs_and_iterations():
    config = recipe_config("seed000", iterations=300)
    assert config.iterations == 300 and config.epochs is None
    config = recipe_config("seed003", iterations=10)
    assert config.epochs is None and config.iterations == 10
    with pytest.raises(ConfigError, match="unknown recipe"):
        recipe_config("seed999")


def test_lenet5_kernel_changes_the_default_size():
    assert RunConfig(model="lenet5").input_size() == (32, 32)
    assert RunConfig(model="lenet5", model_options={"kernel": 3}).input_size() == (28, 28)


def test_a_batch_of_one_is_fine_where_batchnorm_sees_enough_values():
    assert RunConfig(model="resnet18", image_size=(224, 224), batch_size=1).problems() == []
    assert RunConfig(model="mynet", batch_size=1).problems() == []  # 4x4 values at its last BatchNorm
    assert RunConfig(model="lenet5", batch_size=1).problems() == []  # no BatchNorm at all


# Checks every model and a dataset of each kind (an imported one by a manifest written by
# hand: what the check reads), in a fresh interpreter; prints what heavy modules it loaded.
LIGHT_CHECKS = """
import json, sys
from pathlib import Path
from core import paths
from core.config import RunConfig
from core.models.specs import MODELS

leaves = paths.datasets_dir() / "leaves"
leaves.mkdir(parents=True)
manifest = {"format": 1, "classes": ["a", "b"], "files": {"train": [["data/a/0.png", 0]], "test": []}}
(leaves / "manifest.json").write_text(json.dumps(manifest))
folder = Path(sys.argv[1])
for model in MODELS:
    for dataset in ("digits", "MNIST", "leaves", str(folder)):
        config = RunConfig(model=model, dataset=dataset, pretrained=MODELS[model].pretrainable)
        config.validate()
        config.machine_problems()
        config.with_absolute_paths()
        config.preprocessing(), config.input_size(), config.loss_name()
print(",".join(m for m in ("torch", "torchvision", "timm") if m in sys.modules) or "none")
"""


def test_checking_a_config_loads_no_torch(imori_home, tmp_path):
    """validate, machine_problems and with_absolute_paths are what `imori submit` asks of a
    config before it records a run: plain values and file checks, no torch."""
    env = {**os.environ, "IMORI_HOME": str(imori_home), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", LIGHT_CHECKS, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "none"

