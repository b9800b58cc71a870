"""RunConfig: one validated description of a training run, each setting described once.

Every field of ``RunConfig`` carries its own description (``setting(...)``: help text,
unit, choices, bounds, the form section it belongs to, how to read it from text). The
``imori`` command line (``cli/options.py``) and the dashboard's New run form
(``dashboard/settings_form.py``) are generated from these descriptions, so a new setting
is one new field here and nothing else.

A RunConfig is plain values (``to_dict``/``from_dict`` round-trip through JSON, and every
config ever recorded still reads), so the same object travels from the CLI, the form, a
config file or a database row to the loop. ``problems()`` lists every reason it cannot
run, in words a user can act on; it runs where user input enters (the CLI, the form, the
client's ``submit``), not again further down.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.data.catalog import TORCHVISION_DATASETS, resolve
from core.data.memory import max_dataset_ram
from core.data.preprocess import Preprocessing
from core.errors import ConfigError, ImoriError
from core.models.specs import ModelSpec, get_spec, pretrained_available

OPTIMIZERS = ("sgd", "adam", "adamw")
LOSSES = ("auto", "cross_entropy", "nll")
SCHEDULES = ("none", "step", "cosine")
DEVICES = ("auto", "cpu", "cuda")
AUGMENTATIONS = ("flip", "crop", "rotate", "vflip", "rot90")
# Augmentations that map an image onto itself exactly (no resampling): test-time
# augmentation (``tta``) averages over them.
EXACT_AUGMENTATIONS = ("flip", "vflip", "rot90")
CHANNEL_ORDERS = ("RGB", "BGR")
PRECISIONS = ("auto", "fp32", "bf16")
# Settings that older imori versions recorded, read into today's (recorded configs never
# stop reading): ``amp: false`` meant fp32 training.
LEGACY = {"amp": lambda value: {} if value else {"precision": "fp32"}}

# Form sections, in the order the New run page shows them (also the CLI's option groups).
SECTIONS = {
    "data": "Data",
    "model": "Model",
    "optimisation": "Optimisation",
    "length": "Length and where",
    "fine_tune": "Fine-tuning and warm start",
    "hardware": "Hardware and checkpoints",
}

# Model options that the command line exposes as flags of their own (``--kernel 3`` means
# ``model_options={"kernel": 3}``); a test keeps this in step with the model registry.
MODEL_OPTION_FLAGS: dict[str, tuple[type, str]] = {
    "kernel": (int, "lenet5 kernel size: 5 (classic) or 3 (seed 004's code)"),
    "pooling": (str, "efficientnet_lite*: what the head reads: last (the published network's last layer) "
                     "or multilevel (pooled middle and late blocks: fine texture such as cracks)"),
}


# -- reading settings from text ---------------------------------------------------------------


def parse_size(text: str | int) -> tuple[int, int]:
    """``"64"`` -> (64, 64); ``"64x48"`` or ``"64,48"`` -> (64, 48)."""
    try:
        parts = [int(v) for v in str(text).lower().replace(",", "x").split("x")]
    except ValueError:
        raise ConfigError(f"image size must look like 64 or 64x48, not {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ConfigError(f"image size must look like 64 or 64x48, not {text!r}")
    return parts[0], parts[1]


def parse_floats(text: str | float) -> tuple[float, ...] | None:
    """``"0.5"`` -> (0.5,); ``"0.485, 0.456 0.406"`` -> three values; ``""`` -> None."""
    if isinstance(text, (int, float)):
        return (float(text),)
    parts = [p for p in str(text).replace(",", " ").split() if p]
    try:
        return tuple(float(p) for p in parts) if parts else None
    except ValueError:
        raise ConfigError(f"expected numbers separated by commas, not {text!r}") from None


def parse_words(text: str) -> tuple[str, ...]:
    """``"flip, rotate"`` -> ("flip", "rotate")."""
    return tuple(p.strip() for p in str(text).replace(",", " ").split() if p.strip())


# -- the description of a setting --------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """How one RunConfig field is shown, asked for and read.

    ``section`` places it in the form (and the CLI's help); ``widget`` is ``None`` for the
    form to choose from the field's type, ``"slider"``, ``"custom"`` (the page draws it
    itself) or ``"hidden"`` (never in the form). ``parse`` reads the value from text (the
    CLI, a text box); ``show`` says, from the form's other values, when it applies.
    """

    help: str
    section: str
    label: str | None = None
    unit: str | None = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    parse: Callable[[str], Any] | None = None
    show: Callable[[Mapping[str, Any]], bool] | None = None
    placeholder: str | None = None
    widget: str | None = None
    path: bool = False  # a file or folder on the submitting machine: made absolute when queued
    flag: str | None = None  # the CLI flag; default --name-with-dashes; "" for none
    metavar: str | None = None
    aliases: tuple[tuple[str, Any, str], ...] = ()  # (CLI flag, the value it sets, help)

    def label_for(self, name: str) -> str:
        return self.label or name.replace("_", " ").capitalize()

    def flag_for(self, name: str) -> str:
        return self.flag if self.flag is not None else "--" + name.replace("_", "-")


def setting(default: Any = dataclasses.MISSING, **description: Any) -> Any:
    """A dataclass field with its description: ``lr: float = setting(1e-3, help=..., ...)``."""
    meta = {"setting": Setting(**description)}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _only_for_schedule_step(values: Mapping[str, Any]) -> bool:
    return values.get("schedule") == "step"


def _only_with_ema(values: Mapping[str, Any]) -> bool:
    return bool(values.get("ema"))


def _only_for_torchvision_data(values: Mapping[str, Any]) -> bool:
    return str(values.get("dataset", "")).lower() in TORCHVISION_DATASETS


@dataclass
class RunConfig:
    """Everything a run needs; defaults are sensible for a first try on ``digits``."""

    # Data and model (the New run page draws these itself: their choices come from the
    # registries and the records).
    dataset: str = setting(
        "digits", section="data", widget="custom",
        help="digits, shapes, shapes2, mnist, fashionmnist, cifar10, an imported name, or a folder/ZIP path",
    )
    model: str = setting("mnist_cnn", section="model", widget="custom", help="model name (see `imori models`)")
    model_options: dict[str, Any] = setting(
        {}, section="model", widget="custom", flag="", help="options of the model (lenet5: kernel)"
    )
    data_root: str | None = setting(
        None, section="data", label="Data root", show=_only_for_torchvision_data, path=True,
        placeholder="default: IMORI_HOME/torchvision", help="where torchvision datasets live",
    )
    download: bool = setting(
        False, section="data", label="Download it if missing", show=_only_for_torchvision_data,
        help="download torchvision data or pretrained weights if missing (needs the network)",
    )
    val_fraction: float = setting(
        0.1, section="data", label="Validation fraction", widget="slider", minimum=0.05, maximum=0.5, step=0.05,
        help="held out of the training split (seeded) to pick best.pt; the test split is only reported",
    )
    augment: tuple[str, ...] = setting(
        (), section="data", label="Augmentation", choices=AUGMENTATIONS, parse=parse_words, metavar="LIST",
        help="comma-separated: flip (left-right), crop (shift up to 1/8), rotate (+-10 degrees), vflip (upside "
        "down), rot90 (a quarter turn 0-3 times; square inputs only) -- vflip and rot90 for photos whose classes "
        "do not depend on orientation (cells, textures, top-down views); applied per batch on the training device",
    )
    tta: bool = setting(
        False, section="data", label="Test-time augmentation",
        help="evaluate and predict on every flip and quarter turn of an image that the run trains with "
        "(flip, vflip, rot90 in --augment), averaging their softmax probabilities; recorded in the checkpoint, "
        "so predict, evaluate, calibrate and explain use it (an export holds the single model)",
    )
    # Input: None means "what the model declares" (size) or "the model's recipe" (the rest).
    image_size: tuple[int, int] | None = setting(
        None, section="model", widget="custom", parse=parse_size, metavar="N|HxW", unit="pixels",
        help="input size in pixels: N or HxW (default: the model's)",
    )
    channel_order: str | None = setting(
        None, section="model", widget="custom", choices=CHANNEL_ORDERS,
        help="RGB, or BGR as cv2 reads images (seed 000); default: the model's recipe",
    )
    mean: tuple[float, ...] | None = setting(
        None, section="model", widget="custom", parse=parse_floats, metavar="A[,B,C]",
        help="normalisation mean, one value or one per channel, comma-separated",
    )
    std: tuple[float, ...] | None = setting(
        None, section="model", widget="custom", parse=parse_floats, metavar="A[,B,C]", help="normalisation std, like --mean"
    )
    # Optimisation.
    optimizer: str = setting("adam", section="optimisation", label="Optimizer", choices=OPTIMIZERS, help="the optimizer")
    lr: float = setting(
        1e-3, section="optimisation", label="Learning rate", minimum=0.0, maximum=10.0, step=1e-4, help="learning rate"
    )
    momentum: float = setting(
        0.0, section="optimisation", label="Momentum (SGD)", minimum=0.0, maximum=0.999, step=0.05,
        help="SGD momentum (Adam has its own betas)",
    )
    weight_decay: float = setting(0.0, section="optimisation", label="Weight decay", minimum=0.0, step=1e-4, help="L2 weight decay")
    loss: str = setting(
        "auto", section="optimisation", label="Loss", choices=LOSSES,
        help="auto: NLL for a log-softmax model (mnist_cnn), cross-entropy otherwise",
    )
    class_weights: str = setting(
        "none", section="optimisation", label="Class weights", choices=("none", "balanced"),
        help="balanced: weigh each class's loss by n_images / (n_classes * its count), "
        "as scikit-learn's class_weight='balanced', so a small class counts as much as a large one",
    )
    label_smoothing: float = setting(
        0.0, section="optimisation", label="Label smoothing", minimum=0.0, maximum=0.99, step=0.05,
        help="train towards (1 - e) on the true class and e spread evenly over every class (torch's "
        "CrossEntropyLoss(label_smoothing=e); the same loss on a log-softmax model's output); "
        "the recorded evaluation loss stays the plain one",
    )
    ema: bool = setting(
        False, section="optimisation", label="EMA of the weights",
        help="keep an exponential moving average of the weights (timm's ModelEmaV3, its decay warming up "
        "over the first steps) and evaluate, checkpoint and predict with it",
    )
    ema_decay: float = setting(
        0.999, section="optimisation", label="EMA decay", minimum=0.0, maximum=0.99999, step=0.0005,
        show=_only_with_ema,
        help="the EMA's decay per step, in (0, 1): 0.999 averages about the last 1,000 steps",
    )
    batch_size: int = setting(
        64, section="optimisation", label="Batch size", minimum=1, maximum=65536, step=1, unit="images",
        help="images per optimizer step",
    )
    schedule: str = setting("none", section="optimisation", label="Schedule", choices=SCHEDULES, help="learning-rate schedule")
    warmup_epochs: float = setting(
        0.0, section="optimisation", label="Warm-up (epochs)", minimum=0.0, step=0.5, unit="epochs",
        help="raise the learning rate linearly from lr/steps to lr over this many epochs (fractions allowed) "
        "before the schedule, which then runs over the remaining steps",
    )
    step_epochs: int = setting(
        10, section="optimisation", label="Every (epochs)", minimum=1, step=1, unit="epochs", show=_only_for_schedule_step,
        help='"step" schedule: decay the learning rate every this many epochs',
    )
    gamma: float = setting(
        0.1, section="optimisation", label="Multiply by", minimum=0.0, maximum=1.0, step=0.05, show=_only_for_schedule_step,
        help='"step" schedule: multiply the learning rate by this',
    )
    # Length (exactly one of epochs / iterations is set).
    epochs: int | None = setting(1, section="length", widget="custom", unit="epochs", help="passes over the training split")
    iterations: int | None = setting(
        None, section="length", widget="custom", unit="iterations",
        help="train a fixed number of optimizer steps instead of epochs",
    )
    seed: int = setting(0, section="length", label="Seed", minimum=0, step=1, help="seeds the split, the weights and the batch order")
    patience: int | None = setting(
        None, section="length", label="Stop early after", minimum=1, step=1, unit="epochs", placeholder="never",
        help="early stopping: end the run when the validation loss has not improved for this many epochs "
        "(Keras' EarlyStopping(patience=N)); the best checkpoint stays best.pt",
    )
    max_minutes: float | None = setting(
        None, section="length", label="Time budget", minimum=0.1, step=1.0, unit="minutes", placeholder="none",
        help="a time budget: stop cleanly, with a checkpoint, after this many minutes of training",
    )
    device: str = setting(
        "auto", section="length", label="Device", choices=DEVICES,
        help="auto: a GPU worker if one is alive, else a CPU worker; cuda waits for a GPU worker",
    )
    name: str | None = setting(None, section="length", label="Run name", placeholder="default: <model> on <dataset>", help="a name for the run")
    # Where and how.
    threads: int | None = setting(
        None, section="hardware", label="Torch threads", minimum=1, step=1, placeholder="from the worker's cores",
        help="torch threads (default: the cores this process may use)",
    )
    nproc_per_node: int = setting(
        1, section="hardware", label="Processes (DDP)", minimum=1, maximum=64, step=1, unit="processes",
        help="train one run on this many processes per machine (torchrun, DistributedDataParallel: gloo on the "
        "CPU, one GPU each on CUDA); batch size stays the global batch, split across them, and the cores are "
        "shared out between them",
    )
    nnodes: int = setting(
        1, section="hardware", label="Machines (DDP)", widget="hidden", minimum=1, maximum=1024, step=1, unit="machines",
        help="machines that train this run together (torchrun's --nnodes): give --rdzv-endpoint too, start it "
        "with `imori train` on the first machine and `imori join` on the others",
    )
    rdzv_endpoint: str | None = setting(
        None, section="hardware", label="Rendezvous endpoint", widget="hidden", placeholder="HOST:PORT of the first machine",
        metavar="HOST:PORT", help="where the machines of a run of several meet (torchrun's --rdzv-endpoint): "
        "the first machine's address and a free port",
    )
    eval_batch_size: int = setting(
        512, section="hardware", label="Evaluation batch size", minimum=1, step=64, unit="images",
        help="images per forward pass when evaluating",
    )
    precision: str = setting(
        "auto", section="hardware", label="Precision", choices=PRECISIONS,
        aliases=(("--no-amp", "fp32", "the same as --precision fp32"),),
        help="auto: bf16 autocast where this processor or GPU has bf16 and it measurably pays for the model, "
        "fp32 elsewhere; the loss, the optimizer state and the recorded metrics stay fp32",
    )
    channels_last: bool = setting(
        True, section="hardware", label="channels_last with bf16 or CUDA",
        help="channels-last memory format on CUDA and with bf16 on the CPU (where bf16 pays, it pays most with it)",
    )
    compile: bool = setting(False, section="hardware", label="torch.compile", help="torch.compile the model")
    feature_cache: bool = setting(
        True, section="hardware", label="Cache a frozen backbone's features",
        help="while a pretrained backbone is frozen and nothing is augmented, compute its features once "
        "and train the head on them (later epochs cost milliseconds)",
    )
    # Checkpoints.
    checkpoint_every_epochs: int = setting(
        1, section="hardware", label="Checkpoint every (epochs, 0: best and last only)", minimum=0, step=1, unit="epochs",
        help="a periodic checkpoint every this many epochs (0: only the best and the last)",
    )
    checkpoint_every_minutes: float = setting(
        10.0, section="hardware", label="…and every (minutes, 0: never by time)", minimum=0.0, step=1.0, unit="minutes",
        help="also mid-epoch, so a long CPU epoch is never lost (0: never by time)",
    )
    keep_checkpoints: int = setting(
        3, section="hardware", label="Keep the last (periodic checkpoints)", minimum=1, step=1,
        help="periodic checkpoints kept (the best one is always kept)",
    )
    # Fine-tuning (models with pretrained weights) and warm starts (any model).
    pretrained: bool = setting(
        False, section="fine_tune", label="Pretrained ImageNet weights",
        help="start from ImageNet-pretrained weights",
    )
    pretrained_path: str | None = setting(
        None, section="fine_tune", label="Pretrained weights file", placeholder="default: the torch hub cache", path=True,
        help="a local file of pretrained weights (default: the torch hub cache)",
    )
    freeze_backbone: bool = setting(
        False, section="fine_tune", label="Freeze the backbone (train the head only)", help="train the new head only"
    )
    freeze_epochs: int = setting(
        0, section="fine_tune", label="Head-only epochs first", minimum=0, step=1, unit="epochs",
        help="train the new head alone this many epochs with the backbone frozen (its BatchNorm too), "
        "then every layer, the backbone at its learning-rate multiplier (fastai's fine_tune)",
    )
    backbone_lr_mult: float | None = setting(
        None, section="fine_tune", label="Backbone learning-rate multiplier", minimum=0.0, maximum=1.0, step=0.05,
        placeholder="auto: 0.1 when pretrained, else 1", help="the backbone's learning rate as a fraction of --lr",
    )
    init_from: str | None = setting(
        None, section="fine_tune", widget="custom", metavar="CHECKPOINT", path=True,
        help="start from an earlier checkpoint of the same model",
    )
    # Bookkeeping.
    recipe: str | None = setting(
        None, section="length", widget="hidden", flag="",
        help="the recipe this run started from",
    )

    # -- serialisation -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """Read plain values (JSON, a config file, a form), converting each to its field's
        type; unknown names and values of the wrong kind are a ConfigError."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        data = dict(data)
        for old, upgrade in LEGACY.items():
            if old in data and old not in known:
                data = {**upgrade(data.pop(old)), **data}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown {'setting' if len(unknown) == 1 else 'settings'}: {', '.join(unknown)}")
        hints = _type_hints(cls)
        values = {name: _coerce(name, value, hints[name], known[name]) for name, value in data.items()}
        return cls(**values)

    def replace(self, **changes: Any) -> "RunConfig":
        return type(self).from_dict(apply_overrides(self.to_dict(), changes))

    # -- derived values ------------------------------------------------------------------

    @property
    def spec(self) -> ModelSpec:
        return get_spec(self.model)

    def input_size(self) -> tuple[int, int]:
        if self.image_size is not None:
            return tuple(self.image_size)  # type: ignore[return-value]
        return self.spec.default_preprocessing(options=self.model_options).size

    def preprocessing(self) -> Preprocessing:
        """The model's recipe preprocessing at this run's size, with this run's overrides."""
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
        """Raise ConfigError naming every thing that cannot work; return self."""
        problems = self.problems()
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    def problems(self) -> list[str]:
        """Every reason this configuration cannot run (empty when it can).

        These are the checks that hold on any machine. What depends on the machine that
        trains (pretrained weights present, CUDA, files on its disk) is checked by the
        worker when it builds the run, and reported as the run's error.
        """
        p: list[str] = []

        def finite(value: float) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        def whole(value: Any, minimum: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

        try:
            spec = self.spec
        except ImoriError as err:
            return [str(err)]
        for name, description in described_fields(type(self)):
            value = getattr(self, name)
            if description.choices and description.widget != "custom" and not isinstance(value, tuple):
                if value not in description.choices:
                    p.append(f"{name} must be one of {', '.join(map(str, description.choices))}, not {value!r}")
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
        if self.loss == "nll" and spec.output == "logits":
            p.append(
                f"NLL loss needs log-probabilities, but {self.model} outputs logits: "
                "use cross_entropy (or auto)"
            )
        if self.schedule == "step":
            if not whole(self.step_epochs, 1):
                p.append(f"step schedule needs step_epochs >= 1, not {self.step_epochs}")
            if not finite(self.gamma) or not 0 < self.gamma <= 1:
                p.append(f"step schedule needs gamma in (0, 1], not {self.gamma}")
        p += self._lever_problems(finite, spec)
        if not whole(self.batch_size, 1):
            p.append(f"batch size must be a whole number >= 1, not {self.batch_size}")
        elif self.batch_size > 65536:
            p.append(f"batch size {self.batch_size} is too large (at most 65536)")
        if (self.epochs is None) == (self.iterations is None):
            p.append("give exactly one of epochs or iterations")
        elif self.epochs is not None and not whole(self.epochs, 1):
            p.append(f"epochs must be a whole number >= 1, not {self.epochs}")
        elif self.iterations is not None and not whole(self.iterations, 1):
            p.append(f"iterations must be a whole number >= 1, not {self.iterations}")
        if not whole(self.seed, 0):
            p.append(f"seed must be a whole number >= 0, not {self.seed}")
        if not finite(self.val_fraction) or not 0 < self.val_fraction <= 0.5:
            p.append(f"validation fraction must be in (0, 0.5], not {self.val_fraction}")
        if self.threads is not None and not whole(self.threads, 1):
            p.append(f"threads must be >= 1, not {self.threads}")
        p += self._distributed_problems(whole)
        if not whole(self.eval_batch_size, 1):
            p.append(f"evaluation batch size must be >= 1, not {self.eval_batch_size}")
        bad_aug = [a for a in self.augment if a not in AUGMENTATIONS]
        if bad_aug:
            p.append(f"unknown augmentation {', '.join(bad_aug)} (choose from {', '.join(AUGMENTATIONS)})")
        if self.channel_order is not None and self.channel_order not in CHANNEL_ORDERS:
            p.append(f"channel order must be RGB or BGR, not {self.channel_order!r}")
        if not whole(self.checkpoint_every_epochs, 0):
            p.append("checkpoint_every_epochs must be >= 0 (0: only the best and the last)")
        if not finite(self.checkpoint_every_minutes) or self.checkpoint_every_minutes < 0:
            p.append("checkpoint_every_minutes must be >= 0 (0: never by time)")
        if not whole(self.keep_checkpoints, 1):
            p.append("keep_checkpoints must be >= 1")
        if not spec.pretrainable:
            for flag, label in (
                (self.pretrained or self.pretrained_path, "pretrained weights"),
                (self.freeze_backbone, "freeze_backbone"),
                (self.freeze_epochs, "freeze_epochs"),
                (self.backbone_lr_mult not in (None, 1.0), "backbone_lr_mult"),
            ):
                if flag:
                    p.append(f"{label} apply to models with pretrained weights (resnet18, efficientnet_lite0, ...), not {self.model}")
        if self.patience is not None and not whole(self.patience, 1):
            p.append(f"patience must be a whole number of epochs >= 1 (or unset: never stop early), not {self.patience}")
        elif self.patience is not None and self.val_fraction == 0:
            p.append("patience watches the validation loss, and this run holds out no validation images")
        if self.recipe == "auto" and (self.nproc_per_node > 1 or self.nnodes > 1):
            p.append("an automatic run (recipe auto) trains in one process: leave out --nproc-per-node and --nnodes")
        if self.max_minutes is not None and (not finite(self.max_minutes) or self.max_minutes <= 0):
            shown = f"{self.max_minutes:g}" if finite(self.max_minutes) else repr(self.max_minutes)
            p.append(f"max_minutes must be a positive number of minutes (or unset: no budget), not {shown}")
        if not whole(self.freeze_epochs, 0):
            p.append(f"freeze_epochs must be a whole number >= 0, not {self.freeze_epochs}")
        elif self.freeze_epochs and self.freeze_backbone:
            p.append("freeze_epochs trains every layer after its head-only epochs, freeze_backbone never does: choose one")
        elif self.freeze_epochs and self.epochs is not None and self.freeze_epochs >= self.epochs:
            p.append(f"freeze_epochs ({self.freeze_epochs}) leaves no epoch to train every layer: give more epochs")
        if self.backbone_lr_mult is not None and (
            not finite(self.backbone_lr_mult) or not 0 <= self.backbone_lr_mult <= 1
        ):
            p.append(f"backbone_lr_mult must be in [0, 1], not {self.backbone_lr_mult}")
        try:
            spec.resolve_options(self.model_options)
        except ImoriError as err:
            p.append(str(err))
        else:
            if self.image_size is not None:
                try:
                    spec.check_size(*self.image_size, options=self.model_options)
                except ImoriError as err:
                    p.append(str(err))
            height, width = self.input_size() if "rot90" in self.augment else (0, 0)
            if height != width:
                p.append(f"rot90 turns images a quarter: it needs a square input, not {height}x{width} "
                         "(use flip and vflip)")
            if self.mean is not None or self.std is not None:
                try:
                    self.preprocessing()
                except ImoriError as err:
                    p.append(str(err))
            if whole(self.batch_size, 1) and self.batch_size < 2 and not p:
                p += self._batchnorm_problems()
        return p

    def _lever_problems(self, finite: Callable[[Any], bool], spec: Any) -> list[str]:
        """Warm-up, label smoothing, EMA and test-time augmentation that cannot work."""
        p: list[str] = []
        if not finite(self.warmup_epochs) or self.warmup_epochs < 0:
            p.append(f"warmup_epochs must be a number of epochs >= 0 (0: no warm-up), not {self.warmup_epochs}")
        elif self.warmup_epochs and self.epochs is not None and self.warmup_epochs >= self.epochs:
            p.append(f"warmup_epochs ({self.warmup_epochs:g}) leaves no step for the schedule: "
                     f"give fewer warm-up epochs than epochs ({self.epochs})")
        if not finite(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            p.append(f"label_smoothing must be in [0, 1) (0.1 is usual), not {self.label_smoothing}")
        if not finite(self.ema_decay) or not 0 < self.ema_decay < 1:
            p.append(f"ema_decay must be in (0, 1) (0.999 is usual), not {self.ema_decay}")
        if self.tta and not any(a in EXACT_AUGMENTATIONS for a in self.augment):
            p.append("tta averages over the flips and quarter turns the run trains with: add flip, vflip or rot90 "
                     "to augment (or turn tta off)")
        return p

    def _distributed_problems(self, whole: Callable[[Any, int], bool]) -> list[str]:
        """What a run on several processes (``nproc_per_node`` x ``nnodes``) cannot do."""
        p: list[str] = []
        if not whole(self.nproc_per_node, 1):
            return [f"nproc_per_node must be a whole number >= 1, not {self.nproc_per_node}"]
        if not whole(self.nnodes, 1):
            return [f"nnodes must be a whole number >= 1, not {self.nnodes}"]
        if self.nnodes > 1 and not self.rdzv_endpoint:
            p.append("a run on several machines (nnodes > 1) needs rdzv_endpoint: HOST:PORT of the first machine")
        if self.rdzv_endpoint:
            host, _, port = str(self.rdzv_endpoint).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                p.append(f"rdzv_endpoint must look like HOST:PORT, not {self.rdzv_endpoint!r}")
            elif self.nnodes == 1:
                p.append("rdzv_endpoint is for a run on several machines: give nnodes > 1 too (one machine needs none)")
        world = self.nproc_per_node * self.nnodes
        if world > 1:
            if whole(self.batch_size, 1) and self.batch_size < 2 * world:
                p.append(f"batch size {self.batch_size} is the global batch, split across {world} processes: "
                         f"give at least {2 * world} (two images per process)")
            if self.freeze_epochs:
                p.append("freeze_epochs is not supported on several processes yet: train it on one (nproc_per_node 1)")
        return p

    def _batchnorm_problems(self) -> list[str]:
        """A batch of one image cannot train a model whose BatchNorm would then see a single
        value per channel (PyTorch: "Expected more than 1 value per channel")."""
        # The one check that loads torch (a forward pass on the meta device), asked only for a
        # batch of one: any larger batch gives every BatchNorm channel two values or more.
        from core.models.registry import smallest_batchnorm_input

        size = self.input_size()
        values = smallest_batchnorm_input(self.model, size, self.model_options)
        if values is None or self.batch_size * values >= 2:
            return []
        return [
            f"batch size {self.batch_size} cannot train {self.model} at {size[0]}x{size[1]}: its BatchNorm layers "
            "would see a single value per channel; use a batch of 2 or more, or a larger input size"
        ]

    def with_absolute_paths(self) -> "RunConfig":
        """This config with every path-valued setting made absolute, as seen from here: a
        worker started in another folder finds the same files. A dataset that names no
        known dataset and no existing file is a ConfigError now, not a failed run later."""
        changes: dict[str, Any] = {}
        for name, description in described_fields(type(self)):
            value = getattr(self, name)
            if description.path and value:
                path = Path(value).expanduser()
                if not path.exists():
                    raise ConfigError(f"{name.replace('_', ' ')} {value!r}: no such file or folder on this machine")
                changes[name] = str(path.resolve())
        try:
            kind, _ = resolve(self.dataset)
        except ImoriError as err:
            raise ConfigError(str(err)) from None
        if kind == "path":
            changes["dataset"] = str(Path(self.dataset).expanduser().resolve())
        return self.replace(**changes) if changes else self

    def checked_here(self) -> "RunConfig":
        """This config with its paths made absolute, or a ConfigError for what stops it on
        this machine (an unknown dataset, a missing file, absent pretrained weights):
        what ``imori train`` and every submit check before a run is recorded."""
        config = self.with_absolute_paths()
        problems = config.machine_problems()
        if problems:
            raise ConfigError("; ".join(problems))
        return config

    def machine_problems(self) -> list[str]:
        """What stops this run on this machine before it is queued: pretrained weights that
        are neither here nor allowed to be downloaded. (Checked again by the worker that
        trains it, whose machine may differ.) Also a nonsense ``IMORI_MAX_DATASET_RAM``."""
        try:
            max_dataset_ram()
        except ImoriError as err:
            return [str(err)]
        if not (self.pretrained or self.pretrained_path) or self.download:
            return []
        if self.pretrained_path:
            if not Path(self.pretrained_path).is_file():
                return [f"the pretrained weights file {self.pretrained_path} does not exist on this machine"]
            return []
        try:
            present, where = pretrained_available(self.model)
        except ImoriError as err:
            return [str(err)]
        if present:
            return []
        return [
            f"ImageNet weights for {self.model} are not on this machine ({where}); upload a weights file, "
            "allow downloading them, or choose efficientnet_lite0, whose weights come with imori"
        ]


# -- the descriptions, read back ------------------------------------------------------------------


def described_fields(cls: type = RunConfig) -> Iterator[tuple[str, Setting]]:
    """(field name, its Setting) for every described field of ``cls``, in field order."""
    for f in dataclasses.fields(cls):
        description = f.metadata.get("setting")
        if description is not None:
            yield f.name, description


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_type(cls: type, name: str) -> tuple[type, bool]:
    """(the base type, whether None is allowed) of a field: ``int | None`` -> (int, True);
    ``tuple[float, ...] | None`` -> (tuple, True)."""
    return _split_hint(_type_hints(cls)[name])[:2]


def _split_hint(hint: Any) -> tuple[type, bool, Any]:
    """(base type, optional, the hint without None)."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    return (typing.get_origin(hint) or hint), optional, hint


def _coerce(name: str, value: Any, hint: Any, f: dataclasses.Field) -> Any:
    """One value from plain data to its field's type (lists to tuples, text through the
    setting's parser, whole floats to ints)."""
    if value is None:
        return None
    base, _, inner_hint = _split_hint(hint)
    description: Setting | None = f.metadata.get("setting")
    if isinstance(value, str) and base is not str and description is not None and description.parse is not None:
        value = description.parse(value)
        if value is None:
            return None
    if base is tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # A bare number: one value per axis of a size, one channel of a mean.
            value = parse_size(value) if name == "image_size" else (float(value),)
        if isinstance(value, (list, tuple)):
            inner = typing.get_args(inner_hint)
            kind = inner[0] if inner else None
            try:
                value = tuple(kind(v) if kind in (int, float, str) else v for v in value)
            except (TypeError, ValueError):
                raise ConfigError(f"{name}: {value!r} is not a list of {getattr(kind, '__name__', 'values')}") from None
            if name == "image_size" and len(value) != 2:
                raise ConfigError("image size is one number or two (height, width)")
        return value
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# -- several values at once ---------------------------------------------------------------------


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` on top; epochs and iterations replace each other (giving
    one clears the other), so a recipe of 100 iterations asked for 5 epochs trains 5 epochs."""
    values = dict(base)
    if overrides.get("epochs") is not None:
        values["iterations"] = None
    if overrides.get("iterations") is not None:
        values["epochs"] = None
    values.update(overrides)
    return values


def expand_sweep(config: RunConfig, sweep: Mapping[str, list[Any]]) -> tuple[list[RunConfig], list[str]]:
    """One config per combination of the sweep's values (``{"lr": [0.1, 0.01]}``), and
    every reason any of them cannot run, each labelled with its values."""
    keys = [k for k, values in sweep.items() if values]
    if not keys:
        return [config], config.problems()
    configs: list[RunConfig] = []
    problems: list[str] = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        changes = dict(zip(keys, combo))
        label = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in changes.items())
        try:
            candidate = config.replace(**changes)
        except ImoriError as err:
            problems.append(f"{label}: {err}")
            continue
        problems += [f"{label}: {reason}" for reason in candidate.problems()]
        configs.append(candidate)
    return configs, problems


def load_config_file(path: str) -> dict[str, Any]:
    """A saved config (YAML or JSON: ``imori show RUN --config`` writes one) as plain values."""
    import yaml

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML or JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file holds settings as name: value pairs")
    return data


def dump_config(config: RunConfig) -> str:
    """The config as YAML, every setting, in field order (what ``--config`` reads back)."""
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
