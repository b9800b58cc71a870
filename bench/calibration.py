"""Calibration of the tutorials' recipes: expected calibration error before and after
temperature scaling (issue 16.4; Guo et al. 2017, 15 bins).

Trains each recipe as written on its built-in dataset in a fresh IMORI_HOME, fits the
temperature of its last checkpoint on the run's validation split (``core.calibration``)
and reports the ECE on the validation split (where it was fitted) and on the test split
(which did not choose it).

    .venv/bin/python bench/calibration.py                  # seed000 (a few minutes here) and seed003
    .venv/bin/python bench/calibration.py seed003          # one recipe
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    recipes = sys.argv[1:] or ["seed000", "seed003"]
    os.environ["IMORI_HOME"] = tempfile.mkdtemp(prefix="imori-bench-calibration-")
    import torch

    from core.calibration import calibrate
    from core.recipes import recipe_config
    from core.train import fit

    print(f"machine: {os.uname().machine}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}; "
          f"{time.strftime('%Y-%m-%d')}")
    print("| recipe | dataset | test accuracy | temperature | ECE validation (before -> after) | ECE test (before -> after) |")
    print("|---|---|---|---|---|---|")
    for name in recipes:
        config = recipe_config(name, device="cpu")
        result = fit(config, Path(os.environ["IMORI_HOME"]) / name)
        c = calibrate(str(result.last_checkpoint))
        print(f"| {name} | {config.dataset} | {100 * result.test['accuracy']:.1f} % | {c.temperature:.3f} | "
              f"{100 * c.ece_val_before:.2f} % -> {100 * c.ece_val_after:.2f} % ({c.val_images} images) | "
              f"{100 * c.ece_test_before:.2f} % -> {100 * c.ece_test_after:.2f} % ({c.test_images} images) |", flush=True)


if __name__ == "__main__":
    main()
