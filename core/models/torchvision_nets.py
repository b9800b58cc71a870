"""torchvision models with a new head, and where their ImageNet weights come from.

Weights are looked for in this order: a file the user names, the torch hub cache
(``$TORCH_HOME/hub/checkpoints/<torchvision's file name>``), and only when asked a
download. A closed network therefore ends in a clear ``ModelError`` that names the
expected path, never in a hang or a traceback.

torchvision itself is imported lazily: listing models or building a seed net should
not pay for importing it.
"""

from __future__ import annotations

import os
import pickle
import socket
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import ModelError
from core.models.sources import TORCHVISION_ARCHS, expected_cache_path, weights_url
from core.models.weights import strip_wrapper_prefixes
from core.text import plural

# Short, because a closed network should fail within seconds, not minutes.
DOWNLOAD_TIMEOUT_S = 15.0


def build(
    name: str, num_classes: int, state_dict: Mapping[str, torch.Tensor] | None = None
) -> nn.Module:
    """Build ``name`` with a ``num_classes`` head; ``state_dict`` initialises the backbone."""
    import torchvision.models

    arch = TORCHVISION_ARCHS[name]
    # Built as the 1000-class original so an ImageNet file's keys all have a place.
    model = getattr(torchvision.models, arch.builder)(weights=None)
    old_head = model.get_submodule(arch.head)
    model.set_submodule(arch.head, nn.Linear(old_head.in_features, num_classes))
    if state_dict is not None:
        _load_backbone(model, name, state_dict)
    return model


def _load_backbone(model: nn.Module, name: str, state_dict: Mapping[str, torch.Tensor]) -> None:
    load_backbone(model, name, TORCHVISION_ARCHS[name].head, state_dict)


def load_backbone(
    model: nn.Module, name: str, head: str, state_dict: Mapping[str, torch.Tensor]
) -> None:
    """Load every weight outside ``head``; the file's own head (ImageNet's 1000 classes) is dropped.

    Anything else missing, left over or of another shape means the file is not ``name``'s:
    ``ModelError``. Shared by every model family that has pretrained weights.
    """
    prefix = head + "."
    backbone = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    problem = state_dict_mismatch(own, backbone)
    if problem:
        raise ModelError(f"the pretrained weights are not a {name} state_dict: {problem}")
    model.load_state_dict(backbone, strict=False)


def pretrained_state_dict(
    name: str, path: str | os.PathLike | None = None, download: bool = False
) -> dict[str, torch.Tensor]:
    """ImageNet weights for ``name``: from ``path``, else the hub cache, else (if allowed) downloaded."""
    if path is not None:
        return read_weights_file(path)
    cached = expected_cache_path(name)
    if os.path.isfile(cached):
        return read_weights_file(cached)
    url = weights_url(name)
    how_to = (
        f"Put torchvision's file ({url}) at {cached}, "
        f"or give a local weights file with --pretrained-path FILE"
    )
    if not download:
        raise ModelError(
            f"pretrained weights for {name} are not on this machine. "
            f"{how_to}, or allow downloading where the network is open."
        )
    # load_state_dict_from_url has no timeout of its own; the socket default bounds it.
    # (Process-wide for a moment, which is acceptable while a model is being built.)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        state = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except Exception as err:  # URLError, timeouts, hash mismatch: all mean "no weights"
        raise ModelError(
            f"could not download pretrained weights for {name} from {url} ({_first_line(err)}). "
            f"{how_to}."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return clean_state_dict(state, source=url)


def read_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state_dict file safely (``weights_only=True``), or raise a ``ModelError``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch.save writes a zip; one the safe loader refuses holds pickled objects.
        if zipfile.is_zipfile(path):
            raise ModelError(
                f"{path} holds more than weights (a whole pickled model?); imori loads only "
                f"state_dicts. Re-save it with torch.save(model.state_dict(), path)."
            ) from None
        raise ModelError(
            f"{path} is not a PyTorch weights file (one written by torch.save)"
        ) from None
    except Exception as err:  # not a zip/pickle at all, truncated, ...
        raise ModelError(f"{path} is not a PyTorch weights file ({_first_line(err)})") from None
    return clean_state_dict(obj, source=str(path))


def clean_state_dict(obj: Any, source: str = "the weights") -> dict[str, torch.Tensor]:
    """A plain ``{name: tensor}`` dict from a state_dict or a checkpoint dict holding one.

    Accepts ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers and strips the prefixes
    PyTorch's own wrappers add (``core.models.weights.strip_wrapper_prefixes``).
    """
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ModelError(f"{source} is not a state_dict (expected a dict of tensors)")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelError(f"{source} is not a state_dict: {bad[0]!r} is not a named tensor")
    return strip_wrapper_prefixes(dict(obj))


def shape_mismatches(
    own: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor]
) -> list[str]:
    """Keys present in both whose tensor shapes differ, as ``"key (a vs b)"`` strings."""
    return [
        f"{k} ({tuple(other[k].shape)} vs {tuple(v.shape)})"
        for k, v in own.items()
        if k in other and other[k].shape != v.shape
    ]


def describe_key_mismatch(missing: list[str], unexpected: list[str], shapes: list[str] = ()) -> str:
    """A short human description of missing/unexpected keys and shape mismatches ('' if none)."""
    parts = []
    if missing:
        parts.append(f"{plural(len(missing), 'missing key')}, e.g. {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{plural(len(unexpected), 'unexpected key')}, e.g. {', '.join(unexpected[:3])}")
    if shapes:
        examples = ", ".join(shapes[:3])
        parts.append(f"{len(shapes)} shape mismatch(es) (file vs model), e.g. {examples}")
    return "; ".join(parts)


def state_dict_mismatch(own: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor]) -> str:
    """How ``other`` (weights from a file) fails to fit ``own`` (a model's state_dict):
    missing and unexpected keys and shape mismatches, in words; '' when it fits."""
    return describe_key_mismatch(
        [k for k in own if k not in other],
        [k for k in other if k not in own],
        shape_mismatches(own, other),
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
