"""The model registry: what each model takes, how to build it, and how to train its parts.

Every model is a ``ModelSpec`` in ``MODELS``; its name is the registry key used in run
configurations, checkpoints and the dashboard. A spec knows its input (channels, the
sizes it accepts), its output (logits or log-probabilities, hence its loss), its
classifier head (replaced for a new class count, kept trainable when the backbone is
frozen) and the preprocessing its tutorial used.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from core.errors import ConfigError, ModelError
from core.models import seed_nets, torchvision_nets
from core.models.summary import unwrap_model
from core.models.torchvision_nets import clean_state_dict, describe_key_mismatch, shape_mismatches

# builder(num_classes, (height, width), options) -> model; torchvision models build elsewhere.
Builder = Callable[[int, tuple[int, int], dict[str, Any]], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: its input, output, head and default preprocessing."""

    name: str
    title: str
    seed: str | None
    in_channels: int
    default_size: tuple[int, int]
    output: str  # "logits" or "log_probs"
    allowed_sizes: str
    torchvision: bool
    head: str = ""  # submodule path of the classifier head, e.g. "fc" or "classfier.2"
    # Size rule: either one exact size (which may depend on the options), or a minimum
    # and a multiple that H and W must each satisfy.
    exact_size: Callable[[dict[str, Any]], tuple[int, int]] | None = field(
        default=None, repr=False, compare=False
    )
    min_size: int = 1
    multiple: int = 1
    # option name -> allowed values; the first is the default.
    option_choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict, compare=False)
    channel_order: str = "RGB"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    builder: Builder | None = field(default=None, repr=False, compare=False)

    def resolve_options(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``options`` checked and completed with defaults; unknown or bad ones -> ``ModelError``."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.option_choices))
        if unknown:
            known = ", ".join(self.option_choices) or "none"
            raise ModelError(f"{self.name} has no option {unknown[0]!r} (its options: {known})")
        resolved = {}
        for key, choices in self.option_choices.items():
            value = options.get(key, choices[0])
            # Forms and the CLI may hand over "3" for 3; a bool is never a kernel size.
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            if isinstance(value, bool) or value not in choices:
                allowed = " or ".join(map(str, choices))
                raise ModelError(f"{self.name}: {key} must be {allowed}, not {value!r}")
            resolved[key] = value
        return resolved

    def size_for(self, options: Mapping[str, Any] | None = None) -> tuple[int, int]:
        """The default (H, W) input size with these options."""
        opts = self.resolve_options(options)
        return self.exact_size(opts) if self.exact_size else self.default_size

    def check_size(self, height: int, width: int, options: Mapping[str, Any] | None = None) -> None:
        """Raise ``ModelError`` unless the model takes ``height`` x ``width`` input."""
        opts = self.resolve_options(options)
        try:
            height, width = operator.index(height), operator.index(width)
        except TypeError:
            raise ModelError(
                f"image size must be whole numbers, not {height!r}x{width!r}"
            ) from None
        if self.exact_size:
            ok = (height, width) == self.exact_size(opts)
        else:
            ok = all(s >= self.min_size and s % self.multiple == 0 for s in (height, width))
        if not ok:
            with_opts = "".join(f" with {k} {v}" for k, v in opts.items())
            raise ModelError(
                f"{self.name}{with_opts} cannot take {height}x{width} input; "
                f"allowed sizes: {self.allowed_sizes}"
            )

    def default_preprocessing(
        self,
        height: int | None = None,
        width: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Preprocessing:
        """The tutorial's preprocessing; one given side makes a square, none the default size."""
        opts = self.resolve_options(options)
        if height is None and width is None:
            height, width = self.size_for(opts)
        else:
            height = height if height is not None else width
            width = width if width is not None else height
        self.check_size(height, width, opts)
        return Preprocessing(
            height=height,
            width=width,
            channels=self.in_channels,
            channel_order=self.channel_order,
            mean=self.mean,
            std=self.std,
        )

    def default_loss(self) -> str:
        """``"nll"`` for a model that outputs log-probabilities, else ``"cross_entropy"``."""
        return "nll" if self.output == "log_probs" else "cross_entropy"


def _lenet5_size(opts: dict[str, Any]) -> tuple[int, int]:
    return (32, 32) if opts["kernel"] == 5 else (28, 28)


_TORCHVISION = dict(
    in_channels=3,
    default_size=(224, 224),
    output="logits",
    torchvision=True,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="mynet",
            title="VGG-style CNN with BatchNorm (seed 000 'Mynet')",
            seed="000",
            in_channels=3,
            default_size=(64, 64),
            output="logits",
            allowed_sizes="H and W multiples of 16, at least 16",
            torchvision=False,
            head="fc_out",
            min_size=16,
            multiple=16,
            # Seed 000 reads images with cv2 (BGR) and only divides by 255.
            channel_order="BGR",
            builder=lambda n, size, opts: seed_nets.Mynet(n, *size),
        ),
        ModelSpec(
            name="mnist_cnn",
            title="MNIST CNN: two 5x5 convs, two fc layers, log-softmax output (seed 003)",
            seed="003",
            in_channels=1,
            default_size=(28, 28),
            output="log_probs",
            allowed_sizes="28x28 only",
            torchvision=False,
            head="classfier.2",
            exact_size=lambda opts: (28, 28),
            mean=(0.1307,),
            std=(0.3081,),
            builder=lambda n, size, opts: seed_nets.MnistCNN(n),
        ),
        ModelSpec(
            name="lenet5",
            title="LeNet-5 (seed 004; kernel 5 is the classic, 3 the seed's own code)",
            seed="004",
            in_channels=1,
            default_size=(32, 32),
            output="logits",
            allowed_sizes="32x32 with kernel 5 (the default), 28x28 with kernel 3",
            torchvision=False,
            head="fc3",
            exact_size=_lenet5_size,
            option_choices={"kernel": (5, 3)},
            mean=(0.5,),
            std=(0.5,),
            builder=lambda n, size, opts: seed_nets.LeNet5(n, kernel=opts["kernel"]),
        ),
        ModelSpec(
            name="tiny_net",
            title="Tiny conv net: one 3x3 conv, one fc layer (seed 002)",
            seed="002",
            in_channels=1,
            default_size=(32, 32),
            output="logits",
            allowed_sizes="32x32 only",
            torchvision=False,
            head="fc1",
            exact_size=lambda opts: (32, 32),
            builder=lambda n, size, opts: seed_nets.TinyNet(n),
        ),
        ModelSpec(
            name="resnet18",
            title="ResNet-18 from torchvision, new head; fine-tuning as in seed 002",
            seed="002",
            allowed_sizes="H and W at least 16",
            head=torchvision_nets.ARCHS["resnet18"].head,
            min_size=16,
            **_TORCHVISION,
        ),
        ModelSpec(
            name="mobilenet_v3_small",
            title="MobileNetV3-Small from torchvision, new head (small and fast on a CPU)",
            seed=None,
            allowed_sizes="H and W at least 16",
            head=torchvision_nets.ARCHS["mobilenet_v3_small"].head,
            min_size=16,
            **_TORCHVISION,
        ),
        ModelSpec(
            name="vgg16",
            title="VGG-16 from torchvision, new head (seed 004 saves and loads it)",
            seed="004",
            # Five 2x2 poolings: below 32 the feature map vanishes.
            allowed_sizes="H and W at least 32",
            head=torchvision_nets.ARCHS["vgg16"].head,
            min_size=32,
            **_TORCHVISION,
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The spec registered as ``name``; an unknown name -> ``ModelError`` listing the known ones."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def list_models() -> list[ModelSpec]:
    """Every registered model, seed nets first."""
    return list(MODELS.values())


def build_model(
    name: str,
    num_classes: int,
    *,
    image_size: tuple[int, int] | None = None,
    options: Mapping[str, Any] | None = None,
    pretrained: bool = False,
    pretrained_path: str | None = None,
    download: bool = False,
    freeze_backbone: bool = False,
) -> nn.Module:
    """A fresh model for ``num_classes`` classes and ``image_size`` (H, W) input.

    ``pretrained`` (or a ``pretrained_path``) loads ImageNet weights into a torchvision
    model's backbone, from that file or the torch hub cache; ``download`` allows fetching
    them. ``freeze_backbone`` leaves only the head trainable.
    """
    spec = get_spec(name)
    opts = spec.resolve_options(options)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, not {num_classes!r}")
    height, width = image_size if image_size is not None else spec.size_for(opts)
    spec.check_size(height, width, opts)

    if spec.torchvision:
        state = None
        if pretrained or pretrained_path is not None:
            state = torchvision_nets.pretrained_state_dict(name, pretrained_path, download=download)
        model = torchvision_nets.build(name, num_classes, state)
    else:
        if pretrained or pretrained_path is not None:
            raise ModelError(
                f"{name} has no pretrained weights (torchvision models have: "
                f"{', '.join(s.name for s in MODELS.values() if s.torchvision)}); "
                f"to start from an earlier run, initialise from its checkpoint instead"
            )
        model = spec.builder(num_classes, (height, width), opts)

    if freeze_backbone:
        head = spec.head + "."
        for param_name, param in model.named_parameters():
            if not param_name.startswith(head):
                param.requires_grad_(False)
    return model


def param_groups(
    model: nn.Module, name: str, lr: float, backbone_lr_mult: float = 1.0
) -> list[dict]:
    """Optimizer parameter groups: the head at ``lr``, the backbone at ``lr * backbone_lr_mult``.

    Seed nets train as one group (``"all"``). Only trainable parameters are included
    and empty groups are left out, so a frozen backbone adds no group.
    """
    spec = get_spec(name)
    if not lr > 0:  # also refuses NaN
        raise ConfigError(f"learning rate must be positive, not {lr!r}")
    if not backbone_lr_mult > 0:
        raise ConfigError(
            f"backbone learning-rate multiplier must be positive, not {backbone_lr_mult!r} "
            f"(to keep the backbone fixed, freeze it)"
        )
    named = [(n, p) for n, p in unwrap_model(model).named_parameters() if p.requires_grad]
    if not named:
        raise ModelError(f"{name} has no trainable parameters")
    if not spec.torchvision:
        return [{"name": "all", "params": [p for _, p in named], "lr": lr}]
    head = spec.head + "."
    head_params = [p for n, p in named if n.startswith(head)]
    backbone_params = [p for n, p in named if not n.startswith(head)]
    groups = [
        {"name": "head", "params": head_params, "lr": lr},
        {"name": "backbone", "params": backbone_params, "lr": lr * backbone_lr_mult},
    ]
    return [group for group in groups if group["params"]]


def load_init_weights(
    model: nn.Module, name: str, state_dict: Mapping[str, torch.Tensor]
) -> list[str]:
    """Initialise ``model`` from an earlier checkpoint of the same model; returns the skipped keys.

    A head of another size (the earlier run had another class count) is skipped and
    keeps its fresh initialisation; anything else that does not fit means the
    checkpoint is of another architecture (or other options or input size): ``ModelError``.
    """
    spec = get_spec(name)
    model = unwrap_model(model)
    state = clean_state_dict(state_dict, source="the checkpoint")
    own = model.state_dict()
    head = spec.head + "."
    mismatched = shape_mismatches(own, state)
    head_differs = any(k.startswith(head) for k in mismatched)
    problem = describe_key_mismatch(
        [k for k in own if k not in state],
        [k for k in state if k not in own],
        [k for k in mismatched if not k.startswith(head)],
    )
    if problem:
        raise ModelError(
            f"the checkpoint is of another architecture than {name} "
            f"(or was made with other options or another input size): {problem}"
        )
    # A head is one unit: if its shape changed, none of it is loaded.
    skipped = sorted(k for k in own if k.startswith(head)) if head_differs else []
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    return skipped
