"""Out-of-distribution scores: how unlike the training images an image looks to a model,
and the threshold above which imori answers "none of these" (issue 30 point 2).

- ``ood_scores``: from a model's scores (``N x classes``). ``"energy"``: the free energy
  ``-logsumexp(logits)`` (Liu et al., "Energy-based Out-of-distribution Detection",
  NeurIPS 2020), for a single model's logits; ``"max_softmax"``: minus the top
  probability (Hendrycks and Gimpel, ICLR 2017), for log-probabilities or the mean of
  test-time views, whose logits' scale is lost. Higher is stranger.
  The method was chosen once, on held-out classes (``bench/ood.py``: the energy score
  against the Mahalanobis distance of the features to the class means, Lee et al. 2018,
  on the built-in digits; mean AUROC 0.890 against 0.859, bench/RESULTS.md).
- ``ood_reference``: the threshold, fitted on the validation split (which holds no
  unknowns, so it chooses only the threshold, never the method): the score below which
  ``OOD_KEEP`` (95 %) of the validation images fall, as Liu et al. set theirs; refused
  with fewer than ``MIN_OOD_IMAGES`` (20) of them, where one image moves the share kept by
  more than the 5 % it leaves out (a run of a few photos a class stores no threshold).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from core.errors import ConfigError

# The share of known (validation) images kept below the threshold (Liu et al. 2020's 95 %).
OOD_KEEP = 0.95
OOD_METHODS = ("energy", "max_softmax")
# Fewer validation images than 1 / (1 - OOD_KEEP) cannot place the threshold: each is over 5 %.
MIN_OOD_IMAGES = math.ceil(1 / (1 - OOD_KEEP) - 1e-9)


def ood_method(output: str, views: int = 1) -> str:
    """Which score fits a model: ``"energy"`` for a single model's logits; else
    (log-probabilities, or the mean of test-time views) ``"max_softmax"``."""
    return "energy" if output == "logits" and views == 1 else "max_softmax"


def ood_scores(scores: torch.Tensor, method: str) -> torch.Tensor:
    """``N`` floats from a model's scores (``N x classes``, as ``Predictor.scores`` gives
    them), higher is stranger: ``"energy"`` ``-logsumexp(logits)`` (Liu et al. 2020) or
    ``"max_softmax"`` minus the top probability (Hendrycks and Gimpel 2017). Raises
    ConfigError for another method."""
    scores = scores.float()
    if method == "energy":
        return -torch.logsumexp(scores, dim=1)
    if method == "max_softmax":
        return -scores.softmax(dim=1).max(dim=1).values
    raise ConfigError(f"no out-of-distribution score {method!r} ({' or '.join(OOD_METHODS)})")


def ood_reference(scores: torch.Tensor, method: str, keep: float = OOD_KEEP) -> dict[str, Any]:
    """The threshold fitted on held-out known images' scores (the validation split,
    ``N x classes``): ``{"method", "threshold", "keep", "images"}``, ``threshold`` the
    ``keep`` quantile of their ``ood_scores`` (so ``keep`` of them are at or below it and
    answer as usual; an image above it is "none of these"). Raises ConfigError for a
    ``keep`` outside (0, 1), or fewer than ``1 / (1 - keep)`` images (20 for 95 %)."""
    if not 0.0 < keep < 1.0:
        raise ConfigError(f"the share of known images kept is in (0, 1), not {keep:g}")
    needed = math.ceil(1 / (1 - keep) - 1e-9)
    if len(scores) < needed:
        raise ConfigError(f"its run held out {len(scores)} validation image{'s' if len(scores) != 1 else ''}: "
                          f"a threshold that keeps {100 * keep:g} % of them needs at least {needed} (train with "
                          "more images, or a larger validation fraction: New run's \"Validation fraction\" or "
                          "--val-fraction)")
    values = ood_scores(scores, method)
    return {"method": method, "threshold": float(values.quantile(keep)), "keep": float(keep),
            "images": int(len(values))}
