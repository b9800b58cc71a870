"""The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural
Networks", 2017), as fastai's ``Learner.lr_find`` runs it, with its "valley" suggestion.

The run's own model, data, optimizer and loss (``core.train.Trainer``) take ``num_it``
steps of the loop's own ``Trainer.train_step`` while the learning rate grows exponentially
from ``start_lr`` to ``end_lr`` (fastai's ``LRFinder`` is a callback on the same ``fit``); the loss is smoothed (an exponential moving average, beta 0.98, debiased)
and the test stops once it exceeds four times its minimum. Nothing is recorded or
checkpointed: the weights are thrown away afterwards. The suggestion is fastai's
``valley``: the learning rate two thirds of the way down the longest stretch over which
the loss keeps falling.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.config import RunConfig
from core.errors import ConfigError
from core.models.registry import set_train_mode
from core.train import Trainer, epoch_order


# The loss must fall below this share of where it started for the valley to mean much.
FLAT_SHARE = 0.9


@dataclass
class LRFinderResult:
    """The learning rates tried, the smoothed loss at each, and the suggestion."""

    lrs: list[float]
    losses: list[float]
    suggestion: float
    suggestion_loss: float
    stopped_early: bool = False  # the loss exploded before ``num_it`` steps
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"lrs": self.lrs, "losses": self.losses, "suggestion": self.suggestion,
                "suggestion_loss": self.suggestion_loss, "stopped_early": self.stopped_early, "notes": self.notes}


def valley(lrs: list[float], losses: list[float]) -> int:
    """fastai's ``valley``: the index two thirds down the longest decreasing run of
    ``losses`` (the longest increasing subsequence of minus the loss)."""
    n = len(losses)
    if n < 3:
        return max(0, n - 1)
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[max_end] < lds[i]:
            max_end = i
            max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return min(n - 1, max_start + int(sections) + int(sections / 2))


def lr_find(config: RunConfig, *, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100,
            progress: Callable[[int, int, float, float], None] | None = None) -> LRFinderResult:
    """Run the range test on ``config`` (its model, dataset, optimizer, momentum, batch
    size, loss; its learning rate is what is searched). ``progress(step, num_it, lr,
    smoothed loss)`` hears of each step. Raises ImoriError for a config that cannot run."""
    config = config.replace(schedule="none", epochs=None, iterations=num_it).validate()
    with tempfile.TemporaryDirectory(prefix="imori-lr-find-") as tmp:
        trainer = Trainer(config, tmp)
        optimizer = trainer.optimizer
        # Each parameter group keeps its ratio to the run's learning rate (a backbone's multiplier).
        ratios = [group["lr"] / config.lr for group in optimizer.param_groups]
        feed = trainer.feed_for(1)
        set_train_mode(trainer.model)
        lrs: list[float] = []
        losses: list[float] = []
        average, best, exploded = 0.0, math.inf, False
        epoch, order, position = 1, epoch_order(len(trainer.train_y), config.seed, 1), 0
        for i in range(num_it):
            lr = start_lr * (end_lr / start_lr) ** (i / max(1, num_it - 1))
            for group, ratio in zip(optimizer.param_groups, ratios):
                group["lr"] = lr * ratio
            if position + trainer.batch_size > len(order):  # the next epoch's order
                epoch, position = epoch + 1, 0
                order = epoch_order(len(trainer.train_y), config.seed, epoch)
            idx = order[position:position + trainer.batch_size].to(trainer.train_y.device)
            position += trainer.batch_size
            loss, _, _ = trainer.train_step(feed, idx)  # the loop's own step, at this learning rate
            value = float(loss.detach())
            if not math.isfinite(value):
                exploded = True
                break
            average = 0.98 * average + 0.02 * value
            smoothed = average / (1 - 0.98 ** (i + 1))
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            if progress is not None:
                progress(i + 1, num_it, lr, smoothed)
            if i > 10 and smoothed > 4 * best:
                exploded = True
                break
    if not losses:
        raise ConfigError("the loss was not finite from the first step: nothing to suggest")
    index = valley(lrs, losses)
    notes = [] if not exploded else [f"the loss exploded at lr {lrs[-1]:.2g}: the test stopped there"]
    # A curve that never fell has no clear valley: say how little it fell, so the
    # suggestion is read as a first try (seed 004's LeNet: 2.31 -> 2.30, yet 0.2 trains it).
    if min(losses) > FLAT_SHARE * losses[0]:
        notes.append(f"the loss barely fell during the test ({losses[0]:.3g} -> {min(losses):.3g} at best): the "
                     "suggestion is where it fell fastest, a first try; train an epoch with it and watch the loss, or "
                     "run a longer test (more steps)")
    return LRFinderResult(lrs, losses, lrs[index], losses[index], exploded, notes)


def plot_limit(result: LRFinderResult) -> float:
    """The top of the loss axis worth drawing, half again over the starting loss: the
    explosion's last points would flatten the rest of the curve onto the floor."""
    return 1.5 * result.losses[0]
