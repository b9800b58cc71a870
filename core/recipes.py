"""The tutorials' recipes: each one a RunConfig with the tutorial's own numbers.

What each reaches on the built-in data is measured by ``bench/recipes.py`` and written to
``core/recipe_results.json``; the cards and ``imori recipes`` read it from there, never
from a number typed here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.config import RunConfig, apply_overrides
from core.errors import ConfigError

RECIPES: dict[str, dict[str, Any]] = {
    "seed000": {
        "title": "Seed 000: newts with a VGG-style CNN",
        "about": "Mynet (BatchNorm VGG-style) on 64x64 images read as BGR, SGD 0.01 with "
        "momentum 0.9, batch 32, the tutorial's 100 iterations. shapes2 stands in for "
        "the two newts.",
        "config": dict(
            model="mynet", dataset="shapes2", optimizer="sgd", lr=0.01, momentum=0.9,
            loss="cross_entropy", batch_size=32, epochs=None, iterations=100,
            image_size=(64, 64),
        ),
    },
    "seed003": {
        "title": "Seed 003: MNIST CNN with Adam",
        "about": "Two conv layers, LogSoftmax output and NLL loss, Adam 1e-3, batch 100, "
        "5 epochs, Normalize(0.1307, 0.3081), seed 0.",
        "config": dict(
            model="mnist_cnn", dataset="digits", optimizer="adam", lr=1e-3, loss="nll",
            batch_size=100, epochs=5, iterations=None, seed=0,
        ),
    },
    "seed004": {
        "title": "Seed 004: LeNet-5, the nine steps",
        "about": "LeNet-5 (5x5 kernels) on 32x32 grayscale, plain SGD 1e-3, batch 64, "
        "10 epochs, exactly as the tutorial. As written it barely learns on digits: "
        "try lr 0.01 with momentum 0.9.",
        "config": dict(
            model="lenet5", dataset="digits", optimizer="sgd", lr=1e-3, momentum=0.0,
            loss="cross_entropy", batch_size=64, epochs=10, iterations=None,
        ),
    },
    "seed002": {
        "title": "Seed 002: fine-tune a pretrained ResNet-18",
        "about": "ImageNet-pretrained resnet18 with a new head, SGD 1e-3 momentum 0.9, "
        "backbone at 0.1x the learning rate, batch 32, 5 epochs, 224x224 RGB with "
        "ImageNet normalisation. Needs the pretrained weights in the torch hub cache.",
        "config": dict(
            model="resnet18", dataset="shapes", optimizer="sgd", lr=1e-3, momentum=0.9,
            loss="cross_entropy", batch_size=32, epochs=5, iterations=None,
            pretrained=True, backbone_lr_mult=0.1, image_size=(224, 224),
        ),
    },
    "finetune": {
        "title": "Fine-tune a pretrained backbone: your own photos",
        "about": "EfficientNet-Lite0 with its ImageNet weights (offline, no download): one epoch "
        "of the new head alone on the frozen backbone's cached features, then every layer "
        "with the backbone at 0.1x the learning rate (fastai's fine_tune); AdamW 1e-3 with "
        "a cosine schedule, flip and crop augmentation once every layer trains, the backbone's own size (224 px for Lite0) "
        "with the backbone's own normalisation.",
        "config": dict(
            model="efficientnet_lite0", dataset="shapes2", pretrained=True, freeze_epochs=1,
            optimizer="adamw", lr=1e-3, weight_decay=0.01, backbone_lr_mult=0.1, schedule="cosine",
            loss="cross_entropy", batch_size=32, epochs=5, iterations=None,
            augment=("flip", "crop"), image_size=None,  # the backbone's own: 224, 240 for Lite1, 260 for Lite2
        ),
    },
    "auto": {
        "title": "Best model in N minutes: imori chooses",
        "about": "A search that keeps to --max-minutes (10 when not given), deciding on the validation split: "
        "a linear head on each offline backbone's cached features (photos), or the seed nets from scratch "
        "(small grayscale images), then the most promising one fine-tuned with the rest of the time (warm-up "
        "and cosine, label smoothing, EMA, flips and quarter turns where orientation does not matter), the "
        "best epochs averaged and test-time augmentation where they help; the test split once, at the end.",
        "config": dict(
            model="efficientnet_lite0", dataset="shapes2", pretrained=True, epochs=1, iterations=None,
            max_minutes=10.0,  # the search chooses the rest (core.auto)
        ),
    },
}


DEFAULT_AUTO_MINUTES = 10.0  # an automatic run's budget when --max-minutes is not given
SMALL_GRAYSCALE = 64  # one-channel images at most this side: the seed nets, not the photo backbones


def is_small_grayscale(channels: int | None, side: int | None) -> bool:
    """Whether images of ``channels`` and longer ``side`` (pixels; None: unknown) are small
    grayscale drawings such as digits, which the tutorials' seed nets from scratch suit;
    everything else is photos, for the pretrained backbones. The one rule the automatic
    search (core.auto) and the New run page both use."""
    return channels == 1 and side is not None and side <= SMALL_GRAYSCALE


# Settings an automatic run chooses itself (core.auto): giving one with it is refused, saying why.
AUTO_CHOSEN = ("model", "pretrained", "pretrained_path", "image_size", "augment", "epochs", "iterations",
               "freeze_epochs", "freeze_backbone", "optimizer", "lr", "momentum", "schedule", "warmup_epochs",
               "label_smoothing", "ema", "ema_decay", "tta", "batch_size", "backbone_lr_mult", "init_from",
               "nproc_per_node", "nnodes")


def auto_refusal(given: dict[str, Any]) -> str | None:
    """Why ``given`` (settings given beside ``--recipe auto``) cannot be used, or None: the
    search chooses these itself, and fixing one would make it another kind of run."""
    fixed = sorted(name for name in given if name in AUTO_CHOSEN)
    if not fixed:
        return None
    flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
    return (f"--recipe auto chooses {flags} itself, on the validation split: give only the dataset, "
            "--max-minutes and this machine's settings, or leave out --recipe auto to choose them yourself")


def recipe_key(name: str) -> str:
    """``"Seed 003"`` / ``"seed_003"`` -> ``"seed003"``; an unknown recipe is a ConfigError."""
    key = name.lower().replace(" ", "").replace("_", "")
    if key not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return key


def recipe_values(name: str) -> dict[str, Any]:
    """The recipe's settings as plain values, with its name recorded."""
    key = recipe_key(name)
    return {**RECIPES[key]["config"], "recipe": key}


def recipe_config(name: str, **overrides: Any) -> RunConfig:
    """The recipe's RunConfig with ``overrides`` applied (``epochs`` and ``iterations``
    replace each other: giving one clears the other)."""
    return RunConfig.from_dict(apply_overrides(recipe_values(name), overrides))


def recipe_results() -> dict[str, Any]:
    """What bench/recipes.py measured each recipe reaching on the built-in data, with the
    date and machine (empty for a recipe not measured yet)."""
    path = Path(__file__).with_name("recipe_results.json")
    return json.loads(path.read_text()) if path.exists() else {}
