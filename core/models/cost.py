"""What a backbone costs on this machine's CPU: milliseconds per image at its own input
size, measured once (a forward pass in eval mode, the default threads) and cached under
``IMORI_HOME/cache/model_costs.json`` by model, size, processor, torch version and threads,
so ``imori models`` and New run can show it beside the model's ImageNet top-1; and what a
run of it should take here (``training_seconds``), from that figure and the precision this
machine trains in (``core.precision``), never from another machine's timings."""

from __future__ import annotations

import json
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path

import torch

from core.config import RunConfig
from core.devices import default_threads
from core.files import atomic_write
from core.models.registry import build_model
from core.models.specs import get_spec
from core.paths import cache_dir
from core.precision import resolve_precision, speedup

BATCH = 2  # images a timed forward pass holds
# A training step's forward and backward passes cost about three forward passes: the
# backward pass about twice the forward (Kaplan et al. 2020: 6N training FLOPs per
# example against 2N for the forward pass).
TRAIN_STEP_FORWARDS = 3.0
REPEATS = 5  # timed passes, after one warm-up; the fastest counts (others on the cores only slow it)


def _processor() -> str:
    """The CPU's model name (Linux), else the machine's architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def cost_key(name: str) -> str:
    """What a measurement holds for: the model at its size, the processor, torch, the threads."""
    height, width = get_spec(name).default_size
    return f"{name}@{height}x{width}|{_processor()}|torch {version('torch')}|threads {default_threads()}"


def _cache() -> Path:
    return cache_dir() / "model_costs.json"


def _load() -> float:
    """The machine's one-minute load average per core (0 where it cannot be read)."""
    try:
        return os.getloadavg()[0] / max(1, os.cpu_count() or 1)
    except OSError:
        return 0.0


def _entry(name: str) -> dict | None:
    try:
        found = json.loads(_cache().read_text()).get(cost_key(name))
    except (OSError, ValueError):
        return None
    return {"ms": found, "load": None} if isinstance(found, (int, float)) else found


def cached_cpu_ms(name: str) -> float | None:
    """The cached milliseconds per image of ``name`` on this machine, or None if not measured."""
    entry = _entry(name)
    return entry["ms"] if entry else None


def cpu_ms_per_image(name: str) -> float:
    """Milliseconds per image of ``name``'s forward pass on this CPU at its own input size
    (randomly initialised weights cost the same as pretrained ones), measured once and
    cached. A figure measured while the machine was busy (other work on its cores inflates
    it) is measured again once the machine is idler. Raises ModelError for an unknown model."""
    key = cost_key(name)
    entry = _entry(name)
    load = _load()
    if entry is not None and (entry.get("load") is None or entry["load"] <= max(0.5, load + 0.25)):
        return entry["ms"]
    spec = get_spec(name)
    model = build_model(name, 10).eval()
    x = torch.rand(BATCH, spec.in_channels, *spec.default_size)
    torch.set_num_threads(default_threads())
    times = []
    with torch.inference_mode():
        model(x)  # warm-up: allocations, oneDNN's first plans
        for _ in range(REPEATS):
            started = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - started)
    ms = round(1000 * min(times) / BATCH, 2)
    try:
        known = json.loads(_cache().read_text())
    except (OSError, ValueError):
        known = {}
    known[key] = {"ms": ms, "load": round(load, 2)}
    try:
        with atomic_write(_cache(), "w", encoding="utf-8") as handle:
            handle.write(json.dumps(known, indent=2) + "\n")
    except OSError:  # a read-only IMORI_HOME: the figure stands, measured again next time
        pass
    return ms


def training_seconds(config: RunConfig, train_images: int, eval_images: int, *, ms_per_image: float | None = None
                     ) -> float | None:
    """Seconds ``config`` should take to train on this machine's CPU with ``train_images``
    training and ``eval_images`` validation + test images: every epoch a training pass
    (``TRAIN_STEP_FORWARDS`` forward passes an image) and an evaluation (one), except the
    frozen-backbone epochs (``freeze_epochs``, or all with ``freeze_backbone``), which cost
    one forward pass of every image once (the cached features) and nearly nothing after;
    at this machine's measured forward pass (``ms_per_image``, default the cached
    ``cached_cpu_ms``, scaled by the input's area) divided by the speed-up of the precision
    this machine trains the model in (``resolve_precision`` of the config's ``precision``:
    fp32 where the CPU has no native bf16). Decoding and checkpoints are left out.

    None (no estimate) where nothing was measured here, for a run on CUDA, or for a run
    whose length is in iterations with no training images to turn them into epochs.
    """
    if config.device == "cuda":
        return None
    ms = cached_cpu_ms(config.model) if ms_per_image is None else ms_per_image
    if ms is None or train_images <= 0:
        return None
    native = get_spec(config.model).default_size
    height, width = config.input_size()
    ms *= (height * width) / (native[0] * native[1])
    if config.epochs is not None:
        epochs = float(config.epochs)
    else:
        epochs = config.iterations * config.batch_size / train_images
    frozen = epochs if config.freeze_backbone else min(float(config.freeze_epochs or 0), epochs)
    passes = (train_images + eval_images) if frozen else 0.0
    passes += (epochs - frozen) * (TRAIN_STEP_FORWARDS * train_images + eval_images)
    precision = resolve_precision(config.precision, "cpu", config.model)
    return passes * ms / 1000 / speedup(precision, "cpu", config.model)
