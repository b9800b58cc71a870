"""Dataset health checks: how long `imori datasets check` takes (issue 15).

Writes ``--images`` photo-like scenes of 128x128 px (three classes, JPEG, in train/ and
test/ folders, 20 % test) into a temporary folder and times ``core.health.check_dataset``
on it, the image checks (CleanVision, perceptual hashes, class balance, blur) and the
feature checks (EfficientNet-Lite0 features on the CPU, near copies across the split,
cleanlab's label issues on 5-fold cross-validated probabilities) apart. The decoding of
the images into the data cache is timed apart too (training pays it once anyway). Each
size runs in a fresh IMORI_HOME, so nothing is read from a cache.

    .venv/bin/python bench/health.py                       # 2,000 and 20,000 images (about 20 min on 2 cores)
    .venv/bin/python bench/health.py --images 2000         # one size
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_scenes(folder: Path, count: int) -> None:
    import numpy as np

    from tests.photos import scene

    rng = np.random.default_rng(0)
    kinds = ("discs", "bars", "rings")
    for i in range(count):
        kind = kinds[i % 3]
        split = "test" if i % 5 == 0 else "train"
        (folder / split / kind).mkdir(parents=True, exist_ok=True)
        scene(rng, kind, 128).save(folder / split / kind / f"{i:06d}.jpg", quality=90)


def one(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="imori-bench-health-") as tmp:
        os.environ["IMORI_HOME"] = str(Path(tmp) / "home")
        folder = Path(tmp) / "scenes"
        write_scenes(folder, count)
        from core.data.registry import load_dataset
        from core.health.check import check_dataset
        from core.health.dataset import feature_prep as _feature_prep

        started = time.monotonic()
        load_dataset(str(folder), _feature_prep())
        decode = time.monotonic() - started
        report = check_dataset(str(folder), features=True)
        return {"images": report.images, "decode": decode, "images_s": report.seconds["images"],
                "features": report.seconds.get("features", float("nan")), "findings": len(report.findings)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, action="append", help="how many images (repeatable; default 2000 and 20000)")
    args = parser.parse_args()
    import torch

    print(f"machine: {os.uname().machine}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d')}")
    print("| images (128 px) | decode into the data cache | image checks | feature checks | per 1,000 images (image / feature) |")
    print("|---|---|---|---|---|")
    for count in args.images or [2000, 20000]:
        r = one(count)
        n = r["images"] / 1000
        print(f"| {r['images']:,} | {r['decode']:.1f} s | {r['images_s']:.1f} s | {r['features']:.1f} s | "
              f"{r['images_s'] / n:.1f} s / {r['features'] / n:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
