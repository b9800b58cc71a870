"""Feature checks (seconds to minutes): near duplicates across the split by the features of
the offline pretrained backbone, and likely label errors by confident learning (cleanlab)."""

from __future__ import annotations

import numpy as np
import torch

from core.features import cached_features
from core.health.checks.images import details_differ, label_conflict
from core.health.checks.registry import register
from core.health.dataset import Images, feature_prep, finding
from core.health.report import FEATURE_MODEL, FEATURE_SIZE, Finding, Progress
from core.models.registry import build_model
from core.models.specs import get_spec, pretrained_available
from core.text import percent, plural

#: Test and training images at least this similar (cosine of pretrained features) are
#: near duplicates across the split.
DUPLICATE_COSINE = 0.98
#: Labels are judged only when the cross-validated model on the features tells the classes
#: apart at least this well (balanced accuracy over the classes it recognises): below it,
#: its disagreements with a label say more about the features than about the label.
#: Measured: two clean classes it tells apart 89 % of the time gave 6.5 % "label errors".
MIN_SEPARATION = 0.9
#: A class the model recognises less often than this (out of sample) is not judged, nor
#: are images said to look like it: too few or too varied images for its features.
MIN_CLASS_RECALL = 0.5
#: A label is listed as a likely error only when the out-of-sample probability of the given
#: label is at most this: confident findings, not the border cases every model has.
MAX_LABEL_PROBABILITY = 0.25


def _features(images: Images, progress: Progress | None) -> torch.Tensor:
    model = build_model(FEATURE_MODEL, 2, image_size=(FEATURE_SIZE, FEATURE_SIZE), pretrained=True)
    head = get_spec(FEATURE_MODEL).head
    report = (lambda done, total: progress("features", done, total)) if progress else None
    features, _ = cached_features(model, head, images.pixels, feature_prep(), torch.device("cpu"), progress=report)
    return torch.nn.functional.normalize(features, dim=1)


@register("features")
def feature_checks(images: Images, progress: Progress | None = None) -> tuple[list[Finding], list[str]]:
    """Near duplicates across the split by features, and likely label errors."""
    available, why = pretrained_available(FEATURE_MODEL)
    if not available:
        return [], [f"feature checks skipped: {why}"]
    if progress:
        progress("features", 0, len(images))
    features = _features(images, progress)
    findings: list[Finding] = []
    splits = np.array(images.splits)
    train_idx, test_idx = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    if len(train_idx) and len(test_idx):
        similarity = features[test_idx] @ features[train_idx].T  # cosine: both normalised
        best, where = similarity.max(dim=1)
        for t, (s, j) in enumerate(zip(best.tolist(), where.tolist())):
            if s >= DUPLICATE_COSINE:
                pair = [int(train_idx[j]), int(test_idx[t])]
                how = f"near copies (pretrained features, cosine {s:.3f})"
                if images.labels[pair[0]] != images.labels[pair[1]]:
                    findings.append(label_conflict(images, pair, how))
                elif not details_differ(images.pixels, *pair):
                    findings.append(finding("cross_split_duplicates", images, pair, how, s))
    notes: list[str] = []
    label_findings, label_notes = _label_issues(images, features.numpy(), progress)
    return findings + label_findings, notes + label_notes


def _label_issues(images: Images, features: np.ndarray, progress: Progress | None) -> tuple[list[Finding], list[str]]:
    """Confident learning on out-of-sample probabilities (cleanlab, Northcutt et al. 2021)."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    labels = images.labels.astype(int)
    per_class = np.bincount(labels, minlength=len(images.classes))
    folds = int(min(5, per_class[per_class > 0].min())) if per_class.any() else 0
    if folds < 2 or (per_class > 0).sum() < 2:
        return [], ["label checks skipped: every class needs at least 2 images"]
    if progress:
        progress("label checks", 0, 1)
    model = LogisticRegression(max_iter=2000, C=1.0)
    pred_probs = cross_val_predict(model, features, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=0),
                                   method="predict_proba")
    predicted = pred_probs.argmax(axis=1)
    recall = {int(c): float((predicted[labels == c] == c).mean()) for c in np.flatnonzero(per_class)}
    judged = {c for c, r in recall.items() if r >= MIN_CLASS_RECALL}
    notes = [f"label checks: class {images.classes[c]!r} is not judged: the feature model recognises only "
             f"{percent(r, 0)} of its {plural(int(per_class[c]), 'image')}" for c, r in recall.items() if c not in judged]
    if len(judged) < 2:  # nothing to measure a separation on: no figure, the reason
        if progress:
            progress("label checks", 1, 1)
        return [], notes + [f"label checks: the feature model recognises fewer than two classes (at least "
                            f"{100 * MIN_CLASS_RECALL:.0f} % of a class's images, {folds}-fold cross-validated), "
                            "too few to judge labels: no label errors are listed; look at the classes' samples instead"]
    separation = float(np.mean([recall[c] for c in judged]))
    said = (f"the feature model tells the classes apart {percent(separation)} of the time (balanced accuracy, "
            f"{folds}-fold cross-validated)")
    if separation < MIN_SEPARATION:
        if progress:
            progress("label checks", 1, 1)
        return [], notes + [f"label checks: {said}, too poorly to judge labels (it needs {100 * MIN_SEPARATION:.0f} "
                            "%): no label errors are listed; look at the classes' samples instead"]
    # n_jobs=1: cleanlab would fork a pool from a process holding torch's and the server's threads (it hung).
    ranked = find_label_issues(labels, pred_probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    ranked = [i for i in ranked if pred_probs[i, labels[i]] <= MAX_LABEL_PROBABILITY
              and labels[i] in judged and int(pred_probs[i].argmax()) in judged]
    out = []
    for i in ranked:
        given, believed = images.classes[labels[i]], images.classes[int(pred_probs[i].argmax())]
        p = float(pred_probs[i, labels[i]])
        out.append(finding("label_issues", images, [int(i)],
                            f"labelled {given!r}, looks like {believed!r} (p({given}) = {p:.2f} out of sample)",
                            1.0 - p, suggested=believed))
    if progress:
        progress("label checks", 1, 1)
    return out, notes + [f"label checks: {said}; a label is listed when confident learning flags it and the model "
                         f"gives it at most {100 * MAX_LABEL_PROBABILITY:.0f} % out of sample"]
