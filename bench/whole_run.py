"""A whole one-epoch run of the seed 003 recipe on MNIST-format data, start to exit:
`imori train` against the tutorial's own script, each a fresh process.

    .venv/bin/python bench/whole_run.py [--rounds 3] [--no-startup]

Issue 18's "done when": a whole one-epoch ``imori train`` of the seed 003 recipe on
MNIST-format data at least 1.5x faster than the tutorial's own script. The bench builds
both arms itself:

- data: torchvision's MNIST raw layout (``ROOT/MNIST/raw/train-images-idx3-ubyte`` ...,
  uncompressed idx files, 60,000 train / 10,000 test 28x28 uint8), made offline from
  imori's shipped 8x8 digits (``core/data/assets/digits.npz``) with seeded random
  scales, aspect ratios and shifts; train images come from the digits of imori's fixed
  train split, test images from its test split. Checked to load with
  ``torchvision.datasets.MNIST(ROOT, train=..., download=False)`` before timing.
- arm A, the tutorial's script: seed 003's ``mnist.py`` written to a temporary folder
  (torchvision MNIST, ToTensor + Normalize((0.1307,), (0.3081,)), DataLoader batch 100
  shuffled, the seed's CNN, NLLLoss, Adam 1e-3, ``torch.manual_seed(0)``, tqdm over the
  batches, one epoch, then its test loop printing test loss and accuracy), run as
  ``python mnist.py ROOT``. Only ``epoch = 1`` and the data root differ from the seed
  (and ``download=False``: nothing here reaches the network).
- arm B: ``imori train --recipe seed003 --dataset mnist --data-root ROOT --epochs 1
  --quiet --json`` with a temporary IMORI_HOME, default precision (``auto``: bf16
  autocast + channels-last where the CPU has native bf16 and it pays for mnist_cnn);
- arm C: the same with ``--precision fp32``.

The first ``imori train`` in a fresh IMORI_HOME decodes the idx files into imori's
dataset cache; it is timed and reported on its own row ("cold"). The rounds that follow
(A, B, C, A, B, C, ...; never two at once) find the cache warm, as a user's second run
does. Wall time is each whole process, from spawn to exit; accuracy is what each one
prints. Note what imori's epoch is: the recipe holds 10 % of the training split out for
validation (``val_fraction`` 0.1, its minimum 0.05), so it trains 540 batches of 100 on
54,000 images and evaluates 6,000 validation + 10,000 test images and writes
checkpoints; the tutorial trains 600 batches on 60,000 and tests 10,000.

Then (unless ``--no-startup``) what ``imori train`` does before and around its first
step: bare interpreter, ``import torch``, ``import cli.main``, a whole ``--iterations 1``
run, an in-process phase clock of that run (imports, database open and migration check,
dataset cache load, model build, first step, evaluation, checkpoint, exit), and the
heaviest imports from ``python -X importtime``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TRAIN_COUNT, TEST_COUNT = 60_000, 10_000
DATA_SEED = 20_261_201

# Seed 003's mnist.py, as the tutorial prints it, with one epoch and the data root from
# argv (and download=False: the bench runs offline).
TUTORIAL_SCRIPT = r'''
import sys

from tqdm import tqdm

import torch
from torch import nn, optim
import torch.nn.functional as F
from torchvision import datasets, transforms

DATA = sys.argv[1]


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.base_net = nn.Sequential(
            nn.Conv2d(1, 20, 5, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 40, 5, 1),
            nn.ReLU()
        )
        self.classfier = nn.Sequential(
            nn.Linear(40*8*8, 100),
            nn.ReLU(),
            nn.Linear(100, 10),
            nn.LogSoftmax()
        )

    def forward(self, x):
        x = self.base_net(x)
        x = x.view(-1, 40*8*8)
        x = self.classfier(x)
        return x


def train(model, device, train_loader, optimizer, criterion, epoch):
    model.train()
    train_loss = 0
    for batch in tqdm(train_loader):
        data, target = batch
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        pred = model(data)
        loss = criterion(pred, target)
        loss.backward()
        optimizer.step()
        train_loss += loss.item()
    print(f"Epoch {epoch}: Train loss {train_loss / len(train_loader)}")


def test(model, device, test_loader, criterion, epoch):
    model.eval()
    test_loss = 0
    correct = 0
    for batch in tqdm(test_loader):
        data, target = batch
        data, target = data.to(device), target.to(device)
        pred = model(data)
        loss = criterion(pred, target)
        test_loss += loss.item()
        correct += pred.argmax(dim=1).eq(target).sum().item()
    print(f"Epoch {epoch}: Test loss {test_loss / len(test_loader)}, Accuracy {100. * correct / len(test_loader.dataset)} %")


def main():
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    epoch = 1
    batch_size = 100
    save_model = False

    train_loader = torch.utils.data.DataLoader(
        datasets.MNIST(DATA, train=True, download=False,
                       transform=transforms.Compose([
                           transforms.ToTensor(),
                           transforms.Normalize((0.1307,), (0.3081,))
                       ])),
        batch_size=batch_size, shuffle=True)
    test_loader = torch.utils.data.DataLoader(
        datasets.MNIST(DATA, train=False, transform=transforms.Compose([
            transforms.ToTensor(),
            transforms.Normalize((0.1307,), (0.3081,))
        ])),
        batch_size=batch_size, shuffle=True)

    model = Net().to(device)
    optimizer = optim.Adam(model.parameters(), lr=0.001)
    criterion = nn.NLLLoss()

    for ep in range(epoch):
        train(model, device, train_loader, optimizer, criterion, ep)
        test(model, device, test_loader, criterion, ep)

    if save_model:
        torch.save(model.state_dict(), "mnist_cnn.pt")

if __name__ == "__main__":
    main()
'''


# -- the data --------------------------------------------------------------------------


def build_mnist(root: Path) -> dict[str, int]:
    """Write ``root/MNIST/raw/*-ubyte``: 60,000 + 10,000 28x28 uint8 digits made from the
    shipped 8x8 digits by seeded random scale, aspect and shift (train images from the
    digits of imori's fixed train split, test images from its test split)."""
    import numpy as np
    from PIL import Image

    from core.data.builtin import DIGITS_ASSET, digits_split

    with np.load(DIGITS_ASSET) as data:
        raw, labels = data["images"].astype(np.float64), data["labels"].astype(np.uint8)
    scaled = np.rint(raw * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255, as builtin.py
    sources = [idx.numpy() for idx in digits_split()]  # (train indices, test indices)
    rng = np.random.default_rng(DATA_SEED)
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, (prefix, n) in enumerate((("train", TRAIN_COUNT), ("t10k", TEST_COUNT))):
        pick = rng.choice(sources[split], size=n)
        heights = rng.integers(14, 23, size=n)  # the digit's box: 14..22 px high (MNIST's ~20)
        widths = np.clip(np.rint(heights * rng.uniform(0.7, 1.1, size=n)), 8, 24).astype(int)
        gains = rng.uniform(0.8, 1.0, size=n)  # stroke intensity
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i in range(n):
            h, w = int(heights[i]), int(widths[i])
            big = np.asarray(Image.fromarray(scaled[pick[i]]).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float64)
            # Centred, then shifted up to 3 px each way while staying inside the field.
            top = int(np.clip((28 - h) // 2 + rng.integers(-3, 4), 0, 28 - h))
            left = int(np.clip((28 - w) // 2 + rng.integers(-3, 4), 0, 28 - w))
            images[i, top : top + h, left : left + w] = np.rint(big * gains[i]).astype(np.uint8)
        with open(folder / f"{prefix}-images-idx3-ubyte", "wb") as f:
            f.write(struct.pack(">IIII", 0x00000803, n, 28, 28))
            f.write(images.tobytes())
        with open(folder / f"{prefix}-labels-idx1-ubyte", "wb") as f:
            f.write(struct.pack(">II", 0x00000801, n))
            f.write(labels[pick].tobytes())
        counts[prefix] = n
    return counts


def check_torchvision(root: Path) -> str:
    import torchvision

    train = torchvision.datasets.MNIST(str(root), train=True, download=False)
    test = torchvision.datasets.MNIST(str(root), train=False, download=False)
    assert tuple(train.data.shape) == (TRAIN_COUNT, 28, 28) and tuple(test.data.shape) == (TEST_COUNT, 28, 28)
    assert int(train.targets.min()) == 0 and int(train.targets.max()) == 9
    image, label = train[0]
    assert image.size == (28, 28) and 0 <= label <= 9
    counts = ", ".join(str(int(c)) for c in train.targets.bincount())
    return f"torchvision {torchvision.__version__} reads {len(train):,} train / {len(test):,} test (train per class: {counts})"


# -- running the arms ---------------------------------------------------------------------


def child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "IMORI_TORCH_THREADS", "IMORI_DATA_ROOT")}
    env["IMORI_HOME"] = str(home)
    return env


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


OTHERS: list[float] = []  # per timed process: CPU seconds other processes used meanwhile


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str, str]:
    """Run ``argv`` to its end; its wall seconds, stdout and stderr. Also notes in OTHERS
    how many CPU seconds the rest of the machine used meanwhile (busy time in /proc/stat
    less the child's own user + system time): a round that shared the cores shows it."""
    import resource

    before, busy = resource.getrusage(resource.RUSAGE_CHILDREN), busy_cpu_seconds()
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after, busy = resource.getrusage(resource.RUSAGE_CHILDREN), busy_cpu_seconds() - busy
    own = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    OTHERS.append(max(0.0, busy - own))
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout, proc.stderr


def run_tutorial(script: Path, data: Path, env: dict[str, str]) -> dict:
    seconds, out, _ = timed([sys.executable, str(script), str(data)], env, script.parent)
    m = re.search(r"Test loss ([0-9.eE+-]+), Accuracy ([0-9.]+) %", out)
    if not m:
        raise SystemExit(f"no test accuracy in the tutorial's output:\n{out}")
    return dict(wall=seconds, accuracy=float(m.group(2)), loss=float(m.group(1)), steps=600, train=TRAIN_COUNT, others=OTHERS[-1])


def imori_argv(data: Path, *extra: str) -> list[str]:
    return [str(Path(sys.executable).parent / "imori"), "train", "--recipe", "seed003", "--dataset", "mnist",
            "--data-root", str(data), *extra, "--quiet", "--json"]


def run_imori(argv: list[str], env: dict[str, str], cwd: Path) -> dict:
    seconds, out, _ = timed(argv, env, cwd)
    summary = json.loads(out[out.index("{"):])
    test = summary["test"]
    if int(test["count"]) != TEST_COUNT:
        raise SystemExit(f"imori tested {test['count']} images, not {TEST_COUNT}")
    return dict(wall=seconds, accuracy=100 * test["accuracy"], loss=test["loss"], fit=summary["seconds"],
                steps=summary["step"], precision=summary["precision"], others=OTHERS[-1])


def spread(values: list[float], fmt: str = ".1f") -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}} .. {max(values):{fmt}})"


# -- start-up ---------------------------------------------------------------------------------


# Runs `imori train` in-process with a clock on each phase; prints one JSON line of
# (phase, seconds since the epoch) marks and durations.
PHASE_DRIVER = r'''
import json, sys, time
t_first = time.time()
marks, spans = [("python up, first line of the driver", t_first)], {}

# Who first imports torch._dynamo (about a second: sympy, triton, inductor pieces), and when.
import importlib.abc, traceback
trigger = []
class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch._dynamo" and not trigger:
            frames = [f for f in traceback.extract_stack()[:-1] if "importlib" not in f.filename]
            trigger.append([f"{f.filename.split('site-packages/')[-1].split('/work/main/')[-1]}:{f.lineno} {f.name}" for f in frames[-3:]])
        return None
sys.meta_path.insert(0, Finder())

def clock(owner, name, label):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spans.setdefault(label, []).append(time.perf_counter() - start)
    setattr(owner, name, wrapper)

t = time.perf_counter()
import cli.main
spans["import cli.main (the parser's modules)"] = [time.perf_counter() - t]
t = time.perf_counter()
import torch
spans["import torch (what of it is left after cli.main)"] = [time.perf_counter() - t]
t = time.perf_counter()
import cli.progress, core.records, core.run, core.train, core.data.registry, core.models.registry
spans["lazy imports of `imori train` (records/SQLAlchemy, train, data, models)"] = [time.perf_counter() - t]

import cli.options, core.records.engine as engine, core.records.store as store, core.records.queries as queries
import core.data.cache as cache, core.data.torchvision_sets as tvs
import core.train as train, core.checkpoint as checkpoint, core.records.db_recorder as dbrec
clock(cli.options, "build_config", "build the run config (recipe + flags)")
clock(engine, "make_engine", "database: create the SQLAlchemy engine")
clock(engine, "_stored_revision", "database: migration check (read alembic_version)")
clock(engine, "upgrade", "database: migrate (Alembic upgrade to head)")
clock(store, "create_run", "database: create_run (incl. first open)")
clock(store, "claim_run", "database: claim_run")
clock(queries, "get_run", "database: get_run")
clock(tvs, "load_torchvision", "dataset: load_torchvision (all of it)")
clock(cache, "fingerprint_files", "dataset: fingerprint the idx files")
clock(cache, "load", "dataset: read the tensor cache (torch.load)")
clock(tvs, "finish", "dataset: finish (splits, checks)")
clock(train.Trainer, "__init__", "Trainer.__init__ (data, model, optimizer)")
clock(train.Trainer, "evaluate_epoch", "evaluate val + test at the end")
clock(checkpoint.Checkpointer, "after_epoch", "checkpoints after the epoch")
clock(dbrec.DbRecorder, "on_start", "database: DbRecorder.on_start")
clock(dbrec.DbRecorder, "on_end", "database: DbRecorder.on_end")
import core.models.registry as models
clock(models, "build_model", "build the model")

first = []
original_add = train._StepBuffer.add
def add(self, *args, **kwargs):
    if not first:
        first.append(time.time())
    return original_add(self, *args, **kwargs)
train._StepBuffer.add = add

clock(train.Trainer, "train_epoch", "train the epoch (here: one step)")

marks.append(("imports done, clocks set", time.time()))
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    code = cli.main.main(sys.argv[1:])
marks.append(("first training step done", first[0] if first else None))
marks.append(("main() returned", time.time()))
print(json.dumps(dict(code=code, marks=marks, spans=spans, dynamo=trigger[0] if trigger else None,
                      dynamo_loaded="torch._dynamo" in sys.modules)))
'''


def startup(data: Path, home: Path, env: dict[str, str], repeats: int = 3) -> None:
    py = sys.executable
    one = ["--iterations", "1"]
    cases = [
        ("`python -c pass` (interpreter + site)", [py, "-c", "pass"]),
        ("`python -c 'import torch'`", [py, "-c", "import torch"]),
        ("`python -c 'import torch, torchvision.datasets'`", [py, "-c", "import torch, torchvision.datasets"]),
        ("`python -c 'import cli.main'` (what `imori --help` loads)", [py, "-c", "import cli.main"]),
        ("`imori train ... --iterations 1` (warm cache), whole process", imori_argv(data, *one)),
        ("`imori train ... --iterations 1 --precision fp32`, whole process", imori_argv(data, *one, "--precision", "fp32")),
    ]
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    others: dict[str, list[float]] = {label: [] for label, _ in cases}
    for _ in range(repeats):  # interleaved, like the rounds
        for label, argv in cases:
            times[label].append(timed(argv, env, ROOT)[0])
            others[label].append(OTHERS[-1])
    print(f"\nStart-up, whole processes (median of {repeats}, interleaved; min .. max):\n")
    print("| process | seconds | CPU s used by other processes meanwhile (max) |")
    print("|---|---|---|")
    for label, _ in cases:
        print(f"| {label} | {spread(times[label], '.2f')} | {max(others[label]):.1f} |")

    # The phase clock, in-process, on a warm cache.
    runs = []
    for _ in range(repeats):
        spawned = time.time()
        _, out, _ = timed([py, "-c", PHASE_DRIVER, *imori_argv(data, *one)[1:]], env, ROOT)
        ended = time.time()
        report = json.loads(out.strip().splitlines()[-1])
        report["spawned"], report["ended"], report["others"] = spawned, ended, OTHERS[-1]
        runs.append(report)
    print(f"\nWhere `imori train --recipe seed003 --dataset mnist ... --iterations 1` spends its time "
          f"(in-process clocks, warm cache, median of {repeats}; a span that calls another includes it):\n")
    print("| phase | seconds |")
    print("|---|---|")
    def row(label: str, values: list[float]) -> None:
        print(f"| {label} | {spread(values, '.3f')} |")
    row("spawn -> the driver's first line (interpreter start-up)", [r["marks"][0][1] - r["spawned"] for r in runs])
    for label in runs[0]["spans"]:
        values = [sum(r["spans"].get(label, [0.0])) for r in runs]
        calls = len(runs[0]["spans"][label])
        row(label + (f" ({calls} calls)" if calls > 1 else ""), values)
    marks = [dict(r["marks"]) for r in runs]
    row("clocks set -> first training step done", [m["first training step done"] - m["imports done, clocks set"] for m in marks])
    row("first step done -> main() returned (eval, checkpoints, records)", [m["main() returned"] - m["first training step done"] for m in marks])
    row("main() returned -> process gone (interpreter exit)", [r["ended"] - dict(r["marks"])["main() returned"] for r in runs])
    row("whole process", [r["ended"] - r["spawned"] for r in runs])
    shared = ", ".join(f"{r['others']:.1f}" for r in runs)
    print(f"\n(CPU seconds used by other processes during these {repeats} runs: {shared})")

    dynamo = runs[0].get("dynamo")
    if dynamo:
        print(f"\ntorch._dynamo is first imported at run time from: {' <- '.join(reversed(dynamo))}")

    # Interpreter exit with torch's modules loaded, for comparison with imori's.
    exits = []
    probe = "import time, torch, torch._dynamo; print(time.time())"
    for _ in range(repeats):
        _, out, _ = timed([py, "-c", probe], env, ROOT)
        exits.append(time.time() - float(out.strip().splitlines()[-1]))
    print(f"exit of a bare `python -c 'import torch, torch._dynamo'` (last line -> process gone): "
          f"{spread(exits, '.3f')} s")

    # The heaviest imports of a whole `imori train`, by cumulative time.
    proc = subprocess.run([py, "-X", "importtime", "-c", "import sys; from cli.main import main; sys.exit(main(sys.argv[1:]))",
                           *imori_argv(data, *one)[1:]], env=env, cwd=ROOT, capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(2)) / 1e6, int(m.group(1)) / 1e6, len(m.group(3)) // 2, m.group(4)))
    top = [r for r in rows if r[2] == 0]
    total = sum(r[0] for r in top)
    print(f"\nTop-level imports of a whole `imori train ... --iterations 1` (`python -X importtime`, one run, "
          f"cumulative; {total:.2f} s in all top-level imports):\n")
    print("| module | cumulative s | self s |")
    print("|---|---|---|")
    for cumulative, self_s, _, name in sorted(top, reverse=True)[:15]:
        print(f"| {name} | {cumulative:.3f} | {self_s:.3f} |")
    named = ("cli.main", "core.models", "core.records", "core.data", "core.train", "torch", "torchvision",
             "torchvision.models", "torchvision.datasets", "torchvision.transforms", "torch._dynamo", "sympy", "triton",
             "torch._inductor", "sqlalchemy", "alembic", "numpy", "PIL.Image", "tqdm", "scipy")
    print("\nNamed modules in the same run, where first imported (cumulative s; depth 0 = imported by code at run time, "
          "not by another module):\n")
    print("| module | cumulative s | depth |")
    print("|---|---|---|")
    for want in named:
        hit = next((r for r in rows if r[3] == want), None)
        if hit:
            print(f"| {want} | {hit[0]:.3f} | {hit[2]} |")


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up breakdown")
    parser.add_argument("--startup-only", action="store_true",
                        help="only the start-up breakdown (after one untimed run that fills the dataset cache)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (data, IMORI_HOME)")
    args = parser.parse_args()
    began = time.monotonic()
    load_before = os.getloadavg()
    import torch

    tmp = Path(tempfile.mkdtemp(prefix="imori-bw-", dir="/tmp"))
    if not args.keep:  # removed however the bench ends (data ~55 MB, cache ~55 MB, runs)
        import atexit
        import shutil

        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    data, home, tutorial = tmp / "data", tmp / "home", tmp / "tutorial"
    tutorial.mkdir()
    script = tutorial / "mnist.py"
    script.write_text(TUTORIAL_SCRIPT)
    env = child_env(home)

    started = time.monotonic()
    build_mnist(data)
    built = time.monotonic() - started
    check = check_torchvision(data)

    command = shlex.join([".venv/bin/python", "bench/whole_run.py", *sys.argv[1:]])
    print(f"$ {command}")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.uname().machine}, {len(os.sched_getaffinity(0))} cores, "
          f"torch {torch.__version__}, Python {sys.version.split()[0]}")
    print(f"data: {data}/MNIST/raw, built in {built:.1f} s from core/data/assets/digits.npz; {check}")
    print(f"arm A: {shlex.join([sys.executable, str(script), str(data)])}")
    print(f"arm B: IMORI_HOME={home} {shlex.join(imori_argv(data, '--epochs', '1'))}")
    print(f"arm C: arm B with --precision fp32")

    arm_b, arm_c = imori_argv(data, "--epochs", "1"), imori_argv(data, "--epochs", "1", "--precision", "fp32")
    if args.startup_only:
        run_imori(imori_argv(data, "--iterations", "1"), env, tmp)  # fills the dataset cache
        startup(data, home, env)
        finish(args, tmp, load_before, began)
        return
    cold = run_imori(arm_b, env, tmp)  # fresh IMORI_HOME: decodes the idx files into the cache
    cache_files = sorted(p.name for p in (home / "cache").iterdir())
    a, b, c, loads = [], [], [], []
    for _ in range(args.rounds):
        a.append(run_tutorial(script, data, env))
        b.append(run_imori(arm_b, env, tmp))
        c.append(run_imori(arm_c, env, tmp))
        loads.append(os.getloadavg()[0])
    after = sorted(p.name for p in (home / "cache").iterdir())
    if after != cache_files:
        print(f"WARNING: the dataset cache changed during the rounds ({cache_files} -> {after}); rounds were not all warm")
    ab = [x["wall"] / y["wall"] for x, y in zip(a, b)]
    ac = [x["wall"] / y["wall"] for x, y in zip(a, c)]

    print(f"\nWhole one-epoch runs, each a fresh process, wall time spawn -> exit; {args.rounds} interleaved "
          f"rounds (A, B, C, ...) with imori's dataset cache WARM (a user's second run); the COLD row is the "
          f"first imori run of the fresh IMORI_HOME, which decodes MNIST into the cache, timed once before the rounds.\n")
    print("| arm | trains | wall s, median (min .. max) | imori fit() s | test accuracy % | A / arm, per round: median (min .. max) |")
    print("|---|---|---|---|---|---|")
    print(f"| A: the tutorial's script (torchvision DataLoader, fp32) | {a[0]['steps']} steps on {TRAIN_COUNT:,} | "
          f"{spread([r['wall'] for r in a])} | - | {spread([r['accuracy'] for r in a], '.2f')} | 1 |")
    for label, rows, ratios in (
        (f"B: imori train, default precision (auto -> {b[0]['precision']}), warm cache", b, ab),
        (f"C: imori train --precision fp32, warm cache", c, ac),
    ):
        print(f"| {label} | {rows[0]['steps']} steps on 54,000 | {spread([r['wall'] for r in rows])} | "
              f"{spread([r['fit'] for r in rows])} | {spread([r['accuracy'] for r in rows], '.2f')} | "
              f"**{spread(ratios, '.2f')}** |")
    print(f"| B cold: first imori train of a fresh IMORI_HOME ({cold['precision']}; decodes into the cache) | "
          f"{cold['steps']} steps on 54,000 | {cold['wall']:.1f} (once) | {cold['fit']:.1f} | {cold['accuracy']:.2f} | "
          f"{statistics.median([r['wall'] for r in a]) / cold['wall']:.2f} (median A / this run) |")
    print(f"\nratio of medians: A/B {statistics.median([r['wall'] for r in a]) / statistics.median([r['wall'] for r in b]):.2f}, "
          f"A/C {statistics.median([r['wall'] for r in a]) / statistics.median([r['wall'] for r in c]):.2f} "
          f"(target for issue 18: A/B >= 1.5). imori's wall - fit() = its start-up and exit outside the loop: "
          f"B {spread([r['wall'] - r['fit'] for r in b])} s, C {spread([r['wall'] - r['fit'] for r in c])} s.")

    print("per round, wall s (A, B, C; 1-min load after the round): " + "; ".join(
        f"{i + 1}: {x['wall']:.1f}, {y['wall']:.1f}, {z['wall']:.1f} ({l:.2f})" for i, (x, y, z, l) in enumerate(zip(a, b, c, loads))))
    shared = [(name, i + 1, r) for name, rows in (("A", a), ("B", b), ("C", c), ("B cold", [cold])) for i, r in enumerate(rows)]
    others = ", ".join(f"{name}{'' if name == 'B cold' else i} {r['others']:.1f}" for name, i, r in shared)
    print(f"CPU seconds used by OTHER processes while each run ran (busy time in /proc/stat less the run's own): {others}")
    crowded = [f"{name}{'' if name == 'B cold' else i}" for name, i, r in shared if r["others"] > 0.05 * r["wall"]]
    if crowded:
        print(f"WARNING: other processes used more than 5 % of a core during {', '.join(crowded)}: "
              "those wall times are not this machine's alone; rerun when it is idle.")

    if not args.no_startup:
        startup(data, home, env)
    finish(args, tmp, load_before, began)


def finish(args: argparse.Namespace, tmp: Path, load_before: tuple[float, float, float], began: float) -> None:
    load_after = os.getloadavg()
    print(f"\nload average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
          f"(1 min; other processes on these cores widen the spread); bench ran {time.monotonic() - began:.0f} s")
    if args.keep:
        print(f"kept {tmp}")


if __name__ == "__main__":
    main()
