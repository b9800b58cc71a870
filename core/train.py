"""fit(): the one training loop, for every model and dataset, from the CLI, a test or a worker.

It reads like pytorch/examples' MNIST loop (``model.train()``, ``zero_grad``, forward,
loss, ``backward``, ``step``; ``evaluate`` under ``torch.no_grad``), and where that
example prints, this loop tells its recorder. Recording, checkpoints, resume and
cancellation are events and questions, never branches inside the loop.

Data is decoded once into uint8 tensors (``core.data``); each batch is gathered by index,
moved to the device and normalised there, so an epoch costs the model's compute.
Batch order comes from a generator seeded by (seed, epoch): a run resumed mid-epoch
recomputes the same order and skips the batches it already did, so on the CPU its
later metrics equal those of an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from core.calibration import store_ood_threshold
from core.checkpoint import Checkpointer, cpu_state_dict, load_checkpoint, make_payload
from core.config import RunConfig
from core.data.augment import augment_batch, tta_probabilities, tta_views
from core.data.cache import DiskImages
from core.devices import environment
from core.errors import ConfigError, ImoriError
from core.features import cached_features
from core.metrics import class_metrics
from core.models.registry import set_backbone_frozen, set_train_mode
from core.ranks import Ranks
from core.recorder import (
    CheckpointInfo,
    EvalMetrics,
    Recorder,
    RunEnd,
    RunStart,
    Stage,
    StepMetrics,
)
from core.setup import RunParts, build_parts
from core.status import CANCELLED, FAILED, SUCCEEDED
from core.text import plural

@dataclass
class FitResult:
    status: str  # "succeeded" or "cancelled" (a failure raises)
    run_dir: str
    step: int
    epoch: int
    classes: list[str]
    last_checkpoint: str | None
    best_checkpoint: str | None
    best_val_accuracy: float | None
    val: dict[str, float] = field(default_factory=dict)  # last evaluation on the validation split
    test: dict[str, float] = field(default_factory=dict)  # last evaluation on the test split
    seconds: float = 0.0
    images_per_second: float = 0.0
    device: str = "cpu"
    pretrained_weights: str | None = None  # the file the backbone's weights came from
    precision: str = "fp32"  # what the loop trained in: "fp32" or "bf16" (autocast)
    search: dict[str, Any] | None = None  # an automatic run's search (core.auto); None for others

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- small helpers ---------------------------------------------------------------------------


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch ``epoch``: a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def lr_factor(schedule: str, step: int, total_steps: int, steps_per_epoch: int, step_epochs: int, gamma: float,
              warmup_steps: int = 0) -> float:
    """The learning-rate multiplier after ``step`` optimizer steps (a pure function of step,
    so that a resumed or continued run needs no schedule state beyond its step). The first
    ``warmup_steps`` rise linearly, 1/W, 2/W, ... W/W; the schedule then runs over the
    steps that remain, as if it started there."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    step, total_steps = step - warmup_steps, total_steps - warmup_steps
    if schedule == "step":
        return gamma ** (step // max(1, step_epochs * steps_per_epoch))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
    return 1.0


class _StepBuffer:
    """Collects per-step loss and correct counts as device tensors and hands them to the
    recorder in batches, so a GPU is not synchronised on every iteration. On the CPU a
    read costs nothing, so it flushes every step and progress stays live."""

    def __init__(self, recorder: Recorder, device: torch.device) -> None:
        self.recorder = recorder
        self.every_step = device.type != "cuda"
        self.rows: list[tuple[int, int, float, float, int]] = []
        self.values: list[torch.Tensor] = []
        self.last_flush = time.monotonic()

    def add(self, step: int, epoch: int, loss: torch.Tensor, correct: torch.Tensor, count: int, lr: float) -> None:
        if self.every_step:  # the CPU: reading a value costs nothing, so skip the batching
            self.recorder.on_step(
                StepMetrics(step=step, epoch=epoch, loss=loss.item(), accuracy=correct.item() / count, lr=lr, batch_size=count)
            )
            return
        self.rows.append((step, epoch, lr, time.time(), count))
        self.values.append(torch.stack((loss.detach().float(), correct.detach().float())))
        if len(self.rows) >= 200 or time.monotonic() - self.last_flush > 0.5:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        values = torch.stack(self.values).tolist()  # one device sync for the whole batch
        rows, self.rows, self.values = self.rows, [], []  # taken first: a failing listener never sees a step twice
        self.last_flush = time.monotonic()
        for (step, epoch, lr, wall, count), (loss, correct) in zip(rows, values):
            self.recorder.on_step(
                StepMetrics(step=step, epoch=epoch, loss=loss, accuracy=correct / count, lr=lr, time=wall, batch_size=count)
            )


@dataclass
class _Feed:
    """What one phase of a run feeds the network, per split, and through what."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    forward: torch.nn.Module  # the whole model, or the head alone on cached features
    prepare: Any  # batch of inputs -> the tensor ``forward`` takes, on the device
    augment: bool  # whether the run's augmentation applies to these inputs


# -- the trainer -----------------------------------------------------------------------------


class Trainer:
    """Holds one run's pieces; ``fit()`` is the public entry point."""

    def __init__(self, config: RunConfig, run_dir: str | Path, recorder: Recorder | None = None,
                 ranks: Ranks | None = None, parts: RunParts | None = None, *, test_each_epoch: bool = True) -> None:
        """The loop over ``parts`` (``core.setup.build_parts(config, ...)`` when not given).
        ``test_each_epoch`` False: evaluations skip the test split (an automatic run tests
        its winner once, at the end: ``core.auto``)."""
        self.config = config
        self.run_dir = Path(run_dir)
        self.recorder = recorder or Recorder()
        # This process's part of a run on several (core.ranks); one process: no part at all.
        self.ranks = ranks or Ranks()
        parts = parts or build_parts(config, self.recorder, self.ranks)
        self.parts = parts
        self.device, self.prep, self.classes = parts.device, parts.prep, parts.classes
        self.train_x, self.train_y = parts.train_x, parts.train_y
        self.val_x, self.val_y, self.test_x, self.test_y = parts.val_x, parts.val_y, parts.test_x, parts.test_y
        self.data_facts, self.spec, self.summary = parts.data_facts, parts.spec, parts.summary
        self.pretrained_weights, self.precision, self.amp_dtype = parts.pretrained_weights, parts.precision, parts.amp_dtype
        self.channels_last, self.model, self.net = parts.channels_last, parts.model, parts.net
        self.optimizer, self.criterion = parts.optimizer, parts.criterion
        self.output = self.spec.output  # "logits" or "log_probs"
        # What the network is fed: images through the whole model, or, while a pretrained
        # backbone is frozen and nothing is augmented, its cached features through the head.
        self.images = _Feed(self.train_x, self.val_x, self.test_x, self.net, self._prepare_images, augment=True)
        self.features: _Feed | None = None
        self.feed = self.images

        n = len(self.train_y)
        batch = min(config.batch_size, n)
        # A last batch of one image (per process) breaks BatchNorm in training mode; drop it.
        self.batch_size = batch
        self.steps_per_epoch = n // batch + (1 if n % batch >= 2 * self.ranks.world else 0)
        if config.iterations is not None:
            self.total_steps = config.iterations
        else:
            self.total_steps = config.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        # Warm-up in whole steps, never the whole run (a run of fixed iterations may be short).
        self.warmup_steps = min(round(config.warmup_epochs * self.steps_per_epoch), self.total_steps - 1)
        # The weights' moving average (timm's ModelEmaV3), when the run keeps one: what it
        # evaluates and checkpoints as the model; None otherwise.
        self.ema = parts.ema
        # Test-time augmentation: the views evaluation averages over (["identity"]: none).
        self.tta = tta_views(config.augment) if config.tta else ["identity"]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda)

        # Evaluation as prediction runs: fp32 on the CPU (so a test figure is what Predict
        # gives); on CUDA under the run's autocast, where it is cheap and exact enough.
        self.eval_dtype = self.amp_dtype if self.device.type == "cuda" else None

        self.test_each_epoch = test_each_epoch
        self.step = 0
        self.next_epoch = 1
        self.next_batch = 0
        self.last_val: dict[str, float] = {}
        self.last_test: dict[str, float] = {}
        self.buffer = _StepBuffer(self.recorder, self.device)
        self.checkpointer = Checkpointer(
            self.run_dir / "checkpoints",
            self.checkpoint_payload,
            self.recorder,
            every_epochs=config.checkpoint_every_epochs,
            every_minutes=config.checkpoint_every_minutes,
            keep=config.keep_checkpoints,
            writes=self.ranks.is_main,  # on several processes, rank 0 alone writes
        )

    def _lr_lambda(self, step: int) -> float:
        c = self.config
        return lr_factor(c.schedule, step, self.total_steps, self.steps_per_epoch, c.step_epochs, c.gamma,
                         self.warmup_steps)

    # -- resume ----------------------------------------------------------------------------

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint of this run (mid-epoch included)."""
        ckpt = load_checkpoint(path)
        if ckpt.kind != "imori" or not ckpt.training:
            raise ConfigError(f"{path}: not a resumable imori checkpoint (no training state)")
        if ckpt.classes != self.classes and sorted(ckpt.classes) == sorted(self.classes):
            # The dataset lists its classes in another order than when the run began (a
            # newer imori orders integer class folders numerically): keep the run's order.
            remap = torch.tensor([ckpt.classes.index(c) for c in self.classes])
            self.train_y = remap.to(self.train_y.device)[self.train_y]
            self.val_y, self.test_y = remap[self.val_y], remap[self.test_y]
            self.classes = list(ckpt.classes)
        if ckpt.model_name != self.config.model or ckpt.classes != self.classes:
            raise ConfigError(
                f"{path}: checkpoint is a {ckpt.model_name} over {len(ckpt.classes)} classes; "
                f"this run trains a {self.config.model} over {len(self.classes)}"
            )
        state = ckpt.training
        if self.ema is not None:
            # The checkpoint's model is the average; the weights the optimizer trains are kept beside it.
            if "raw_state_dict" not in state:
                raise ConfigError(f"{path}: this checkpoint was written without an EMA of the weights; "
                                  "continue it with ema off")
            self.model.load_state_dict(state["raw_state_dict"])
            self.ema.module.load_state_dict(ckpt.state_dict)
        else:
            self.model.load_state_dict(ckpt.state_dict)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.next_epoch = int(state["next_epoch"])
        self.next_batch = int(state["next_batch"])
        self.checkpointer.restore(state.get("best_val"), path)
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        if self.next_batch >= self.steps_per_epoch:
            self.next_epoch, self.next_batch = self.next_epoch + 1, 0
        self.recorder.on_log(f"resumed from {path} at step {self.step} (epoch {self.next_epoch})")

    # -- checkpoints -----------------------------------------------------------------------

    @property
    def epoch_done(self) -> int:
        """The last epoch begun: a position mid-epoch counts its epoch."""
        return self.next_epoch if self.next_batch else self.next_epoch - 1

    def checkpoint_payload(self, metrics: dict[str, float]) -> dict[str, Any]:
        """Everything a checkpoint holds, now. Steps still buffered are reported first, so
        the records never hold a checkpoint ahead of its own steps."""
        self.buffer.flush()
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        best = self.checkpointer.best_score
        extra = {"raw_state_dict": cpu_state_dict(self.model)} if self.ema is not None else {}
        return make_payload(
            model_name=self.config.model,
            model_options=self.config.model_options,
            state_dict=cpu_state_dict(self.ema.module if self.ema is not None else self.model),
            tta=self.tta if len(self.tta) > 1 else None,
            classes=self.classes,
            preprocessing=self.prep.to_dict(),
            config=self.config.to_dict(),
            metrics=metrics,
            data=self.data_facts,
            training={
                "step": self.step,
                "epoch": self.epoch_done,
                "next_epoch": self.next_epoch,
                "next_batch": self.next_batch,
                "total_steps": self.total_steps,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "best_val": list(best) if best else None,
                "rng": rng,
                **extra,
            },
        )

    # -- evaluation ------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, inputs: torch.Tensor, labels: torch.Tensor, feed: "_Feed | None" = None) -> dict[str, Any]:
        """Mean loss, accuracy and balanced accuracy over a whole split (sums, then one
        division: exact), and ``per_class``: each class's precision, recall, F1 and support
        from the split's confusion matrix (``core.metrics.class_metrics``)."""
        if len(labels) == 0:
            return {}
        feed = feed or self.feed
        forward = self._eval_forward(feed)
        self.model.eval()
        classes = len(self.classes)
        loss_sum = torch.zeros((), device=self.device)
        confusion = torch.zeros(classes * classes, device=self.device, dtype=torch.long)  # [true * classes + predicted]
        size = self.config.eval_batch_size
        for start in self.ranks.eval_starts(len(labels), size):
            x = feed.prepare(inputs[start : start + size])
            y = labels[start : start + size].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.eval_dtype, enabled=self.eval_dtype is not None):
                if len(self.tta) > 1 and feed is self.images:
                    # The mean of the views' probabilities, as log-probabilities for the NLL below.
                    out = tta_probabilities(forward, x, self.tta, self.output).clamp_min(1e-12).log()
                else:
                    out = forward(x)
            out = out.float()
            # Log-probabilities take NLL; cross-entropy on them would give the same figure.
            if self.output == "log_probs" or (len(self.tta) > 1 and feed is self.images):
                loss_sum += F.nll_loss(out, y, reduction="sum")
            else:
                loss_sum += F.cross_entropy(out, y, reduction="sum")
            confusion += torch.bincount(y * classes + out.argmax(1), minlength=classes * classes)
        self.ranks.all_sum(loss_sum, confusion)
        set_train_mode(self.model)
        confusion = confusion.view(classes, classes)
        hits, support = confusion.diagonal(), confusion.sum(1)
        present = support > 0
        # Balanced accuracy: the mean recall over the classes present (scikit-learn's
        # balanced_accuracy_score), honest where one class dwarfs the others.
        balanced = (hits[present].double() / support[present]).mean().item()
        return {
            "loss": loss_sum.item() / len(labels),
            "accuracy": hits.sum().item() / len(labels),
            "balanced_accuracy": balanced,
            "count": len(labels),
            "per_class": class_metrics(confusion.tolist(), [str(c) for c in self.classes]),
        }

    def _eval_forward(self, feed: "_Feed") -> torch.nn.Module:
        """What evaluates ``feed``: its own forward, or the EMA's counterpart of it (the
        whole averaged model, or its head on the cached features of a frozen backbone,
        whose average is the backbone itself)."""
        if self.ema is None:
            return feed.forward
        if feed is self.images:
            return self.ema.module
        return self.ema.module.get_submodule(self.spec.head)

    def _prepare_images(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prep.normalize(x.to(self.device, non_blocking=True))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # -- phases: a frozen backbone first, then every layer ---------------------------------

    def backbone_frozen(self, epoch: int) -> bool:
        return self.config.freeze_backbone or epoch <= self.config.freeze_epochs

    def feed_for(self, epoch: int) -> "_Feed":
        """Freeze or unfreeze the backbone for ``epoch`` and say what to feed the network."""
        config = self.config
        frozen = self.backbone_frozen(epoch)
        if config.freeze_epochs:
            set_backbone_frozen(self.model, config.model, frozen)
            if not frozen and epoch == config.freeze_epochs + 1 and self.next_batch == 0:
                self.recorder.on_log(f"epoch {epoch}: the backbone joins training (step {self.step})")
        # Augmentation would change the features every epoch; the frozen phase of a
        # fine-tune trains on the unaugmented images' features by design.
        cacheable = (frozen and self.spec.pretrainable and config.feature_cache and not config.compile
                     and not self.ranks.distributed)  # the head alone is not in DDP
        if not cacheable or (config.augment and not config.freeze_epochs):
            return self.images
        if self.features is None:
            self.features = self._cached_features()
        return self.features

    def _cached_features(self) -> "_Feed":
        head, feeds = self.spec.head, []
        total = len(self.train_x) + len(self.val_x) + len(self.test_x)
        reused, offset = True, 0
        # Minutes on a CPU for a few thousand photos: a stage the page and the log can follow.
        with Stage(self.recorder, "computing the frozen backbone's features", total) as stage:
            for images in (self.train_x, self.val_x, self.test_x):
                features, hit = cached_features(
                    self.model, head, images if isinstance(images, DiskImages) else images.cpu(), self.prep, self.device,
                    batch_size=min(self.config.eval_batch_size, 64), autocast_dtype=self.amp_dtype,
                    progress=stage.part(offset),
                )
                reused, offset = reused and hit, offset + len(images)
                stage(offset)
                feeds.append(features.to(self.train_y.device))
        how = "read from the feature cache" if reused else "computed once and cached"
        self.recorder.on_log(f"features of {total} images {how}; the head trains on them alone")
        return _Feed(*feeds, self.model.get_submodule(head), lambda f: f.to(self.device, non_blocking=True), augment=False)

    def evaluate_epoch(self, epoch: int) -> None:
        """Validation and test metrics after ``epoch``; the checkpointer keeps what it should."""
        # Test-time augmentation needs the images (cached features are of one view only).
        feed = self.images if len(self.tta) > 1 else self.feed
        val = self.evaluate(feed.val, self.val_y, feed)
        test = self.evaluate(feed.test, self.test_y, feed) if self.test_each_epoch else {}
        self.last_val, self.last_test = val, test
        self.last_metrics = metrics = self.record_evaluations(epoch, val, test)
        self.checkpointer.after_epoch(epoch, val, metrics, finished=self.step >= self.total_steps)

    def record_evaluations(self, epoch: int, val: dict[str, Any], test: dict[str, Any]) -> dict[str, float]:
        """Tell the recorder of ``val`` and ``test`` (``evaluate``'s results; either may be
        empty) after ``epoch``; returns their figures as a checkpoint's metrics
        (``val_accuracy``, ``test_loss``, ...)."""
        for split, figures in (("val", val), ("test", test)):
            if figures:
                self.recorder.on_eval(
                    EvalMetrics(epoch=epoch, step=self.step, split=split, loss=figures["loss"], accuracy=figures["accuracy"],
                                count=int(figures["count"]), balanced_accuracy=figures["balanced_accuracy"],
                                per_class=figures["per_class"])
                )
        metrics = {f"val_{k}": v for k, v in val.items() if k not in ("count", "per_class")}
        metrics.update({f"test_{k}": v for k, v in test.items() if k not in ("count", "per_class")})
        return metrics

    def stop_early(self, epoch: int) -> str | None:
        """Why the run should end after this evaluation though steps remain (None: go on):
        the validation loss stalled for ``patience`` epochs (Keras' EarlyStopping)."""
        patience, loss = self.config.patience, (self.last_val or {}).get("loss")
        if not patience or loss is None:
            return None
        if self.best_val_loss is None or loss < self.best_val_loss:
            self.best_val_loss, self.stalled_epochs = loss, 0
            return None
        self.stalled_epochs += 1
        if self.stalled_epochs >= patience:
            return (f"stopped early after epoch {epoch}: the validation loss has not improved for {plural(patience, 'epoch')} "
                    f"(best {self.best_val_loss:.4f})")
        return None

    def out_of_time(self) -> bool:
        return self.ranks.agree(self.deadline is not None and time.monotonic() >= self.deadline)

    # -- the loop --------------------------------------------------------------------------

    def train_step(self, feed: "_Feed", idx: torch.Tensor, share: float = 1.0):
        """One optimisation step on the training images at ``idx``: forward, loss, backward,
        ``optimizer.step()``. Returns (the loss, the outputs, the labels). The loop and the LR
        finder (``core.lr_find``) both step through here; the schedule is theirs."""
        x, y = feed.prepare(feed.train[idx]), self.train_y[idx].to(self.device, non_blocking=True)
        if feed.augment and self.config.augment:
            x = augment_batch(x, self.config.augment)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            output = feed.forward(x)
            loss = self.criterion(output.float(), y)
        self.ranks.backward(loss, share)
        self.optimizer.step()
        return loss, output, y

    def train_epoch(self, epoch: int) -> bool:
        """One epoch (or what is left of it after a resume); False when the run was asked to stop."""
        config, optimizer = self.config, self.optimizer
        self.feed = feed = self.feed_for(epoch)
        scheduled = config.schedule != "none" or self.warmup_steps > 0
        order = epoch_order(len(self.train_y), config.seed, epoch).to(self.train_y.device)
        set_train_mode(self.model)  # a frozen backbone's BatchNorm stays in eval
        for b in range(self.next_batch, self.steps_per_epoch):
            if self.step >= self.total_steps:
                break
            idx, share = self.ranks.shard(order[b * self.batch_size : (b + 1) * self.batch_size], self.train_y)
            loss, output, y = self.train_step(feed, idx, share)
            if self.ema is not None:
                self.ema.update(self.model, step=self.step + 1)  # a function of the step: resumes exactly
            lr = max(group["lr"] for group in optimizer.param_groups)
            if scheduled:
                self.scheduler.step()
            else:
                self.scheduler.last_epoch += 1  # a constant schedule: just count the step
            self.step += 1
            self.next_epoch, self.next_batch = epoch, b + 1
            loss, correct, count = self.ranks.step_figures(loss, (output.argmax(1) == y).sum(), len(y), share)
            self.buffer.add(self.step, epoch, loss, correct, count, lr)
            stop = self.ranks.agree(self.recorder.should_stop())
            self.checkpointer.after_step(stopping=stop, finished=self.step >= self.total_steps)
            if stop:
                return False
            if self.out_of_time():  # the time budget: end here, evaluated and checkpointed by fit()
                break
        self.buffer.flush()
        return True

    def store_ood_thresholds(self) -> None:
        """Fit and store the "none of these" threshold of each checkpoint the run kept
        (``core.calibration.store_ood_threshold``, on the validation split), saying so in
        its log; a checkpoint that cannot have one (no validation images) is said, not fatal."""
        for path in dict.fromkeys(p for p in (self.checkpointer.best_path, self.checkpointer.last_path) if p):
            if not Path(path).is_file():
                continue
            try:
                ref = store_ood_threshold(path)
            except ImoriError as err:
                self.recorder.on_log(f"{Path(path).name} answers no 'none of these': {err}")
                continue
            self.recorder.on_log(f"{Path(path).name} answers 'none of these' above {'an' if ref['method'][0] in 'aeiou' else 'a'} {ref['method']} score of "
                                 f"{ref['threshold']:.4g} ({100 * ref['keep']:g} % of the {ref['images']} validation "
                                 "images stay within)")

    def fit(self) -> FitResult:
        self.recorder.on_start(
            RunStart(
                total_steps=self.total_steps,
                steps_per_epoch=self.steps_per_epoch,
                epochs=self.epochs,
                start_step=self.step,
                device=str(self.device),
                classes=self.classes,
                train_size=len(self.train_y),
                val_size=len(self.val_y),
                test_size=len(self.test_y),
                model_summary=self.summary,
                environment={**environment(self.device), "precision": self.precision,
                             "channels_last": str(self.channels_last).lower(), **self.ranks.environment()},
            )
        )
        started, start_step = time.monotonic(), self.step
        self.deadline = started + 60 * self.config.max_minutes if self.config.max_minutes else None
        self.best_val_loss, self.stalled_epochs, self.last_metrics = None, 0, {}
        status = SUCCEEDED
        try:
            for epoch in range(self.next_epoch, self.epochs + 1):
                if not self.train_epoch(epoch):
                    status = CANCELLED
                    break
                if self.next_batch >= self.steps_per_epoch:
                    self.next_epoch, self.next_batch = epoch + 1, 0
                timed_out = self.out_of_time() and self.step < self.total_steps
                # A run of fixed iterations (or out of time) may end mid-epoch: evaluate it
                # there too, and keep its position so that continuing it resumes exactly there.
                if self.next_batch == 0 or self.step >= self.total_steps or timed_out:
                    self.evaluate_epoch(epoch)
                why = (f"the time budget of {plural(self.config.max_minutes, 'minute')} is spent: stopped at step "
                       f"{self.step} of {self.total_steps}" if timed_out else
                       self.stop_early(epoch) if self.next_batch == 0 and self.step < self.total_steps else None)
                if why:
                    self.recorder.on_log(why)
                    self.checkpointer.save(self.last_metrics)  # where it stopped: continue_run resumes from it
                    break
                if self.step >= self.total_steps:
                    break
        except BaseException as err:
            try:
                self.buffer.flush()  # the steps before the crash still reach the records
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
            text = str(err) if isinstance(err, ImoriError) else f"{type(err).__name__}: {err}"
            self.recorder.on_end(RunEnd(status=FAILED, step=self.step, epoch=self.next_epoch, error=text))
            raise
        seconds = time.monotonic() - started
        images = (self.step - start_step) * self.batch_size
        if status == SUCCEEDED and self.ranks.is_main and self.checkpointer.writes:
            self.store_ood_thresholds()  # before the run reads as finished: its checkpoints answer "none of these"
        self.recorder.on_end(RunEnd(status=status, step=self.step, epoch=self.epoch_done))
        best = self.checkpointer.best_score
        return FitResult(
            status=status,
            run_dir=str(self.run_dir),
            step=self.step,
            epoch=self.epoch_done,
            classes=self.classes,
            last_checkpoint=self.checkpointer.last_path,
            best_checkpoint=self.checkpointer.best_path,
            best_val_accuracy=best[0] if best else None,
            val=self.last_val,
            test=self.last_test,
            seconds=seconds,
            images_per_second=images / seconds if seconds > 0 else 0.0,
            device=str(self.device),
            pretrained_weights=self.pretrained_weights,
            precision=self.precision,
        )


def fit(
    config: RunConfig,
    run_dir: str | Path,
    recorder: Recorder | None = None,
    *,
    resume_from: str | Path | None = None,
    ranks: Ranks | None = None,
) -> FitResult:
    """Train ``config`` into ``run_dir`` (checkpoints under ``run_dir/checkpoints``).

    ``resume_from`` continues from a checkpoint of the same run: mid-epoch, or a finished
    run continued for more epochs when ``config`` asks for more than it did. ``ranks``: this
    process's part of a run on several (``core.distributed.ProcessRanks``, which a rank
    started by torchrun passes); by default the run is this process's alone.
    """
    try:
        trainer = Trainer(config, run_dir, recorder, ranks)
        if resume_from:
            trainer.resume(resume_from)
    except BaseException as err:
        # Setup failures (missing data, bad weights) end the run too, so listeners can say so.
        if recorder is not None:
            text = str(err) if isinstance(err, ImoriError) else f"{type(err).__name__}: {err}"
            recorder.on_end(RunEnd(status=FAILED, step=0, epoch=0, error=text))
        raise
    return trainer.fit()
