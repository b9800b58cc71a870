"""RunConfig: one validated description of a training run, and the tutorials' recipes.

A RunConfig is plain values (``to_dict``/``from_dict`` round-trip through JSON), so the
same object travels from the CLI, the dashboard form or a database row to the loop.
``validate()`` refuses nonsense with messages a user can act on.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError, ImoriError

OPTIMIZERS = ("sgd", "adam", "adamw")
LOSSES = ("auto", "cross_entropy", "nll")
SCHEDULES = ("none", "step", "cosine")
DEVICES = ("auto", "cpu", "cuda")
AUGMENTATIONS = ("flip", "crop", "rotate")
CHANNEL_ORDERS = ("RGB", "BGR")


@dataclass
class RunConfig:
    """Everything a run needs; defaults are sensible for a first try on ``digits``."""

    model: str = "mnist_cnn"
    dataset: str = "digits"
    model_options: dict[str, Any] = field(default_factory=dict)
    # Input: None means "what the model declares" (size) or "the model's recipe" (the rest).
    image_size: tuple[int, int] | None = None
    channel_order: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: tuple[str, ...] = ()
    # Optimisation.
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    loss: str = "auto"
    schedule: str = "none"
    step_epochs: int = 10  # "step" schedule: decay every this many epochs
    gamma: float = 0.1  # "step" schedule: multiply the learning rate by this
    batch_size: int = 64
    epochs: int | None = 1  # exactly one of epochs / iterations is set
    iterations: int | None = None
    seed: int = 0
    val_fraction: float = 0.1
    # Where and how.
    device: str = "auto"
    threads: int | None = None  # torch threads; None: from the cores this process may use
    amp: bool = True  # bf16 autocast on CUDA (ignored on the CPU)
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the model
    eval_batch_size: int = 512
    # Checkpoints.
    checkpoint_every_epochs: int = 1
    checkpoint_every_minutes: float = 10.0  # also mid-epoch, so a long CPU epoch is never lost
    keep_checkpoints: int = 3  # periodic checkpoints kept (the best one is always kept)
    # Fine-tuning (torchvision models) and warm starts (any model).
    pretrained: bool = False
    pretrained_path: str | None = None
    freeze_backbone: bool = False
    backbone_lr_mult: float | None = None  # None: 0.1 when pretrained, else 1.0
    init_from: str | None = None  # an earlier checkpoint of the same model
    # Data sources.
    data_root: str | None = None
    download: bool = False
    # Bookkeeping.
    recipe: str | None = None
    name: str | None = None

    # -- serialisation -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("image_size", "mean", "std", "augment"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        values = dict(data)
        size = values.get("image_size")
        if isinstance(size, int):
            values["image_size"] = (size, size)
        elif size is not None:
            values["image_size"] = tuple(int(v) for v in size)
            if len(values["image_size"]) != 2:
                raise ConfigError("image size is one number or two (height, width)")
        for key in ("mean", "std"):
            if values.get(key) is not None:
                raw = values[key]
                values[key] = (float(raw),) if isinstance(raw, (int, float)) else tuple(float(v) for v in raw)
        if values.get("augment") is not None:
            raw = values["augment"]
            values["augment"] = tuple(a for a in raw.split(",") if a) if isinstance(raw, str) else tuple(raw)
        return cls(**values)

    def replace(self, **changes: Any) -> "RunConfig":
        return RunConfig.from_dict({**self.to_dict(), **changes})

    # -- derived values ------------------------------------------------------------------

    @property
    def spec(self):
        from core.models import get_spec

        return get_spec(self.model)

    def input_size(self) -> tuple[int, int]:
        if self.image_size is not None:
            return tuple(self.image_size)  # type: ignore[return-value]
        return self.spec.default_preprocessing(options=self.model_options).size

    def preprocessing(self):
        """The model's recipe preprocessing at this run's size, with this run's overrides."""
        from core.data.preprocess import Preprocessing

        height, width = self.input_size()
        base = self.spec.default_preprocessing(height, width, options=self.model_options)
        return Preprocessing(
            height=height,
            width=width,
            channels=base.channels,
            channel_order=self.channel_order or base.channel_order,
            mean=self.mean if self.mean is not None else base.mean,
            std=self.std if self.std is not None else base.std,
        )

    def loss_name(self) -> str:
        return self.spec.default_loss() if self.loss == "auto" else self.loss

    def effective_backbone_lr_mult(self) -> float:
        if self.backbone_lr_mult is not None:
            return self.backbone_lr_mult
        return 0.1 if self.pretrained else 1.0

    # -- validation ----------------------------------------------------------------------

    def validate(self) -> "RunConfig":
        """Raise ConfigError naming the first thing that cannot work; return self."""
        problems = self.problems()
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    def problems(self) -> list[str]:
        """Every reason this configuration cannot run (empty when it can)."""
        p: list[str] = []

        def finite(value: float) -> bool:
            return isinstance(value, (int, float)) and math.isfinite(value)

        try:
            spec = self.spec
        except ImoriError as err:
            return [str(err)]
        if self.optimizer not in OPTIMIZERS:
            p.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if not finite(self.lr) or self.lr <= 0:
            p.append(f"learning rate must be a positive number, not {self.lr}")
        elif self.lr > 10:
            p.append(f"learning rate {self.lr} is far too large (at most 10)")
        if not finite(self.momentum) or not 0 <= self.momentum < 1:
            p.append(f"momentum must be in [0, 1), not {self.momentum}")
        elif self.momentum > 0 and self.optimizer != "sgd":
            p.append("momentum applies to SGD only (Adam has its own betas)")
        if not finite(self.weight_decay) or self.weight_decay < 0:
            p.append(f"weight decay must be >= 0, not {self.weight_decay}")
        if self.loss not in LOSSES:
            p.append(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        elif self.loss == "nll" and spec.output == "logits":
            p.append(
                f"NLL loss needs log-probabilities, but {self.model} outputs logits: "
                "use cross_entropy (or auto)"
            )
        if self.schedule not in SCHEDULES:
            p.append(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.schedule == "step":
            if not isinstance(self.step_epochs, int) or self.step_epochs < 1:
                p.append(f"step schedule needs step_epochs >= 1, not {self.step_epochs}")
            if not finite(self.gamma) or not 0 < self.gamma <= 1:
                p.append(f"step schedule needs gamma in (0, 1], not {self.gamma}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            p.append(f"batch size must be a whole number >= 1, not {self.batch_size}")
        elif self.batch_size > 65536:
            p.append(f"batch size {self.batch_size} is too large (at most 65536)")
        if (self.epochs is None) == (self.iterations is None):
            p.append("give exactly one of epochs or iterations")
        elif self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            p.append(f"epochs must be a whole number >= 1, not {self.epochs}")
        elif self.iterations is not None and (not isinstance(self.iterations, int) or self.iterations < 1):
            p.append(f"iterations must be a whole number >= 1, not {self.iterations}")
        if not isinstance(self.seed, int) or self.seed < 0:
            p.append(f"seed must be a whole number >= 0, not {self.seed}")
        if not finite(self.val_fraction) or not 0 < self.val_fraction <= 0.5:
            p.append(f"validation fraction must be in (0, 0.5], not {self.val_fraction}")
        if self.device not in DEVICES:
            p.append(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            p.append(f"threads must be >= 1, not {self.threads}")
        if not isinstance(self.eval_batch_size, int) or self.eval_batch_size < 1:
            p.append(f"evaluation batch size must be >= 1, not {self.eval_batch_size}")
        bad_aug = [a for a in self.augment if a not in AUGMENTATIONS]
        if bad_aug:
            p.append(f"unknown augmentation {', '.join(bad_aug)} (choose from {', '.join(AUGMENTATIONS)})")
        if self.channel_order is not None and self.channel_order not in CHANNEL_ORDERS:
            p.append(f"channel order must be RGB or BGR, not {self.channel_order!r}")
        if not isinstance(self.checkpoint_every_epochs, int) or self.checkpoint_every_epochs < 0:
            p.append("checkpoint_every_epochs must be >= 0 (0: only the best and the last)")
        if not finite(self.checkpoint_every_minutes) or self.checkpoint_every_minutes < 0:
            p.append("checkpoint_every_minutes must be >= 0 (0: never by time)")
        if not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 1:
            p.append("keep_checkpoints must be >= 1")
        if not spec.torchvision:
            for flag, label in (
                (self.pretrained or self.pretrained_path, "pretrained weights"),
                (self.freeze_backbone, "freeze_backbone"),
                (self.backbone_lr_mult not in (None, 1.0), "backbone_lr_mult"),
            ):
                if flag:
                    p.append(f"{label} apply to torchvision models (resnet18, ...), not {self.model}")
        if self.backbone_lr_mult is not None and (
            not finite(self.backbone_lr_mult) or not 0 <= self.backbone_lr_mult <= 1
        ):
            p.append(f"backbone_lr_mult must be in [0, 1], not {self.backbone_lr_mult}")
        if self.image_size is not None:
            try:
                spec.check_size(*self.image_size, options=self.model_options)
            except ImoriError as err:
                p.append(str(err))
        if self.mean is not None or self.std is not None:
            try:
                self.preprocessing()
            except ImoriError as err:
                p.append(str(err))
        return p


# The tutorials' recipes, faithful to their numbers. What each reaches on the built-in
# data is measured by bench/recipes.py and written to bench/recipes.json; the cards read
# it from there, never from a number typed here.
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
}


def recipe_config(name: str, **overrides: Any) -> RunConfig:
    """The recipe's RunConfig with ``overrides`` applied (``epochs`` and ``iterations``
    replace each other: giving one clears the other)."""
    key = name.lower().replace(" ", "").replace("_", "")
    if key not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    values = {**RECIPES[key]["config"], "recipe": key}
    if overrides.get("epochs") is not None:
        values["iterations"] = None
    if overrides.get("iterations") is not None:
        values["epochs"] = None
    values.update(overrides)
    return RunConfig.from_dict(values)


def recipe_results() -> dict[str, Any]:
    """What bench/recipes.py measured each recipe reaching on the built-in data, with the
    date and machine (empty for a recipe not measured yet)."""
    import json
    from pathlib import Path

    path = Path(__file__).with_name("recipe_results.json")
    return json.loads(path.read_text()) if path.exists() else {}
