"""How fast the queue answers, with a warm worker on this machine.

    .venv/bin/python bench/queueing.py [--rounds 10]

(Not bench/queue.py: that name would shadow the standard library's `queue`, which torch
and Celery import, for every script in this folder.)

Measures, on a throwaway IMORI_HOME with the embedded Redis and one real `imori worker`:

1. submit -> first iteration recorded (median of --rounds submits, the worker warm);
2. tiny runs per minute through one worker;
3. two runs queued at once against the same two run one after the other (one worker
   per machine trains one run at a time, so "at once" must cost no more than in turn);
4. a whole run through the queue (submit -> succeeded: the seed 003 recipe on digits,
   5 epochs, recorded, checkpointed) against the tutorial's script as a process (start
   Python, import torch, load the same digits, train and test 5 epochs, save the
   state_dict), in interleaved rounds.

Prints a table; the figures go into bench/RESULTS.md by hand with the date and machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import time


# The seed 003 tutorial's script, bare, on the same digits imori trains on: a fresh
# process, the tutorial's loop (Adam 1e-3, batch 100, NLL, 5 epochs, test each epoch).
BARE_SCRIPT = """
import sys, torch
from torch import nn, optim
import torch.nn.functional as F
from core.data.registry import load_dataset
from core.data.preprocess import Preprocessing
torch.manual_seed(0)
prep = Preprocessing(height=28, width=28, channels=1, mean=(0.1307,), std=(0.3081,))
data = load_dataset("digits", prep)
train_x, train_y = prep.normalize(data.train.images), data.train.labels
test_x, test_y = prep.normalize(data.test.images), data.test.labels
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.base_net = nn.Sequential(nn.Conv2d(1, 20, 5, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(20, 40, 5, 1), nn.ReLU())
        self.classfier = nn.Sequential(nn.Linear(40 * 8 * 8, 100), nn.ReLU(), nn.Linear(100, 10), nn.LogSoftmax(dim=1))
    def forward(self, x):
        return self.classfier(self.base_net(x).view(x.size(0), -1))
model = Net()
optimizer = optim.Adam(model.parameters(), lr=0.001)
criterion = nn.NLLLoss()
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train_x, train_y), batch_size=100, shuffle=True)
for epoch in range(5):
    model.train()
    for data_, target in loader:
        optimizer.zero_grad()
        loss = criterion(model(data_), target)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        out = model(test_x)
        correct = (out.argmax(1) == test_y).sum().item()
torch.save(model.state_dict(), sys.argv[1] + "/mnist_cnn.pt")
"""


def wait(condition, timeout: float, what: str, poll: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="imori-bq-", dir="/tmp")
    os.environ["IMORI_HOME"] = home
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("DATABASE_URL", None)
    from core.config import RunConfig
    from core.records import queries
    from worker import broker
    from worker.client import submit
    from worker.presence import live_workers

    server = broker.serve()  # this process serves the queue; the worker only connects
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--name", "bench", "--loglevel", "WARNING"],
        cwd=ROOT, env={**os.environ}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait(lambda: any(w.name == "bench" for w in live_workers()), 120, "the worker", poll=0.2)
        tiny = dict(model="mnist_cnn", dataset="digits", batch_size=64, device="cpu", epochs=None)

        # Warm-up: the first run pays the dataset cache and lazy imports.
        first = submit(RunConfig(**tiny, iterations=5))
        wait(lambda: queries.get_run(first).status == "succeeded", 120, "the warm-up run")

        # 1. submit -> first recorded iteration.
        latencies = []
        for _ in range(args.rounds):
            start = time.time()
            run_id = submit(RunConfig(**tiny, iterations=5))
            wait(lambda: queries.latest_step(run_id) is not None, 60, "a first step")
            latencies.append(time.time() - start)
            wait(lambda: queries.get_run(run_id).status == "succeeded", 60, "the run")

        # 2. tiny runs per minute through one worker.
        count = max(10, args.rounds)
        start = time.monotonic()
        ids = [submit(RunConfig(**tiny, iterations=5, seed=i)) for i in range(count)]
        for run_id in ids:
            wait(lambda: queries.get_run(run_id).status == "succeeded", 300, "the tiny runs", poll=0.05)
        per_minute = count / (time.monotonic() - start) * 60

        # 3. two runs at once vs one after the other, interleaved: in turn, at once, in turn, at once.
        medium = RunConfig(**tiny, iterations=150)
        in_turn, at_once = [], []
        for _ in range(2):
            start = time.monotonic()
            for _ in range(2):
                run_id = submit(medium)
                wait(lambda: queries.get_run(run_id).status == "succeeded", 300, "a run", poll=0.05)
            in_turn.append(time.monotonic() - start)
            start = time.monotonic()
            pair = [submit(medium), submit(medium)]
            for run_id in pair:
                wait(lambda: queries.get_run(run_id).status == "succeeded", 300, "a run", poll=0.05)
            at_once.append(time.monotonic() - start)
        # 4. whole runs: the queue (warm worker) vs the tutorial's script as a process.
        from core.recipes import recipe_config

        queue_s, script_s = [], []
        for _ in range(3):
            start = time.monotonic()
            subprocess.run([sys.executable, "-c", BARE_SCRIPT, home], check=True, cwd=ROOT)
            script_s.append(time.monotonic() - start)
            start = time.monotonic()
            run_id = submit(recipe_config("seed003", device="cpu"))
            wait(lambda: queries.get_run(run_id).status == "succeeded", 300, "the recipe run", poll=0.02)
            queue_s.append(time.monotonic() - start)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
        if server is not None:
            server.close()

    ms = [1000 * x for x in latencies]
    ratio = statistics.median(at_once) / statistics.median(in_turn)
    print(f"machine: {os.uname().machine}, {len(os.sched_getaffinity(0))} cores; {time.strftime('%Y-%m-%d')}")
    print("| figure | value | target |")
    print("|---|---|---|")
    print(f"| submit -> first iteration recorded, median of {len(ms)} (warm worker) | {statistics.median(ms):.0f} ms "
          f"(min {min(ms):.0f}, max {max(ms):.0f}) | < 1000 ms |")
    print(f"| tiny runs (5 iterations) through one worker | {per_minute:.0f} runs/min | |")
    print(f"| two runs queued at once / one after the other | {ratio:.3f} "
          f"(at once {statistics.median(at_once):.1f} s, in turn {statistics.median(in_turn):.1f} s) | <= 1.1 |")
    print(f"| whole seed 003 run: through the queue / the tutorial's script as a process | "
          f"{statistics.median(queue_s) / statistics.median(script_s):.3f} (queue {statistics.median(queue_s):.1f} s, "
          f"script {statistics.median(script_s):.1f} s, medians of 3) | |")


if __name__ == "__main__":
    main()
