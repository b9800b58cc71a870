"""Training-step speed on the CPU: fp32 against bf16 autocast, with and without channels-last.

    .venv/bin/python bench/precision.py [--rounds 6] [--seconds 1.0] [--size 224] [--models ...]

For every model in the registry, three variants of one training step (``zero_grad``,
forward, loss, ``backward``, optimizer ``step``) on random data of the model's input
shape (the point is compute, not data):

- ``fp32``: as imori trains today;
- ``bf16``: ``torch.autocast("cpu", dtype=torch.bfloat16)`` around forward and loss, the
  loss computed in fp32 (``criterion(output.float(), y)``);
- ``bf16+cl``: the same with the model and the input in channels-last memory format.

All three start from the same weights (one model built, copied per variant, each with
its own optimizer) and run in ONE process, interleaved: each round runs every variant
once, in an order rotated from round to round, for a fixed number of timed steps
(chosen per model so an fp32 segment lasts about ``--seconds``). A model whose fp32
step is under ``--switch-warmup-below`` (0.25 s) gets one discarded warm-up step after
each switch of variant; a slower one does not (oneDNN keeps every variant's primitives
cached), and its segments are one to a few steps, an interleaving fine enough that a
neighbour's burst of load lands on all variants rather than one. Images per second: the median of the rounds with the min-max. Ratio to fp32:
the median (min-max) of the per-round ratios, fp32 and the variant measured in the same
round. Prints a Markdown table and writes bench/precision.json.

Per-model settings: mynet 64x64 batch 32 SGD 0.01 momentum 0.9; mnist_cnn 28x28 batch
100 Adam 1e-3 (NLL on its log-probabilities); lenet5 32x32 batch 64 SGD 1e-3; tiny_net
32x32 batch 64 Adam 1e-3; the 224-pixel models batch 32 SGD 1e-3 momentum 0.9 at
``--size`` (224 unless told). vgg16 is skipped unless named in ``--models``: one fp32
step at 224 px took 20-25 s on 2 cores, about 5 minutes for the variants and rounds.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = ("fp32", "bf16", "bf16+cl")

# model -> (side, batch, optimizer, lr, momentum); side None = the --size flag.
SETTINGS = {
    "mynet": (64, 32, "sgd", 0.01, 0.9),
    "mnist_cnn": (28, 100, "adam", 1e-3, 0.0),
    "lenet5": (32, 64, "sgd", 1e-3, 0.0),
    "tiny_net": (32, 64, "adam", 1e-3, 0.0),
}
LARGE = (None, 32, "sgd", 1e-3, 0.9)  # resnet18, mobilenet_v3_small, vgg16, efficientnet_lite0
SKIP_BY_DEFAULT = {
    "vgg16": "one fp32 step at 224 px, batch 32, took 20-25 s on 2 cores (2026-12-01) "
    "(15.5 GFLOPs per image forward): 3 variants x 6 rounds would take about 5 minutes alone; measure it with --models vgg16 --size 112",
}
NUM_CLASSES = 10


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


class Arm:
    """One variant: its own copy of the model, its optimizer, its input."""

    def __init__(self, variant, base_model, spec, x, y, opt_name, lr, momentum):
        import torch

        self.variant = variant
        self.model = copy.deepcopy(base_model)
        self.channels_last = variant.endswith("+cl")
        self.bf16 = variant.startswith("bf16")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        self.x, self.y = x, y
        params = self.model.parameters()
        if opt_name == "sgd":
            self.opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
        else:
            self.opt = torch.optim.Adam(params, lr=lr)
        self.criterion = torch.nn.NLLLoss() if spec.output == "log_probs" else torch.nn.CrossEntropyLoss()
        self.model.train()
        self.output_dtype = None
        self.last_loss = None

    def step(self) -> None:
        import torch

        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            output = self.model(self.x)
            loss = self.criterion(output.float(), self.y)
        loss.backward()
        self.opt.step()
        self.output_dtype = str(output.dtype).replace("torch.", "")
        self.last_loss = loss.detach()

    def timed(self, steps: int) -> float:
        """Seconds for ``steps`` steps."""
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return time.perf_counter() - start


def bench_model(name: str, args) -> dict:
    import torch

    from core.models.registry import build_model
    from core.models.specs import get_spec

    spec = get_spec(name)
    side, batch, opt_name, lr, momentum = SETTINGS.get(name, LARGE)
    side = side or args.size
    torch.manual_seed(0)
    base = build_model(name, NUM_CLASSES, image_size=(side, side))
    x = torch.randn(batch, spec.in_channels, side, side)
    y = torch.randint(0, NUM_CLASSES, (batch,))
    arms = {v: Arm(v, base, spec, x, y, opt_name, lr, momentum) for v in VARIANTS}
    started = time.perf_counter()
    # Warm-up: oneDNN primitive caches, allocator, lazy init. Discarded.
    for arm in arms.values():
        for _ in range(args.warmup):
            arm.step()
    # Steps per timed segment, from one more fp32 step.
    per_step = arms["fp32"].timed(1)
    steps = max(args.min_steps, round(args.seconds / per_step))
    rates = {v: [] for v in VARIANTS}
    ratios = {v: [] for v in VARIANTS if v != "fp32"}
    # A short step gets one discarded step after each switch of variant (caches); a long
    # one does not need it (oneDNN keeps every variant's primitives) and cannot afford it.
    switch_warmup = per_step < args.switch_warmup_below
    load_start = os.getloadavg()[0]
    for r in range(args.rounds):
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[: r % len(VARIANTS)]
        this_round = {}
        for v in order:
            if switch_warmup:
                arms[v].step()
            this_round[v] = steps * batch / arms[v].timed(steps)
        for v in VARIANTS:
            rates[v].append(this_round[v])
            if v != "fp32":
                ratios[v].append(this_round[v] / this_round["fp32"])
    med = {v: statistics.median(ratios[v]) for v in ratios}
    # Fastest round of each arm against fastest fp32 round: what the step costs when no
    # neighbour takes a core (two processes on 2 cores slow a step 5-20x, not 2x).
    fastest = {v: max(rates[v]) / max(rates["fp32"]) for v in ratios}
    best = max(med, key=med.get)
    return dict(
        model=name,
        input=[spec.in_channels, side, side],
        batch=batch,
        optimizer=opt_name,
        steps_per_segment=steps,
        fp32_step_s=round(per_step, 4),
        warmup_after_switch=switch_warmup,
        rounds=args.rounds,
        load_1min_start_end=[round(load_start, 2), round(os.getloadavg()[0], 2)],
        seconds=round(time.perf_counter() - started, 1),
        output_dtype={v: arms[v].output_dtype for v in VARIANTS},
        final_loss={v: round(float(arms[v].last_loss), 4) for v in VARIANTS},
        images_per_s={
            v: dict(median=statistics.median(rates[v]), min=min(rates[v]), max=max(rates[v]), rounds=rates[v])
            for v in VARIANTS
        },
        ratio_vs_fp32={
            v: dict(median=med[v], min=min(ratios[v]), max=max(ratios[v]), rounds=ratios[v]) for v in ratios
        },
        fastest_round_ratio_vs_fp32=fastest,
        best_bf16=best,
        best_ratio=med[best],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds per model (a multiple of 3 "
                        "puts each variant in each position equally often)")
    parser.add_argument("--seconds", type=float, default=1.0, help="target length of one fp32 timed segment")
    parser.add_argument("--min-steps", type=int, default=1, help="timed steps per segment at least")
    parser.add_argument("--warmup", type=int, default=2, help="discarded steps per variant before round 1")
    parser.add_argument("--switch-warmup-below", type=float, default=0.25,
                        help="models whose fp32 step is shorter (s) get a discarded step after each switch")
    parser.add_argument("--size", type=int, default=224, help="side of the 224-pixel models' input")
    parser.add_argument("--models", nargs="*", help="default: every registered model except vgg16")
    parser.add_argument("--threshold", type=float, default=1.1, help="ratio at which bf16 counts as paying")
    parser.add_argument("--json", default=str(ROOT / "bench" / "precision.json"))
    args = parser.parse_args()

    import torch

    from core.models.specs import list_models
    from core.precision import cpu_supports_bf16

    threads = usable_cores()
    torch.set_num_threads(threads)
    names = args.models or [s.name for s in list_models() if s.name not in SKIP_BY_DEFAULT]
    skipped = {} if args.models else dict(SKIP_BY_DEFAULT)
    command = "python " + " ".join(["bench/precision.py", *sys.argv[1:]])
    load_before = load()
    started = time.perf_counter()
    print(f"$ {command}")
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {threads} cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, cpu_supports_bf16() = {cpu_supports_bf16()}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    print(f"load before: {load_before}", flush=True)
    results = []
    header = (
        "| model | input, batch | fp32 img/s | bf16 img/s | bf16+cl img/s | "
        "bf16 / fp32 | bf16+cl / fp32 | fastest rounds: bf16, bf16+cl / fp32 | faster bf16 layout | "
        "pays (>= {:.2f}x) |".format(args.threshold)
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)

    def cell_rate(r, v):
        s = r["images_per_s"][v]
        return f"{s['median']:.0f} ({s['min']:.0f} .. {s['max']:.0f})"

    def cell_ratio(r, v):
        s = r["ratio_vs_fp32"][v]
        return f"{s['median']:.2f} ({s['min']:.2f} .. {s['max']:.2f})"

    for name in names:
        r = bench_model(name, args)
        results.append(r)
        c, h, w = r["input"]
        line = (
            f"| {name} | {c}x{h}x{w}, {r['batch']} | {cell_rate(r, 'fp32')} | {cell_rate(r, 'bf16')} | "
            f"{cell_rate(r, 'bf16+cl')} | {cell_ratio(r, 'bf16')} | {cell_ratio(r, 'bf16+cl')} | "
            f"{r['fastest_round_ratio_vs_fp32']['bf16']:.2f}, {r['fastest_round_ratio_vs_fp32']['bf16+cl']:.2f} | "
            f"{'channels-last' if r['best_bf16'] == 'bf16+cl' else 'contiguous'} | "
            f"{'yes' if r['best_ratio'] >= args.threshold else 'no'} |"
        )
        lines.append(line)
        print(line, flush=True)
    for n, why in skipped.items():
        line = f"| {n} | skipped: {why} | | | | | | | | |"
        lines.append(line)
        print(line)
    pays = sorted(r["model"] for r in results if r["best_ratio"] >= args.threshold)
    total = time.perf_counter() - started
    load_after = load()
    print(f"\nmedians (min .. max) over {args.rounds} interleaved rounds; ratios per round, fp32 in the same round; "
          "'pays' and the layout go by the median ratio")
    print(f"bf16 pays (best layout >= {args.threshold}x fp32): {', '.join(pays) or 'none'}")
    print(f"load after: {load_after}")
    print(f"total {total:.0f} s")
    Path(args.json).write_text(
        json.dumps(
            dict(
                command=command,
                date=time.strftime("%Y-%m-%d %H:%M"),
                machine=platform.machine(),
                cores=threads,
                torch=torch.__version__,
                cpu_supports_bf16=cpu_supports_bf16(),
                cpu_capability=torch.backends.cpu.get_cpu_capability(),
                load_before=load_before,
                load_after=load_after,
                seconds=round(total, 1),
                threshold=args.threshold,
                bf16_pays=pays,
                skipped=skipped,
                table="\n".join(lines),
                results=results,
            ),
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
