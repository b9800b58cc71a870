"""Uploaded image -> probabilities, with a warm model, on the CPU, per model.

    .venv/bin/python bench/predict_latency.py [--repeats 50] [--threads 1]

What the Predict page does for one upload: decode the PNG bytes, the recorded
preprocessing, one forward pass in eval mode, probabilities and top-k
(``core.predict.Predictor.predict``), the model already loaded (the page caches it).
The dashboard predicts with one torch thread (so it never fights a worker for the
cores); ``--threads`` changes that. Targets: under 20 ms for the seed nets, under 100 ms
for resnet18 at 224x224.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = [("mynet", {}), ("mnist_cnn", {}), ("lenet5", {}), ("tiny_net", {}), ("resnet18", {}), ("mobilenet_v3_small", {})]


def photo(size=(320, 240)) -> bytes:
    import numpy as np
    from PIL import Image

    array = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    from core.models.registry import build_model
    from core.models.specs import get_spec
    from core.predict import Predictor

    torch.set_num_threads(args.threads)
    image = photo()
    print(f"{time.strftime('%Y-%m-%d')}, {torch.__version__}, {args.threads} torch thread(s), a 320x240 PNG upload")
    print("| model | input | median ms | p90 ms | target |")
    print("|---|---|---|---|---|")
    for name, options in MODELS:
        spec = get_spec(name)
        model = build_model(name, 10, options=options)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "weights.pt"
            torch.save(model.state_dict(), path)
            predictor = Predictor(path, model=name, options=options)
        for _ in range(5):
            predictor.predict([image])  # warm: first calls allocate
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            predictor.predict([image], top_k=5)
            times.append(1000 * (time.perf_counter() - start))
        times.sort()
        target = "< 100 ms" if spec.pretrainable else "< 20 ms"
        size = "x".join(map(str, predictor.preprocessing.size))
        print(f"| {name} | {spec.in_channels}x{size} | {statistics.median(times):.1f} | {times[int(0.9 * len(times))]:.1f} | {target} |",
              flush=True)


if __name__ == "__main__":
    main()
