"""A run's parts, built from its ``RunConfig``: the data and its split, the model, the
optimizer and the loss, on the device and with the precision the run asks for.

``core.train.Trainer`` takes these parts and loops over them; building them is kept apart
from the loop so that the loop reads as the loop (pytorch/examples' ``main()`` builds,
``train()`` trains). What depends on this machine (the data, the weights, CUDA) fails here,
as the run's error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from core.checkpoint import load_checkpoint
from core.config import RunConfig
from core.data.cache import DiskImages, chunks, take
from core.data.decode import decode_progress
from core.data.memory import format_bytes, max_dataset_ram
from core.data.preprocess import Preprocessing
from core.data.registry import load_dataset
from core.data.splits import stratified_split
from core.devices import default_threads, resolve_device
from core.errors import ConfigError
from core.models.registry import build_model, load_init_weights, param_groups
from core.models.specs import ModelSpec, get_spec, pretrained_available
from core.models.summary import summarize
from core.precision import resolve_precision
from core.predict import image_facts
from core.ranks import Ranks
from core.recorder import Recorder, Stage
from core.text import plural

# Keep datasets below this many bytes on the GPU for the whole run (no host copies).
GPU_RESIDENT_BYTES = 2 * 1024**3


def class_weights(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """scikit-learn's ``class_weight="balanced"``: ``n_samples / (n_classes * count)`` per
    class (float32, shape ``classes``), so every class weighs the same in the loss; a class
    with no training images gets weight 0."""
    counts = torch.bincount(labels.cpu(), minlength=classes).float()
    weights = torch.zeros(classes)
    present = counts > 0
    weights[present] = len(labels) / (int(present.sum()) * counts[present])
    return weights


def loss_function(name: str, weight: torch.Tensor | None, label_smoothing: float = 0.0) -> torch.nn.Module:
    """The training loss: NLL for log-probabilities, cross-entropy for logits, with class
    weights. Label smoothing is torch's ``CrossEntropyLoss(label_smoothing=e)`` for both:
    on log-probabilities, log_softmax is the identity, so cross-entropy on them is the NLL
    and its smoothing is the NLL's smoothing."""
    if label_smoothing:
        return torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    return torch.nn.NLLLoss(weight=weight) if name == "nll" else torch.nn.CrossEntropyLoss(weight=weight)


def pretrained_source(config: RunConfig) -> str | None:
    """Where a run's pretrained weights come from: the file it was given, else the one the
    registry finds on this machine (None when it starts from fresh weights)."""
    if config.pretrained_path:
        return str(config.pretrained_path)
    if not config.pretrained:
        return None
    present, where = pretrained_available(config.model)
    return where if present else None


def training_data_facts(
    train_x: torch.Tensor, train_y: torch.Tensor, val_y: torch.Tensor, classes: list[str], report: Any
) -> dict[str, Any]:
    """What prediction later compares an upload with, kept in every checkpoint: the training
    images' mean brightness (0..1, at the model's size) and its spread across images, the
    original image sizes when the dataset's report knows them, and how many validation
    images each class has (validation cannot pick a best checkpoint from a handful)."""
    # A chunk at a time: a float copy of the whole split would take 4x its decoded size.
    brightness = (torch.cat([c.float().mean(dim=(1, 2, 3)).div_(255.0) for c in chunks(train_x)])
                  if len(train_x) else torch.zeros(1))
    counts = torch.bincount(val_y.cpu(), minlength=len(classes)).tolist() if len(val_y) else [0] * len(classes)
    return {
        "brightness_mean": float(brightness.mean()),
        "brightness_std": float(brightness.std()) if len(brightness) > 1 else 0.0,
        "train_images": int(len(train_y)),
        "val_per_class": dict(zip(classes, (int(c) for c in counts))),
        "sizes": dict(getattr(report, "sizes", None) or {}),
        **image_facts(train_x, getattr(report, "modes", None)),
    }


class _DecodeStage:
    """Decoding a dataset as a stage (``core.recorder.Stage``) once it has taken a second:
    a cached dataset says nothing. The decoder reports each split's images separately, so
    the pieces add up (``total`` grows as each piece starts)."""

    def __init__(self, recorder: Recorder, dataset: str) -> None:
        self.recorder, self.dataset = recorder, dataset
        self.started = time.time()
        self.stage: Stage | None = None
        self.offset = self.last_done = self.last_total = 0

    def __call__(self, done: int, total: int) -> None:
        if done < self.last_done or (self.last_total and total != self.last_total):
            self.offset += self.last_total  # the next split's images
        self.last_done, self.last_total = done, total
        if self.stage is None:
            if time.time() - self.started < 1.0 or done >= total:
                return
            self.stage = Stage(self.recorder, f"decoding {self.dataset}", self.offset + total).__enter__()
            self.stage.started = self.started
        self.stage.total = max(self.stage.total, self.offset + total)
        self.stage(self.offset + done)

    def __enter__(self) -> _DecodeStage:
        return self

    def __exit__(self, *exc) -> None:
        if self.stage is not None:
            self.stage.__exit__(*exc)


@dataclass
class RunParts:
    """What one run trains: its split data, its model (``net``: as the loop calls it, in DDP
    or compiled), its optimizer and loss, and the facts its checkpoints carry."""

    device: torch.device
    prep: Preprocessing
    classes: list[str]
    train_x: Any  # uint8 images in memory, or cache.DiskImages
    train_y: torch.Tensor
    val_x: Any
    val_y: torch.Tensor
    test_x: Any
    test_y: torch.Tensor
    data_facts: dict[str, Any]
    model: torch.nn.Module
    net: torch.nn.Module
    spec: ModelSpec
    summary: dict[str, Any]
    pretrained_weights: str | None
    precision: str
    amp_dtype: torch.dtype | None
    channels_last: bool
    optimizer: torch.optim.Optimizer
    criterion: torch.nn.Module
    ema: Any = None  # timm.utils.ModelEmaV3 of ``model`` when the run keeps an average of its weights


def build_parts(config: RunConfig, recorder: Recorder | None = None, ranks: Ranks | None = None) -> RunParts:
    """The parts of ``config``'s run on this machine (``ranks``: this process's part of a run
    on several). Sets torch's threads and seeds torch before the model is built, so a run's
    initial weights depend on its seed alone. Raises ImoriError for what this machine lacks."""
    recorder = recorder or Recorder()
    ranks = ranks or Ranks()
    # Validated where it entered (the CLI, the form, the client); what depends on this
    # machine (data, weights, CUDA) is found out below, as the pieces are built.
    device = resolve_device(config.device)
    torch.set_num_threads(ranks.threads(config.threads or default_threads()))

    prep = config.preprocessing()
    with _DecodeStage(recorder, config.dataset) as decoding, decode_progress(decoding):
        data = load_dataset(
            config.dataset, prep, data_root=config.data_root, download=config.download, seed=config.seed
        )
    classes = list(data.classes)
    if data.report is not None and data.report.skipped:
        recorder.on_log(f"skipped {plural(len(data.report.skipped), 'unreadable file')} in {config.dataset}")
    if isinstance(data.train.images, DiskImages):
        recorder.on_log(
            f"{config.dataset}'s decoded images are over IMORI_MAX_DATASET_RAM ({format_bytes(max_dataset_ram())}): "
            f"batches are read by index from {data.train.images.path}")
    keep, held = stratified_split(data.train.labels, config.val_fraction, config.seed)
    on_gpu = device.type == "cuda" and data.train.images.numel() < GPU_RESIDENT_BYTES
    place = device if on_gpu else torch.device("cpu")
    # Images in memory or on disk (cache.DiskImages): the same indices give the same
    # batches, so a streamed run records what the same run in memory does.
    train_x = take(data.train.images, keep).to(place)
    train_y = data.train.labels[keep].to(place)
    val_x, val_y = take(data.train.images, held), data.train.labels[held]
    test_x, test_y = data.test.images, data.test.labels
    if len(train_y) < 2:
        raise ConfigError(f"{config.dataset} has too few training images ({len(train_y)}) to train on")

    data_facts = training_data_facts(train_x, train_y, val_y, classes, data.report)

    # Seed right before the model is built so its initial weights depend on the seed alone.
    torch.manual_seed(config.seed)
    model = build_model(
        config.model,
        len(classes),
        image_size=prep.size,
        options=config.model_options,
        pretrained=config.pretrained,
        pretrained_path=config.pretrained_path,
        download=config.download,
        freeze_backbone=config.freeze_backbone,
    )
    spec = get_spec(config.model)
    pretrained_weights = pretrained_source(config)
    if pretrained_weights:
        recorder.on_log(f"pretrained weights: {pretrained_weights}")
    if config.init_from:
        start = load_checkpoint(config.init_from, model=config.model, options=config.model_options)
        skipped = load_init_weights(model, config.model, start.state_dict)
        note = f" (new head, {len(skipped)} tensors not taken)" if skipped else ""
        recorder.on_log(f"initialised from {config.init_from}{note}")
    summary = summarize(model).to_dict()
    # Precision: bf16 autocast where the device has it and it pays for this model
    # (core.precision); the loss, the optimizer state and the metrics stay fp32.
    precision = resolve_precision(config.precision, device.type, config.model)
    amp_dtype = torch.bfloat16 if precision == "bf16" else None
    # Channels-last is what makes bf16 pay on the CPU (measured: bench/precision.py).
    channels_last = config.channels_last and (device.type == "cuda" or precision == "bf16")
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = ranks.wrap(model)  # DistributedDataParallel on several processes
    net = torch.compile(net) if config.compile else net

    groups = param_groups(model, config.model, config.lr, config.effective_backbone_lr_mult())
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    elif config.optimizer == "adam":
        optimizer = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    weight = class_weights(train_y, len(classes)).to(device) if config.class_weights == "balanced" else None
    criterion = loss_function(config.loss_name(), weight, config.label_smoothing)
    ranks.use_class_weight(weight)
    ema = None
    if config.ema:
        from timm.utils import ModelEmaV3  # timm is heavy: only for a run that keeps an average

        # The decay warms up (1 - (1 + step)^(-2/3), at most ema_decay) so a short run's
        # average is not its initial weights; fp32 weights, so no stochastic rounding.
        ema = ModelEmaV3(model, decay=config.ema_decay, use_warmup=True, stochastic_rounding=False)
    return RunParts(
        device=device, prep=prep, classes=classes, train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
        test_x=test_x, test_y=test_y, data_facts=data_facts, model=model, net=net, spec=spec, summary=summary,
        pretrained_weights=pretrained_weights, precision=precision, amp_dtype=amp_dtype,
        channels_last=channels_last, optimizer=optimizer, criterion=criterion, ema=ema,
    )
