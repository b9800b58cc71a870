"""The torch side of the model catalog: build a model, train its parts, load weights into it.

What each model is (``ModelSpec``, ``MODELS``, ``get_spec``, ``pretrained_available``)
lives in ``core.models.specs``, which loads no torch; this module builds the spec's
network (a seed net by the builder its spec names, torchvision and timm models through
their own modules), and knows which parameters are the head, which freeze and which
learn at which rate.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from core.errors import ConfigError, ModelError
from core.models import efficientnet, torchvision_nets
from core.models.sources import PACKAGED_ARCHS
from core.models.specs import MODELS, ModelSpec, get_spec
from core.models.summary import unwrap_model
from core.models.torchvision_nets import clean_state_dict, describe_key_mismatch, shape_mismatches

# builder(num_classes, (height, width), options) -> model; torchvision and timm models build elsewhere.
Builder = Callable[[int, tuple[int, int], dict[str, Any]], nn.Module]


def seed_builder(spec: ModelSpec) -> Builder:
    """The builder a seed net's spec names (``"core.models.seed_nets:build_mynet"``): the
    catalog names it as text so that it loads no torch; the registry finds its own member."""
    module, _, function = spec.builder.partition(":")
    return getattr(importlib.import_module(module), function)


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

    ``pretrained`` (or a ``pretrained_path``) loads ImageNet weights into a pretrainable
    model's backbone: from that file, else for a torchvision model from the torch hub
    cache (``download`` allows fetching them), for efficientnet_lite0 from the package
    that ships them. ``freeze_backbone`` leaves only the head trainable.
    """
    spec = get_spec(name)
    opts = spec.resolve_options(options)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, not {num_classes!r}")
    height, width = image_size if image_size is not None else spec.size_for(opts)
    spec.check_size(height, width, opts)

    wants_weights = pretrained or pretrained_path is not None
    if spec.torchvision:
        state = None
        if wants_weights:
            state = torchvision_nets.pretrained_state_dict(name, pretrained_path, download=download)
        model = torchvision_nets.build(name, num_classes, state)
    elif name in PACKAGED_ARCHS:
        state = efficientnet.pretrained_state_dict(name, pretrained_path) if wants_weights else None
        model = efficientnet.build(name, num_classes, state, pooling=opts.get("pooling", "last"))
    else:
        if wants_weights:
            raise ModelError(
                f"{name} has no pretrained weights (these models have: "
                f"{', '.join(s.name for s in MODELS.values() if s.pretrainable)}); "
                f"to start from an earlier run, initialise from its checkpoint instead"
            )
        model = seed_builder(spec)(num_classes, (height, width), opts)

    if freeze_backbone:
        set_backbone_frozen(model, name, True)
    return model


def smallest_batchnorm_input(
    name: str, image_size: tuple[int, int] | None = None, options: Mapping[str, Any] | None = None
) -> int | None:
    """The fewest values per channel that any BatchNorm layer of ``name`` sees for one
    image of ``image_size`` (H x W of its input there; 1 for a BatchNorm1d), or None when
    the model has no BatchNorm. Found by one forward pass on the meta device (shapes only,
    no memory, no arithmetic). In training, BatchNorm needs more than one value per
    channel across the batch: ``batch_size * this`` must be at least 2."""
    spec = get_spec(name)
    with torch.device("meta"):
        model = build_model(name, 2, image_size=image_size, options=options)
    seen: list[int] = []

    def record(module, inputs):  # noqa: ARG001
        shape = inputs[0].shape
        seen.append(int(torch.Size(shape[2:]).numel()) if len(shape) > 2 else 1)

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not hooks:
        return None
    height, width = image_size or spec.size_for(options)
    try:
        with torch.no_grad():
            model.eval()(torch.empty(1, spec.in_channels, height, width, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return min(seen) if seen else None


def set_backbone_frozen(model: nn.Module, name: str, frozen: bool = True) -> nn.Module:
    """Freeze (or unfreeze) every parameter of ``model`` but its head's. An optimizer built
    over all of them skips the frozen ones (their gradients stay None), so one optimizer
    serves a head-only phase and the all-layers phase after it."""
    head = get_spec(name).head + "."
    for param_name, param in unwrap_model(model).named_parameters():
        if not param_name.startswith(head):
            param.requires_grad_(not frozen)
    return model


def param_groups(
    model: nn.Module, name: str, lr: float, backbone_lr_mult: float = 1.0
) -> list[dict]:
    """Optimizer parameter groups: the head at ``lr``, the backbone at ``lr * backbone_lr_mult``.

    Models without pretrained weights (the seed nets) train as one group (``"all"``).
    Only trainable parameters are included and empty groups are left out, so a frozen
    backbone adds no group.
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
    if not spec.pretrainable:
        return [{"name": "all", "params": [p for _, p in named], "lr": lr}]
    head = spec.head + "."
    head_params = [p for n, p in named if n.startswith(head)]
    backbone_params = [p for n, p in named if not n.startswith(head)]
    groups = [
        {"name": "head", "params": head_params, "lr": lr},
        {"name": "backbone", "params": backbone_params, "lr": lr * backbone_lr_mult},
    ]
    return [group for group in groups if group["params"]]


def set_train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, except that BatchNorm layers whose parameters are all frozen stay in eval.

    With plain ``train()`` a frozen backbone's BatchNorm layers still normalise by each
    batch's statistics and overwrite their ImageNet running statistics, so the head
    learns on features that evaluation (running statistics) never shows it. Frozen
    here, the backbone is really fixed: same features in training and evaluation.
    """
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
    return model


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
