"""What each accuracy lever is worth on real photos, alone against the ``finetune`` recipe.

    .venv/bin/python bench/levers.py --per-class 300        # a subset, to develop
    .venv/bin/python bench/levers.py                        # all 2,624 cells (once a session)
    .venv/bin/python bench/levers.py --only baseline,ema    # some rows only

The protocol of issue "Two more offline backbones": the ELPV dataset (PyPI
``elpv-dataset``: 300x300 electroluminescence photographs of solar cells; CC BY-NC-SA 4.0,
so it is used here to measure, never shipped or committed) as a ZIP of ``labels.csv``
(``file,label``: ``defective`` where the annotated defect probability is at least 0.5,
else ``functional``; every cell) plus ``images/``, imported the way a user does
(``imori datasets import elpv.zip --name elpv``: a seeded 80/20 train/test split, about
525 test images: +-2.8 points at 95 %). Then one run per lever, each the ``finetune``
recipe with that one change, one after the other in this process, each with the same
budget: the recipe's epochs (``--epochs``, default its 5: the cosine schedule spans them, so
a run cut short by minutes would compare a half-cooled model), their wall time reported,
and the test split reported once per run.

It prints a Markdown table for bench/RESULTS.md and writes bench/levers.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.real_photos import ensure_elpv  # noqa: E402 - after the path: the same ELPV install

# One change each against the recipe as it ships (core/recipes.py "finetune").
LEVERS: dict[str, dict] = {
    "baseline": {},
    "efficientnet_lite1": {"model": "efficientnet_lite1", "image_size": (240, 240)},
    "efficientnet_lite2": {"model": "efficientnet_lite2", "image_size": (260, 260)},
    "vflip+rot90": {"augment": ("flip", "crop", "vflip", "rot90")},
    "warmup": {"warmup_epochs": 1},
    "label_smoothing": {"label_smoothing": 0.1},
    "ema": {"ema": True},
    "tta": {"tta": True},
}


def elpv_zip(data: Path, out: Path, per_class: int | None) -> dict[str, int]:
    """The protocol's ZIP: labels.csv (file,label) and images/ (the PNGs as they ship)."""
    counts: dict[str, int] = {}
    rows = ["file,label"]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for line in (data / "labels.csv").read_text().splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            label = "defective" if float(parts[1]) >= 0.5 else "functional"
            if per_class and counts.get(label, 0) >= per_class:
                continue
            name = f"images/{Path(parts[0]).name}"
            archive.write(data / parts[0], name)
            rows.append(f"{name},{label}")
            counts[label] = counts.get(label, 0) + 1
        archive.writestr("labels.csv", "\n".join(rows) + "\n")
    return counts


def train(name: str, epochs: int, **changes) -> dict:
    from core.config import RunConfig
    from core.recipes import recipe_config
    from core.recorder import MemoryRecorder
    from core.train import fit

    config: RunConfig = recipe_config("finetune", dataset="elpv", epochs=epochs, **changes)
    recorder = MemoryRecorder()
    started = time.time()
    with tempfile.TemporaryDirectory() as run_dir:
        result = fit(config.validate(), run_dir, recorder)
    test = result.test
    n = recorder.starts[0].test_size
    accuracy = test["accuracy"]
    row = {
        "lever": name,
        "changes": {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()},
        "test_accuracy": round(accuracy, 4),
        "test_balanced_accuracy": round(test.get("balanced_accuracy") or 0.0, 4),
        "ci95": round(1.96 * math.sqrt(accuracy * (1 - accuracy) / max(n, 1)), 4),
        "best_val_accuracy": round(result.best_val_accuracy or 0.0, 4),
        "epochs": result.epoch,
        "seconds": round(time.time() - started, 1),
        "train_images": recorder.starts[0].train_size,
        "test_images": n,
    }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=None, help="at most this many cells per class")
    parser.add_argument("--epochs", type=int, default=5, help="each run's epochs (the recipe's 5 by default)")
    parser.add_argument("--only", help="comma-separated levers (default: all): " + ", ".join(LEVERS))
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",")] if args.only else list(LEVERS)
    unknown = [c for c in chosen if c not in LEVERS]
    if unknown:
        parser.error(f"unknown lever(s) {', '.join(unknown)}: choose from {', '.join(LEVERS)}")
    with tempfile.TemporaryDirectory(prefix="imori-bench-levers-") as home:
        os.environ["IMORI_HOME"] = home  # never the user's own
        archive = Path(home) / "elpv.zip"
        counts = elpv_zip(ensure_elpv(), archive, args.per_class)
        subprocess.check_call([sys.executable, "-m", "cli", "datasets", "import", str(archive), "--name", "elpv"],
                              cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"imported elpv: {counts}", file=sys.stderr, flush=True)
        rows = [train(name, args.epochs, **LEVERS[name]) for name in chosen]
    out = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
           "dataset": {"name": "ELPV, defective (p >= 0.5) vs functional", "counts": counts},
           "epochs": args.epochs, "command": " ".join(["bench/levers.py", *sys.argv[1:]]), "results": rows}
    (ROOT / "bench" / "levers.json").write_text(json.dumps(out, indent=2) + "\n")
    base = next((r for r in rows if r["lever"] == "baseline"), None)
    print(f"ELPV {counts}, {rows[0]['train_images']} train / {rows[0]['test_images']} test cells, "
          f"{args.epochs} epochs a run; {out['date']}, {out['machine']}\n")
    print("| lever | test accuracy (95 % CI) | balanced | vs finetune | best val | epochs | wall time |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        delta = f"{100 * (row['test_accuracy'] - base['test_accuracy']):+.1f}" if base and row is not base else "—"
        print(f"| {row['lever']} | {100 * row['test_accuracy']:.1f} % (±{100 * row['ci95']:.1f}) | "
              f"{100 * row['test_balanced_accuracy']:.1f} % | {delta} | {100 * row['best_val_accuracy']:.1f} % | "
              f"{row['epochs']} | {row['seconds'] / 60:.1f} min |")


if __name__ == "__main__":
    main()
