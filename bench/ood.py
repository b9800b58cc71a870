"""Which out-of-distribution score imori ships (issue 30 point 2, "none of these").

A validation split holds no unknowns, so it cannot choose the method; this held-out-class
benchmark does, once. On the built-in ``digits`` (1,797 real 8x8 handwritten digits as
32 x 32, ``core.data.builtin``), LeNet-5 (``core.models``) is trained on some classes (the
knowns) and the other classes are held out as the unknowns. The knowns are split
70/15/15 (train / validation / test, stratified, seeded). Two scores are compared on the
test knowns against every unknown image:

- energy: ``-logsumexp(logits)`` (Liu et al., "Energy-based Out-of-distribution
  Detection", NeurIPS 2020; ``core.ood.ood_scores``);
- Mahalanobis: the smallest Mahalanobis distance of the penultimate features (the head's
  input) to the class means, with one covariance shared by the classes, fitted on the
  training images (Lee et al., "A Simple Unified Framework for Detecting
  Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018; their single-layer
  form, without input preprocessing or a layer ensemble).

Reported per score: AUROC (knowns against unknowns; 0.5 is chance), and the share of
unknowns caught at 95 % of the knowns kept, once with the threshold fitted on the
validation knowns (what imori ships) and once at exactly 95 % of the test knowns (the
usual "TPR 95" figure).

    /work/main/.venv/bin/python bench/ood.py             # 2 splits x 3 seeds, about a minute of CPU
    /work/main/.venv/bin/python bench/ood.py --seeds 1   # one seed per split
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data.builtin import digits_native  # noqa: E402
from core.data.splits import stratified_split  # noqa: E402
from core.features import head_removed  # noqa: E402
from core.models.registry import build_model  # noqa: E402
from core.errors import ConfigError  # noqa: E402
from core.ood import ood_scores  # noqa: E402

SPLITS = {"0-5 known, 6-9 unknown": (list(range(6)), list(range(6, 10))),
          "4-9 known, 0-3 unknown": (list(range(4, 10)), list(range(4)))}
EPOCHS = 12
KEEP = 0.95  # the share of knowns kept


@dataclass(frozen=True)
class Mahalanobis:
    """Class means (``classes x D``) and the shared precision (``D x D``) of penultimate
    features (Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution
    Samples and Adversarial Attacks", NeurIPS 2018)."""

    means: torch.Tensor
    precision: torch.Tensor

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """``N x D`` features -> ``N`` floats: the smallest squared Mahalanobis distance to
        a class mean (higher is stranger)."""
        diff = features.double().unsqueeze(1) - self.means.unsqueeze(0)  # N x classes x D
        distances = torch.einsum("ncd,de,nce->nc", diff, self.precision, diff)
        return distances.min(dim=1).values.float()


def mahalanobis_fit(features: torch.Tensor, labels: torch.Tensor, classes: int, ridge: float = 1e-6) -> Mahalanobis:
    """Fit ``Mahalanobis`` on training features (``N x D``) and labels (``N``, 0..classes-1):
    each class's mean and the covariance of the features around their class's mean,
    shared by the classes, inverted (a ``ridge`` times its mean variance added to the
    diagonal keeps it invertible). Raises ConfigError for a class without features."""
    features = features.double()
    means = torch.stack([features[labels == c].mean(dim=0) for c in range(classes)])
    if torch.isnan(means).any():
        raise ConfigError("every class needs training features to fit its mean")
    centred = features - means[labels]
    covariance = centred.T @ centred / len(features)
    covariance += torch.eye(len(covariance), dtype=covariance.dtype) * ridge * float(covariance.diagonal().mean())
    return Mahalanobis(means, torch.linalg.pinv(covariance, hermitian=True))


def images_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``N x 28 x 28`` -> LeNet-5's normalised ``N x 1 x 32 x 32`` floats."""
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    return (F.pad(x, (2, 2, 2, 2)) - 0.5) / 0.5


def train(x: torch.Tensor, y: torch.Tensor, classes: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("lenet5", classes, image_size=(32, 32))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(EPOCHS):
        model.train()
        for idx in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def logits_and_features(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(x)
    with head_removed(model, "fc3"):
        features = model(x)
    return logits, features


def caught(known: torch.Tensor, unknown: torch.Tensor, threshold: float) -> float:
    return float((unknown > threshold).float().mean())


def one(split: str, seed: int) -> dict[str, dict[str, float]]:
    images, labels = digits_native()
    x_all, y_all = images_tensor(images), torch.from_numpy(labels)
    known_classes, unknown_classes = SPLITS[split]
    is_known = torch.isin(y_all, torch.tensor(known_classes))
    x_known, x_unknown = x_all[is_known], x_all[~is_known]
    y_known = torch.tensor([known_classes.index(int(v)) for v in y_all[is_known]])
    rest, test = stratified_split(y_known, 0.15, seed)
    train_idx, val_idx = stratified_split(y_known[rest], 0.15 / 0.85, seed)
    train_idx, val_idx = rest[train_idx], rest[val_idx]
    model = train(x_known[train_idx], y_known[train_idx], len(known_classes), seed)
    parts = {name: logits_and_features(model, x_known[idx]) for name, idx in
             (("train", train_idx), ("val", val_idx), ("test", test))}
    parts["unknown"] = logits_and_features(model, x_unknown)
    accuracy = float((parts["test"][0].argmax(1) == y_known[test]).float().mean())
    reference = mahalanobis_fit(parts["train"][1], y_known[train_idx], len(known_classes))
    score = {"energy": lambda p: ood_scores(p[0], "energy"),
             "mahalanobis": lambda p: reference.scores(p[1])}
    out = {}
    for method, fn in score.items():
        val, known, unknown = fn(parts["val"]), fn(parts["test"]), fn(parts["unknown"])
        truth = np.r_[np.zeros(len(known)), np.ones(len(unknown))]
        out[method] = {
            "auroc": roc_auc_score(truth, np.r_[known.numpy(), unknown.numpy()]),
            "caught_val": caught(known, unknown, float(val.quantile(KEEP))),
            "kept_val": float((known <= val.quantile(KEEP)).float().mean()),
            "caught_test": caught(known, unknown, float(known.quantile(KEEP))),
            "accuracy": accuracy,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, len(os.sched_getaffinity(0)))))
    started = time.perf_counter()
    print(f"machine: {os.uname().machine}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}; "
          f"{time.strftime('%Y-%m-%d')}; LeNet-5, {EPOCHS} epochs, Adam 1e-3")
    print("| split | seed | known test accuracy | score | AUROC | unknowns caught (threshold on validation) "
          "| knowns kept (same) | unknowns caught at 95 % of test knowns kept |")
    print("|---|---|---|---|---|---|---|---|")
    totals: dict[str, list[dict[str, float]]] = {"energy": [], "mahalanobis": []}
    for split in SPLITS:
        for seed in range(args.seeds):
            for method, r in one(split, seed).items():
                totals[method].append(r)
                print(f"| {split} | {seed} | {100 * r['accuracy']:.1f} % | {method} | {r['auroc']:.3f} | "
                      f"{100 * r['caught_val']:.1f} % | {100 * r['kept_val']:.1f} % | {100 * r['caught_test']:.1f} % |")
    print()
    print("| score | mean AUROC | mean unknowns caught (threshold on validation) | mean knowns kept | "
          "mean unknowns caught at 95 % of test knowns |")
    print("|---|---|---|---|---|")
    for method, rows in totals.items():
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        print(f"| {method} | {mean['auroc']:.3f} | {100 * mean['caught_val']:.1f} % | {100 * mean['kept_val']:.1f} % | "
              f"{100 * mean['caught_test']:.1f} % |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
