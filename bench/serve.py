"""`imori serve` and the INT8 export under load: requests per second and p95 latency.

    .venv/bin/python bench/serve.py [--only tiny_net|efficientnet_lite0] [--seconds 5] [--iterations 30]

For a seed net (tiny_net on digits) and EfficientNet-Lite0 (ImageNet weights, fine-tuned
``--iterations`` steps on shapes2 at ``--size`` px, 128 by default, backbone frozen: 224 px
takes the 2-core machine past three minutes before any load), each with 1, 4 and 16
concurrent clients for ``--seconds`` each:

- **endpoint**: a real ``imori serve`` process (PyTorch, the Predictor of ``imori
  predict``), each client posting one 320x240 PNG per request on a kept-alive connection;
- **onnx float / onnx int8**: ONNX Runtime sessions of ``imori export``'s float and INT8
  files in this process, each client a thread running one preprocessed image per call
  (what an app that loads the exported file does: no HTTP, no decoding).

The INT8 file's own guard figures (agreement, both accuracies, size) are printed too.
Prints a Markdown table; nothing is written.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("IMORI_HOME", tempfile.mkdtemp(prefix="imori-bench-serve-"))

CLIENTS = (1, 4, 16)


def photo(size=(320, 240)) -> bytes:
    import numpy as np
    from PIL import Image

    array = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def load(call, clients: int, seconds: float) -> tuple[float, float]:
    """``clients`` threads calling ``call()`` for ``seconds``: (calls per second, p95 ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        mine = []
        while time.monotonic() < stop:
            start = time.perf_counter()
            call()
            mine.append(1000 * (time.perf_counter() - start))
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    return len(latencies) / elapsed, statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else latencies[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def endpoint_rows(checkpoint: Path, seconds: float) -> list[tuple[int, float, float]]:
    import requests

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", str(checkpoint), "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        # One prepared multipart body, sent by http.client in a single write with its headers:
        # requests (urllib3 2) writes them apart, and Nagle's algorithm against the server's
        # delayed ACK then adds ~40 ms to every request of a lone client.
        prepared = requests.Request("POST", f"{url}/predict",
                                    files=[("file", ("photo.png", photo(), "image/png"))]).prepare()
        body, headers = prepared.body, dict(prepared.headers)
        local = threading.local()

        def call() -> None:
            if not hasattr(local, "conn"):
                local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            local.conn.request("POST", "/predict", body=body, headers=headers)
            answer = local.conn.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"/predict answered {answer.status}")

        call()  # warm
        return [(n, *load(call, n, seconds)) for n in CLIENTS]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def onnx_rows(path: Path, example, seconds: float) -> list[tuple[int, float, float]]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"image": example}
    session.run(None, feed)
    return [(n, *load(lambda: session.run(None, feed), n, seconds)) for n in CLIENTS]


def show(*row):
    label, how, n, rps, p95 = row
    print(f"| {label} | {how} | {n} | {rps:.1f} | {p95:.1f} |", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="each load level's duration")
    parser.add_argument("--iterations", type=int, default=30, help="EfficientNet-Lite0's fine-tuning steps")
    parser.add_argument("--size", type=int, default=128, help="EfficientNet-Lite0's input, pixels a side")
    parser.add_argument("--only", help="one model (each takes a minute or two on 2 cores)")
    parser.add_argument("--max-images", dest="max_images", type=int, default=300,
                        help="test images of the exports' checks")
    args = parser.parse_args()

    from core.checkpoint import load_checkpoint
    from core.config import RunConfig
    from core.data.preprocess import Preprocessing
    from core.errors import ImoriError
    from core.export import export
    from core.train import fit

    work = Path(tempfile.mkdtemp(prefix="imori-bench-serve-"))
    configs = {
        "tiny_net (seed net, digits, 32 px)": RunConfig(model="tiny_net", dataset="digits", iterations=60, epochs=None,
                                                        batch_size=64, threads=2),
        f"efficientnet_lite0 (shapes2, {args.size} px)": RunConfig(
            model="efficientnet_lite0", dataset="shapes2", iterations=args.iterations, epochs=None, batch_size=8,
            threads=2, pretrained=True, freeze_backbone=True, image_size=(args.size, args.size)),
    }
    print(f"{os.cpu_count()} cores; each level {args.seconds:g} s\n", flush=True)
    rows = []
    print("| model | served by | clients | requests/s | p95 ms |\n|---|---|---|---|---|", flush=True)
    for label, config in configs.items():
        if args.only and config.model != args.only:
            continue
        started = time.monotonic()
        checkpoint = fit(config, work / config.model).last_checkpoint
        print(f"{label}: trained in {time.monotonic() - started:.0f} s", file=sys.stderr)
        example = Preprocessing.from_dict(load_checkpoint(checkpoint).preprocessing)
        from PIL import Image

        example = example(Image.open(io.BytesIO(photo()))).numpy()
        floating = export(checkpoint, work / f"{config.model}.onnx", "onnx", max_images=args.max_images).path
        for n, rps, p95 in endpoint_rows(checkpoint, args.seconds):
            rows.append(show(label, "endpoint (PyTorch)", n, rps, p95))
        for n, rps, p95 in onnx_rows(floating, example, args.seconds):
            rows.append(show(label, f"ONNX float ({floating.stat().st_size / 1e6:.2f} MB)", n, rps, p95))
        try:
            int8 = export(checkpoint, work / f"{config.model}.int8.onnx", "onnx-int8", max_images=args.max_images)
            print(f"{label}: {int8.int8.describe()}", file=sys.stderr, flush=True)
            for n, rps, p95 in onnx_rows(int8.path, example, args.seconds):
                rows.append(show(label, f"ONNX INT8 ({int8.path.stat().st_size / 1e6:.2f} MB)", n, rps, p95))
        except ImoriError as err:
            print(f"{label}: {err}", file=sys.stderr, flush=True)
    print(json.dumps([dict(zip(("model", "how", "clients", "rps", "p95_ms"), r)) for r in rows]), file=sys.stderr)


if __name__ == "__main__":
    main()
