"""Features of a frozen backbone, computed once and cached (Teachable Machine's trick).

While a pretrained backbone is frozen and the images are not augmented, every epoch
feeds it the same images and gets the same features back, so only the head needs to
train. ``cached_features`` runs the backbone once over a split (the head swapped for
``nn.Identity``, in eval mode, under ``no_grad``) and keeps the result on disk under
``IMORI_HOME/cache/features``, keyed by the images' content, the backbone's weights and
the preprocessing: a second run on the same data and weights reads it in milliseconds,
and any change to one of the three computes it anew.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from core import paths
from core.data import cache
from core.data.preprocess import Preprocessing


@contextmanager
def head_removed(model: nn.Module, head: str):
    """``model`` with its classifier head (a submodule path such as ``"fc"`` or
    ``"classifier.3"``) replaced by ``nn.Identity`` for the duration: it then returns
    the backbone's features, ``N x D``."""
    original = model.get_submodule(head)
    model.set_submodule(head, nn.Identity())
    try:
        yield model
    finally:
        model.set_submodule(head, original)


def fingerprint(images: "torch.Tensor | cache.DiskImages", model: nn.Module, head: str, prep: Preprocessing, precision: str = "fp32") -> str:
    """A digest of the images' bytes, the backbone's weights (everything but the head), the
    preprocessing and the precision of the pass: what the features depend on."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{cache.CACHE_VERSION}|{prep.cache_key()}|{prep.mean}|{prep.std}|{head}|{tuple(images.shape)}|{precision}".encode())
    for chunk in cache.chunks(images):  # the same digest as the whole, without a copy of it
        h.update(memoryview(chunk.contiguous().numpy()).cast("B"))
    prefix = head + "."
    for name, tensor in model.state_dict().items():
        if name.startswith(prefix):
            continue
        h.update(name.encode())
        h.update(memoryview(tensor.detach().to("cpu").reshape(-1).contiguous().view(torch.uint8).numpy()).cast("B"))
    return h.hexdigest()


@torch.no_grad()
def extract_features(
    model: nn.Module,
    head: str,
    images: torch.Tensor,
    prep: Preprocessing,
    device: torch.device,
    *,
    batch_size: int = 64,
    autocast_dtype: torch.dtype | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """The backbone's features of ``images`` (``uint8 N x C x H x W``: a tensor, or
    ``cache.DiskImages`` read a batch at a time) as ``float32 N x D`` on the CPU,
    computed in eval mode in batches of ``batch_size``."""
    was_training = model.training
    model.eval()
    out: list[torch.Tensor] = []
    try:
        with head_removed(model, head):
            for start in range(0, len(images), batch_size):
                x = prep.normalize(images[start : start + batch_size].to(device))
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    out.append(model(x).float().flatten(1).cpu())
                if progress is not None:
                    progress(min(start + batch_size, len(images)), len(images))
    finally:
        model.train(was_training)
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)


def cached_features(
    model: nn.Module,
    head: str,
    images: torch.Tensor,
    prep: Preprocessing,
    device: torch.device,
    **options,
) -> tuple[torch.Tensor, bool]:
    """(features of ``images``, whether they came from the cache). See ``extract_features``."""
    key = fingerprint(images, model, head, prep, str(options.get("autocast_dtype") or "fp32"))
    path = Path(paths.cache_dir()) / "features" / f"{key}.pt"
    stored = cache.load(path)
    if stored is not None and isinstance(stored.get("features"), torch.Tensor):
        return stored["features"], True
    features = extract_features(model, head, images, prep, device, **options)
    cache.save(path, {"features": features})
    return features, False
