"""The data pipeline on an image folder of 64x64 JPEGs, against the tutorials' loaders.

    .venv/bin/python bench/pipeline.py [--images 10000]      (needs: pip install opencv-python-headless)

Three loaders over the same folder of two classes:

- **imori, first epoch**: ``core.data.registry.load_dataset`` with a cold cache: every JPEG decoded
  once (in parallel threads), converted and resized, kept as one uint8 tensor and cached
  on disk; then one pass of batches (64) gathered and normalised, as the loop does.
- **imori, later epochs**: one pass of batches from the decoded tensor (what every epoch
  after the first costs).
- **seed 000's loader**: ``glob``, ``cv2.imread``, ``cv2.resize``, ``/255`` and
  ``np.r_`` appends of one image at a time: each append copies everything so far, so it
  is quadratic. At 10,000 images that takes far too long to wait for; it is measured at
  a few smaller counts and the quadratic fitted to them is extrapolated (and labelled so).
- **seed 004's Dataset**: a CSV of (file, label) and ``torchvision.io.read_image`` per
  item in ``__getitem__``, ``DataLoader(batch_size=64, shuffle=True)``: every epoch
  decodes every file again.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_folder(root: Path, count: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        name = ("akahara", "madara")[i % 2]
        (root / name).mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((64, 64), Image.Resampling.BILINEAR)  # photo-like, compressible
        image.save(root / name / f"{i:05d}.jpg", quality=90)
    return root


def seed000_loader(path: str, limit: int):
    """Seed 000's data_load, with its np.r_ appends (the tutorial's slip, kept on purpose)."""
    import cv2
    import numpy as np

    xs = np.ndarray((0, 64, 64, 3))
    ts = np.ndarray((0))
    n = 0
    for dir_path in sorted(glob.glob(path + "/*")):
        for file in sorted(glob.glob(dir_path + "/*"))[: limit // 2]:
            x = cv2.imread(file)
            x = cv2.resize(x, (64, 64)).astype(np.float32)
            x /= 255.0
            xs = np.r_[xs, x[None, ...]]
            ts = np.r_[ts, np.array([0 if "akahara" in file else 1])]
            n += 1
    return xs.transpose(0, 3, 1, 2), ts


def seed004_epoch(root: Path) -> float:
    import torch
    from torch.utils.data import DataLoader, Dataset
    from torchvision.io import read_image

    rows = []
    for label, name in enumerate(("akahara", "madara")):
        rows += [(f"{name}/{f.name}", label) for f in sorted((root / name).iterdir())]
    annotations = root / "labels.csv"
    with open(annotations, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)

    class CustomImageDataset(Dataset):
        def __init__(self, annotations_file, img_dir):
            with open(annotations_file) as fh:
                self.img_labels = list(csv.reader(fh))
            self.img_dir = img_dir

        def __len__(self):
            return len(self.img_labels)

        def __getitem__(self, idx):
            file, label = self.img_labels[idx]
            image = read_image(os.path.join(self.img_dir, file)).float().div(255).sub(0.5).div(0.5)
            return image, int(label)

    loader = DataLoader(CustomImageDataset(annotations, root), batch_size=64, shuffle=True)
    start = time.perf_counter()
    for x, y in loader:
        torch.utils.checkpoint  # noqa: B018 - nothing: the epoch's data alone is measured
    return time.perf_counter() - start


def imori_epochs(root: Path) -> tuple[float, float]:
    import torch

    from core.data.preprocess import Preprocessing
    from core.data.registry import load_dataset
    from core.train import epoch_order

    prep = Preprocessing(height=64, width=64, channels=3, channel_order="BGR")

    def one_pass(images):
        order = epoch_order(len(images), 0, 1)
        for b in range(0, len(images), 64):
            prep.normalize(images[order[b : b + 64]])

    start = time.perf_counter()
    data = load_dataset(str(root), prep, test_fraction=0.0001)
    one_pass(data.train.images)
    first = time.perf_counter() - start
    start = time.perf_counter()
    one_pass(data.train.images)
    later = time.perf_counter() - start
    torch.set_num_threads(torch.get_num_threads())
    return first, later


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--seed000-counts", default="500,1000,2000", help="counts to fit seed 000's quadratic on")
    args = parser.parse_args()
    os.environ["IMORI_HOME"] = tempfile.mkdtemp(prefix="imori-bp-")
    work = Path(tempfile.mkdtemp(prefix="imori-bp-data-"))
    root = make_folder(work / "newts", args.images)
    import numpy as np

    first, later = imori_epochs(root)
    s004 = seed004_epoch(root)
    counts = [int(c) for c in args.seed000_counts.split(",")]
    measured = []
    for count in counts:
        start = time.perf_counter()
        seed000_loader(str(root), count)
        measured.append(time.perf_counter() - start)
    a, b, c = np.polyfit(counts, measured, 2)
    predicted = a * args.images**2 + b * args.images + c
    print(f"{time.strftime('%Y-%m-%d')}, {os.uname().machine}, {len(os.sched_getaffinity(0))} cores; "
          f"{args.images} JPEGs of 64x64 in 2 classes")
    print("| pipeline | seconds | imori's advantage |")
    print("|---|---|---|")
    print(f"| imori first epoch (decode all once + one pass of batches) | {first:.2f} | |")
    for count, seconds in zip(counts, measured):
        print(f"| seed 000 loader, {count} images (measured) | {seconds:.2f} | |")
    print(f"| seed 000 loader, {args.images} images (quadratic fit, extrapolated) | {predicted:.0f} | "
          f"{predicted / first:.0f}x faster first epoch |")
    print(f"| imori later epoch (batches from the decoded tensor) | {later:.3f} | |")
    print(f"| seed 004 per-item read_image Dataset, one epoch | {s004:.2f} | {s004 / later:.0f}x faster later epochs |")


if __name__ == "__main__":
    main()
