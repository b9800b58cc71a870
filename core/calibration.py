"""Honest confidence: how far a model's probabilities are from its accuracy, and
temperature scaling to bring them together (Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017).

- ``expected_calibration_error``: the images binned by their top probability into 15
  equal-width bins; the weighted mean gap between each bin's accuracy and its mean
  confidence (Guo et al.'s ECE). ``reliability`` gives the bins themselves (the
  reliability diagram).
- ``fit_temperature``: the one scalar ``T`` that minimises the negative log-likelihood of
  ``softmax(logits / T)`` on held-out images (the validation split: never the test split,
  which only reports), by L-BFGS on ``log T``, as Guo et al.'s reference code does. It
  changes no prediction (the order of the classes is kept), only how sure they read.
- ``calibrate(checkpoint)`` fits it on the checkpoint's own validation split (the run's
  seeded hold-out, drawn exactly as training drew it) and measures ECE before and after
  on the validation and test splits. The result is stored in the checkpoint's record
  (``checkpoints.calibration``), never in the file, and used by Predict, ``imori
  predict`` and every export's ``preprocess.json``. With it, ``calibrate_checkpoint``
  stores the "none of these" threshold (``core.ood.ood_reference``: the out-of-distribution
  score that 95 % of the validation images stay within); ``store_ood_threshold`` fits that
  alone, at the end of every run (``core.train``), so every checkpoint answers it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from core.checkpoint import load_checkpoint, write_calibration
from core.config import RunConfig
from core.data.registry import load_dataset
from core.data.splits import stratified_split
from core.errors import ConfigError
from core.ood import ood_reference
from core.predict import Predictor, to_probabilities
from core.records import checkpoints as checkpoint_records
from core.records.values import json_safe

BINS = 15
# Fewer validation images than this cannot say how sure a model should be.
MIN_VALIDATION_IMAGES = 30
# Where a user sets it, whichever way they train (the same message reaches both).
VAL_FRACTION_WHERE = 'New run\'s "Validation fraction" or --val-fraction'


def _top(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    confidence, predicted = probs.max(dim=1)
    return confidence, (predicted == labels).float()


def reliability(probs: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> list[dict[str, float]]:
    """The reliability diagram's bins: for each of ``bins`` equal-width confidence bins
    over (0, 1], its ``lower``/``upper`` edges, ``count``, mean ``confidence`` and
    ``accuracy`` (None when empty). ``probs``: ``N x classes``; ``labels``: ``N``."""
    confidence, correct = _top(probs, labels)
    out = []
    for b in range(bins):
        lower, upper = b / bins, (b + 1) / bins
        inside = (confidence > lower) & (confidence <= upper)
        n = int(inside.sum())
        out.append({"lower": lower, "upper": upper, "count": n,
                    "confidence": float(confidence[inside].mean()) if n else None,
                    "accuracy": float(correct[inside].mean()) if n else None})
    return out


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> float:
    """Guo et al.'s ECE over ``bins`` equal-width bins, in [0, 1]."""
    total = len(labels)
    if total == 0:
        return 0.0
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"])
                     for b in reliability(probs, labels, bins) if b["count"]))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature ``T > 0`` minimising the NLL of ``softmax(logits / T)`` (L-BFGS
    on ``log T``, from ``T = 1``); 1.0 for no images."""
    if len(labels) == 0:
        return 1.0
    logits, labels = logits.detach().float(), labels.detach().long()
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


@dataclass
class Calibration:
    """A checkpoint's temperature and how calibrated it is before and after, on the
    validation split it was fitted on and on the test split (which did not choose it)."""

    temperature: float
    val_images: int
    test_images: int
    ece_val_before: float
    ece_val_after: float
    ece_test_before: float | None
    ece_test_after: float | None
    reliability_before: list[dict[str, Any]] = field(default_factory=list)  # on the test split (else validation)
    reliability_after: list[dict[str, Any]] = field(default_factory=list)
    bins: int = BINS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        test = ""
        if self.ece_test_before is not None:
            test = (f"; on the test split ({self.test_images} images) ECE {100 * self.ece_test_before:.1f} % -> "
                    f"{100 * self.ece_test_after:.1f} %")
        return (f"temperature {self.temperature:.3f}, fitted on {self.val_images} validation images: "
                f"ECE {100 * self.ece_val_before:.1f} % -> {100 * self.ece_val_after:.1f} %{test} "
                f"({self.bins} bins, Guo et al. 2017)")


def _splits(predictor: Any) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """(the run's data at the predictor's preprocessing, the indices of its training split
    that training held out for validation, dataset label -> checkpoint class index)."""
    raw = predictor.checkpoint.config or {}
    if not raw.get("dataset"):
        raise ConfigError("this checkpoint records no training run (a bare state_dict?): it has no validation "
                          "split to fit on")
    config = RunConfig.from_dict(raw)
    data = load_dataset(config.dataset, predictor.preprocessing, data_root=config.data_root, seed=config.seed)
    _, held = stratified_split(data.train.labels, config.val_fraction, config.seed)
    return data, held, torch.tensor([predictor.classes.index(c) for c in data.classes])


def calibrate(checkpoint: Any) -> Calibration:
    """Fit the temperature of ``checkpoint`` (a path or a ``core.predict.Predictor``) on its
    run's validation split, as training drew it (the run's dataset, seed and validation
    fraction). Raises ImoriError when the checkpoint has no run configuration or its
    dataset is not on this machine."""
    predictor = checkpoint if isinstance(checkpoint, Predictor) else Predictor(checkpoint)
    data, held, to_ckpt = _splits(predictor)

    def scores(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([predictor.scores(predictor.preprocessing.normalize(b)).float().cpu()
                              for b in images.split(256)]) if len(images) else torch.zeros(0, len(predictor.classes))

    val_scores, val_labels = scores(data.train.images[held]), to_ckpt[data.train.labels[held]]
    if len(val_labels) == 0:
        raise ConfigError("this run held out no validation images (validation fraction 0): no temperature to fit")
    if len(val_labels) < MIN_VALIDATION_IMAGES:
        raise ConfigError(f"its run held out only {len(val_labels)} validation images: too few to fit a temperature "
                          f"honestly (at least {MIN_VALIDATION_IMAGES}; train with a larger validation fraction, "
                          f"{VAL_FRACTION_WHERE}, or on more images)")
    if bool((val_scores.argmax(dim=1) == val_labels).all()):
        raise ConfigError(f"the model is right on all {len(val_labels)} validation images, so nothing there says how "
                          "far to trust it: a fitted temperature would fall towards 0 and every answer read 100 %. "
                          "Calibrate a model that makes some mistakes on validation, or hold out more images")
    output = predictor.output
    temperature = fit_temperature(to_probabilities(val_scores, output).clamp_min(1e-12).log(), val_labels)
    test_scores, test_labels = scores(data.test.images), to_ckpt[data.test.labels] if len(data.test) else torch.zeros(0, dtype=torch.long)

    def ece(s: torch.Tensor, y: torch.Tensor, t: float) -> float:
        return expected_calibration_error(to_probabilities(s, output, t), y)

    shown_scores, shown_labels = (test_scores, test_labels) if len(test_labels) else (val_scores, val_labels)
    return Calibration(
        temperature=temperature, val_images=len(val_labels), test_images=len(test_labels),
        ece_val_before=ece(val_scores, val_labels, 1.0), ece_val_after=ece(val_scores, val_labels, temperature),
        ece_test_before=ece(test_scores, test_labels, 1.0) if len(test_labels) else None,
        ece_test_after=ece(test_scores, test_labels, temperature) if len(test_labels) else None,
        reliability_before=reliability(to_probabilities(shown_scores, output), shown_labels),
        reliability_after=reliability(to_probabilities(shown_scores, output, temperature), shown_labels),
    )


# -- operating points ------------------------------------------------------------------------


def pr_curve(probs: torch.Tensor, labels: torch.Tensor, positive: int, max_points: int = 300) -> dict[str, Any]:
    """Class ``positive``'s precision-recall curve against the rest, from scikit-learn's
    ``precision_recall_curve`` over ``probs[:, positive]`` (``probs``: ``N x classes``,
    ``labels``: ``N``): ``{"threshold", "precision", "recall"}`` lists of equal length in
    rising threshold order (at most ``max_points``: evenly thinned, the ends kept), with
    ``images``, ``positives`` and ``average_precision``. Raises ConfigError when no
    image of the class is among ``labels``."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    truth = (labels == positive).numpy().astype(int)
    if truth.sum() == 0:
        raise ConfigError("the validation split has no image of that class: no threshold to choose")
    scores = probs[:, positive].numpy()
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    # precision/recall have one more entry than thresholds (the last: recall 0, precision 1).
    keep = list(range(len(thresholds)))
    if len(keep) > max_points:
        step = (len(keep) - 1) / (max_points - 1)
        keep = sorted({round(i * step) for i in range(max_points)})
    return {"threshold": [float(thresholds[i]) for i in keep], "precision": [float(precision[i]) for i in keep],
            "recall": [float(recall[i]) for i in keep], "images": int(len(truth)), "positives": int(truth.sum()),
            "average_precision": float(average_precision_score(truth, scores))}


def choose_threshold(curve: dict[str, Any], *, target_recall: float | None = None,
                     target_precision: float | None = None) -> dict[str, float]:
    """A decision threshold on a ``pr_curve``: the highest threshold whose recall is at
    least ``target_recall``, or the lowest whose precision is at least
    ``target_precision``. Returns ``{"threshold", "precision", "recall", "images",
    "positives", "needed", "warning", "target", "by"}``: ``positives`` images of the class
    are what the figure rests on, and ``warning`` says so when they are fewer than the
    target needs (``images_needed``). Raises ConfigError when neither (or both) targets are given, a
    target is outside (0, 1], or none is reachable."""
    if (target_recall is None) == (target_precision is None):
        raise ConfigError("give one target: a recall or a precision")
    target = target_recall if target_recall is not None else target_precision
    if not 0 < float(target) <= 1:
        hint = f" (a fraction: {float(target) / 100:g} for {float(target):g} %)" if 1 < float(target) <= 100 else ""
        raise ConfigError(f"a target recall or precision is in (0, 1], not {target}{hint}")
    thresholds, precision, recall = curve["threshold"], curve["precision"], curve["recall"]
    candidates = range(len(thresholds))
    if target_recall is not None:
        ok = [i for i in candidates if recall[i] >= target_recall]
        best = max(ok, key=lambda i: thresholds[i]) if ok else None
    else:
        ok = [i for i in candidates if precision[i] >= target_precision]
        best = min(ok, key=lambda i: thresholds[i]) if ok else None
    if best is None:
        raise ConfigError(f"no threshold reaches that {'recall' if target_recall is not None else 'precision'} "
                          "on the validation split")
    by = "recall" if target_recall is not None else "precision"
    positives = int(curve.get("positives", 0))
    needed = images_needed(float(target))
    warning = None
    if positives < needed:
        warning = (f"the {by} of {100 * float(recall[best] if by == 'recall' else precision[best]):.1f} % rests on "
                   f"{positives} validation image{'s' if positives != 1 else ''} of the class; a {100 * float(target):g} % "
                   f"target needs about {needed} to be measured, so expect less on new images (add validation "
                   "images of the class, or choose a lower target)")
    return {"threshold": float(thresholds[best]), "precision": float(precision[best]), "recall": float(recall[best]),
            "images": int(curve["images"]), "positives": positives, "needed": needed, "warning": warning,
            "target": float(target), "by": by}


def images_needed(target: float) -> int:
    """About how many validation images of a class a target recall or precision needs
    before one miss moves the figure by less than the target's own margin: 1 / (1 -
    target) (100 for 99 %); a 100 % target counts as 99.9 %."""
    return math.ceil(1 / (1 - min(target, 0.999)) - 1e-9)


def operating_point(probs: torch.Tensor, labels: torch.Tensor, positive: int, *, target_recall: float | None = None,
                    target_precision: float | None = None) -> dict[str, float]:
    """``choose_threshold`` on the full ``pr_curve`` of ``probs`` for class ``positive``
    (one against the rest). Raises ConfigError as those do."""
    return choose_threshold(pr_curve(probs, labels, positive, max_points=len(labels) + 1),
                            target_recall=target_recall, target_precision=target_precision)


def calibrate_checkpoint(path: str, *, positive: str | None = None, target_recall: float | None = None,
                         target_precision: float | None = None) -> tuple[dict[str, Any], bool]:
    """Calibrate the checkpoint at ``path`` (``calibrate``), draw every class's
    precision-recall curve on the validation split at the fitted temperature
    (``pr_curves``) and its "none of these" threshold (``core.ood.ood_reference``), choose
    ``positive``'s threshold by the target given (if any), and
    store it all in the checkpoint's record. Returns (what was stored, whether a record of
    this file existed to store it in). Raises ImoriError as ``calibrate`` and
    ``choose_threshold`` do, or for an unknown class."""
    if (target_recall is not None or target_precision is not None) and not positive:
        raise ConfigError("a target recall or precision chooses a threshold for one class: name it")
    result = calibrate(path)
    stored = result.to_dict()
    predictor = Predictor(path, temperature=result.temperature)
    if positive and positive not in predictor.classes:
        raise ConfigError(f"no class {positive!r} (the classes: {', '.join(predictor.classes)})")
    scores, labels = validation_scores(predictor)
    probs = to_probabilities(scores, predictor.output, predictor.temperature)
    # How strange the validation images look to the model: above it, "none of these".
    stored["ood"] = ood_reference(scores, predictor.ood_method)
    stored["pr_curves"] = {cls: pr_curve(probs, labels, i) for i, cls in enumerate(predictor.classes)
                           if bool((labels == i).any())}
    if positive:
        point = operating_point(probs, labels, predictor.classes.index(positive), target_recall=target_recall,
                                target_precision=target_precision)
        stored["thresholds"] = {positive: point}
    return stored, store_calibration(path, stored)


def store_calibration(path: str, stored: dict[str, Any]) -> bool:
    """Keep a checkpoint's calibration in the file itself (so any copy answers the same)
    and in its run's record (which the run page lists); whether either took it."""
    in_file = write_calibration(path, json_safe(stored))
    in_records = checkpoint_records.set_calibration(path, stored)
    return in_file or in_records


def store_ood_threshold(path: str) -> dict[str, Any]:
    """Fit the "none of these" threshold of the checkpoint at ``path`` on its run's
    validation split (``core.ood.ood_reference``: the score 95 % of those images stay
    within) and store it beside the file's own calibration (``store_calibration``; a
    temperature already there is kept). What a run does at its end; ``imori calibrate``
    fits it too. Returns the threshold stored. Raises ImoriError when the checkpoint has
    no run configuration, its dataset is not on this machine or the run held out no
    validation images."""
    predictor = Predictor(path, temperature=1.0)  # the score does not depend on a temperature
    scores, _ = validation_scores(predictor)
    reference = ood_reference(scores, predictor.ood_method)
    stored = dict(load_checkpoint(path).calibration or {})  # the file's own: a record may be of older weights
    stored["ood"] = reference
    store_calibration(path, stored)
    return reference


def stored_calibration(path: str) -> dict[str, Any]:
    """A checkpoint's calibration: the file's own, else (calibrated before files carried
    it) its run's record; {} when it has none."""
    own = load_checkpoint(path).calibration
    return dict(own or checkpoint_records.calibration_of(path) or {})


def set_operating_point(path: str, positive: str, *, target_recall: float | None = None,
                        target_precision: float | None = None) -> dict[str, float]:
    """Choose ``positive``'s threshold on the precision-recall curve stored with the
    checkpoint's calibration (no model is run) and store it; with neither target, remove
    the class's threshold. Returns the operating point (or {} when removed). Raises
    ConfigError when the checkpoint is not calibrated or the class has no stored curve."""
    stored = stored_calibration(path)
    curve = (stored.get("pr_curves") or {}).get(positive)
    if not stored or curve is None:
        raise ConfigError("calibrate this checkpoint first: its precision-recall curves come with the calibration")
    thresholds = dict(stored.get("thresholds") or {})
    point: dict[str, float] = {}
    if target_recall is None and target_precision is None:
        thresholds.pop(positive, None)
    else:
        point = choose_threshold(curve, target_recall=target_recall, target_precision=target_precision)
        thresholds[positive] = point
    stored["thresholds"] = thresholds
    store_calibration(path, stored)
    return point


def validation_scores(predictor: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``predictor``'s scores (``Predictor.scores``, ``N x classes`` on the CPU) on its run's
    validation split, and the labels (as its class indices)."""
    data, held, to_ckpt = _splits(predictor)
    images = data.train.images[held]
    scores = torch.cat([predictor.scores(predictor.preprocessing.normalize(b)).float().cpu() for b in images.split(256)]) \
        if len(images) else torch.zeros(0, len(predictor.classes))
    return scores, to_ckpt[data.train.labels[held]]

