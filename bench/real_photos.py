"""Real photos, as a user brings them: finetune vs the frozen head alone vs mynet from scratch.

    .venv/bin/python bench/real_photos.py                 # the whole set (about 2,200 photos)
    .venv/bin/python bench/real_photos.py --per-class 150 # a quicker, smaller run

The photos are the ELPV dataset (PyPI ``elpv-dataset``: 300x300 electroluminescence
photographs of solar cells, each labelled with a defect probability; CC BY-NC-SA 4.0, so
it is used here to measure, never shipped). Cells rated 0 are ``functional``, cells rated
1 ``defective`` (the ones in between are left out): an inspector's task on real camera
images. The script installs the package when it is missing (like ``make bench`` installs
opencv), writes the photos as class folders, imports them the way a user does
(``imori datasets import``: a seeded 80/20 train/test split), then trains on the same
split, one after the other:

- ``finetune``: the recipe as it ships (efficientnet_lite0 pretrained, one head-only epoch
  on cached features, then every layer);
- the frozen head alone: the same backbone frozen for 5 epochs on cached features, with
  the first (feature-computing) epoch timed against the later ones;
- ``mynet`` from scratch: seed 000's network, SGD 0.01 momentum 0.9, 64x64, 15 epochs.

It prints a Markdown table for bench/RESULTS.md and writes bench/real_photos.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ensure_elpv() -> Path:
    try:
        import elpv_dataset  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "elpv-dataset"])
    import elpv_dataset

    return Path(elpv_dataset.__file__).parent / "data"


def write_folders(data: Path, out: Path, per_class: int | None) -> dict[str, int]:
    """functional/ and defective/ folders of RGB JPEGs (the photos are grayscale PNGs)."""
    from PIL import Image

    names = {"0.0": "functional", "1.0": "defective"}
    counts: dict[str, int] = {}
    for line in (data / "labels.csv").read_text().splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[1] not in names:
            continue
        label = names[parts[1]]
        if per_class and counts.get(label, 0) >= per_class:
            continue
        (out / label).mkdir(parents=True, exist_ok=True)
        Image.open(data / parts[0]).convert("RGB").save(out / label / (Path(parts[0]).stem + ".jpg"), quality=95)
        counts[label] = counts.get(label, 0) + 1
    return counts


def train(name: str, dataset: str, **settings) -> dict:
    from core.config import RunConfig
    from core.recipes import recipe_config
    from core.recorder import MemoryRecorder
    from core.train import fit

    import shutil

    from core.paths import cache_dir

    shutil.rmtree(Path(cache_dir()) / "features", ignore_errors=True)  # every run computes its own
    recipe = settings.pop("recipe", None)
    config = recipe_config(recipe, dataset=dataset, **settings) if recipe else RunConfig(dataset=dataset, **settings)
    recorder = MemoryRecorder()
    started = time.time()
    with tempfile.TemporaryDirectory() as run_dir:
        result = fit(config.validate(), run_dir, recorder)
    seconds = time.time() - started
    # Wall time of each epoch, from one test evaluation to the next (the first one from the
    # start: it includes decoding the photos and, for a frozen backbone, their features).
    evals = [e.time for e in recorder.evals if e.split == "test"]
    epoch_seconds = []
    previous = started
    for t in evals:
        epoch_seconds.append(round(t - previous, 2))
        previous = t
    row = {
        "name": name,
        "test_accuracy": round(result.test["accuracy"], 4),
        "best_val_accuracy": round(result.best_val_accuracy or 0.0, 4),
        "epochs": result.epoch,
        "seconds": round(seconds, 1),
        "epoch_seconds": epoch_seconds,
        "train_images": recorder.starts[0].train_size,
        "test_images": recorder.starts[0].test_size,
        "precision": result.precision,
    }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=None, help="at most this many photos per class")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imori-bench-photos-") as home:
        os.environ["IMORI_HOME"] = home  # never the user's own
        from core.data.registry import import_dataset

        folder = Path(home) / "elpv"
        counts = write_folders(ensure_elpv(), folder, args.per_class)
        info = import_dataset(folder, name="elpv")
        print(f"imported {info.name}: {counts}", file=sys.stderr, flush=True)
        rows = [
            train("finetune (efficientnet_lite0)", "elpv", recipe="finetune"),
            train("frozen head alone, cached features", "elpv", recipe="finetune", freeze_epochs=0,
                  freeze_backbone=True, augment=(), epochs=5),
            train("mynet from scratch (64x64)", "elpv", model="mynet", optimizer="sgd", lr=0.01, momentum=0.9,
                  loss="cross_entropy", batch_size=32, epochs=15, image_size=(64, 64), augment=("flip",)),
        ]
    out = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
           "dataset": {"name": "ELPV functional vs defective", "counts": counts}, "results": rows}
    (ROOT / "bench" / "real_photos.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"ELPV solar cells, functional vs defective {counts}, {rows[0]['train_images']} train / "
          f"{rows[0]['test_images']} test photos; {out['date']}, {out['machine']}\n")
    print("| run | precision | test accuracy | wall time | seconds per epoch |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['name']} | {row['precision']} | {100 * row['test_accuracy']:.1f} % | {row['seconds'] / 60:.1f} min "
              f"| {', '.join(f'{s:g}' for s in row['epoch_seconds'])} |")
    frozen = rows[1]["epoch_seconds"]
    if len(frozen) > 1:
        later = sorted(frozen[1:])[len(frozen[1:]) // 2]
        print(f"\nfrozen head: first epoch (features computed) {frozen[0]:g} s, later epochs {later:g} s "
              f"(median): {frozen[0] / max(later, 1e-3):.0f}x")


if __name__ == "__main__":
    main()
