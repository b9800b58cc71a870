"""What watching a run costs: the dashboard's CPU (Streamlit's process and Chromium's) with
the run page open while a run trains.

    PYTHONPATH=. .venv/bin/python bench/dashboard_cpu.py [--seconds 60] [--scenario fast,slow] [--checkout DIR]

A fresh IMORI_HOME under /tmp; a run recorded as a worker records it (``DbRecorder``, in a
thread of this process: no training, so the figures are the page's alone), with 600
iterations and 6 epochs' evaluations already recorded; Streamlit on a free port from 8600
(``worker.runner.dashboard_command``, as ``imori up`` starts it); headless Chromium
(``/usr/bin/chromium``, through Playwright) on the run page. Once the page shows its
charts, the CPU time of the Streamlit process and of every Chromium process is read from
/proc (psutil) at the start and the end of the window: % of one core = CPU seconds / wall
seconds. Scenarios: ``fast`` (5 iterations a second, an evaluation every 100), ``slow``
(one iteration every 15 s: ELPV's fine-tune on a 2-core CPU), ``finished`` (the same page once
the run ended: the floor, nothing ticks). Prints one line a scenario,
and ``--json`` a list of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCENARIOS = {"fast": 0.2, "slow": 15.0, "finished": None}  # seconds between iterations (finished: none come)
HISTORY = 600  # iterations recorded before the window
STEPS_PER_EPOCH = 100


def free_port(start: int = 8600) -> int:
    for port in range(start, start + 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise SystemExit("no free port from 8600")


class FakeRun(threading.Thread):
    """A run recorded as a worker records it, an iteration every ``every`` seconds."""

    def __init__(self, every: float) -> None:
        super().__init__(daemon=True)
        from core.records import DbRecorder, store

        self.every, self.halt = every, threading.Event()
        self.run_id = store.create_run({"model": "mnist_cnn", "dataset": "digits", "epochs": 1000, "batch_size": 64})
        self.recorder = DbRecorder(self.run_id, store.claim_run(self.run_id, "bench"))
        self.step = 0

    def start_run(self) -> None:
        from core.recorder import RunStart

        self.recorder.on_start(RunStart(total_steps=100_000, steps_per_epoch=STEPS_PER_EPOCH, epochs=1000, start_step=0,
                                        device="cpu", classes=[str(i) for i in range(10)], train_size=6400,
                                        val_size=640, test_size=640, model_summary={}, environment={}))
        t0 = time.time() - HISTORY * (self.every or 1.0)
        for _ in range(HISTORY):
            self.advance(t0 + self.step * (self.every or 1.0))
            if self.step % STEPS_PER_EPOCH == 0:
                self.recorder.flush()  # flushes apart in time, as a worker's: the run's speed is known
        if self.every is None:  # the floor: a page whose live parts stopped ticking
            from core.recorder import RunEnd

            self.recorder.on_end(RunEnd(status="succeeded", step=self.step, epoch=self.step // STEPS_PER_EPOCH))

    def advance(self, when: float) -> None:
        from core.recorder import EvalMetrics, StepMetrics

        self.step += 1
        epoch = 1 + (self.step - 1) // STEPS_PER_EPOCH
        loss = 2.3 / (1 + self.step / 50)
        self.recorder.on_step(StepMetrics(self.step, epoch, loss, 1 - loss / 2.4, 1e-3, when, 64))
        if self.step % STEPS_PER_EPOCH == 0:
            for split in ("val", "test"):
                self.recorder.on_eval(EvalMetrics(epoch, self.step, split, loss * 1.1, 1 - loss / 2.2, 640, when))

    def run(self) -> None:
        while self.every is not None and not self.halt.wait(self.every):
            self.advance(time.time())


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def chromium_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name().lower()]


def measure(scenario: str, seconds: float, port: int, page) -> dict:
    fake = FakeRun(SCENARIOS[scenario])
    fake.start_run()
    fake.start()
    try:
        page.goto(f"http://127.0.0.1:{port}/run_detail?run={fake.run_id}")
        page.get_by_text("Learning rate").first.wait_for(timeout=120_000)  # the charts are drawn
        time.sleep(5)  # settle: the first draws are not what a watcher pays
        server = STREAMLIT[0]
        browser = chromium_processes()
        wall0, s0, b0 = time.monotonic(), cpu_seconds([server]), cpu_seconds(browser)
        step0 = fake.step
        time.sleep(seconds)
        wall = time.monotonic() - wall0
        streamlit_pct = 100 * (cpu_seconds([server]) - s0) / wall
        chromium_pct = 100 * (cpu_seconds(chromium_processes()) - b0) / wall
        shown = page.get_by_text("Step").count() > 0
    finally:
        fake.halt.set()
        fake.join()
    return {"scenario": scenario, "seconds_per_iteration": SCENARIOS[scenario], "window_s": round(wall, 1),
            "iterations_in_window": fake.step - step0, "streamlit_pct_of_a_core": round(streamlit_pct, 1),
            "chromium_pct_of_a_core": round(chromium_pct, 1), "page_live": shown,
            "load_average_1min": round(os.getloadavg()[0], 2)}


STREAMLIT: list[psutil.Process] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="the measured window of each scenario")
    parser.add_argument("--scenario", default="fast,slow", help="fast, slow or both (comma-separated)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--checkout", type=Path, default=ROOT,
                        help="the imori checkout to serve and record with (another one for a before/after)")
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    home = tempfile.mkdtemp(prefix="imori-bench-cpu-", dir="/tmp")
    os.environ["IMORI_HOME"] = home
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    sys.path.insert(0, str(checkout))
    from playwright.sync_api import sync_playwright

    from worker.runner import dashboard_command

    port = free_port()
    log = open(Path(home) / "streamlit.log", "w")
    server = subprocess.Popen(dashboard_command("127.0.0.1", port), cwd=checkout, env=os.environ.copy(), stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    STREAMLIT.append(psutil.Process(server.pid))
    results = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the dashboard did not start: " + (Path(home) / "streamlit.log").read_text())
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                for scenario in args.scenario.split(","):
                    result = measure(scenario.strip(), args.seconds, port, page)
                    results.append(result)
                    if not args.json:
                        print(f"{scenario:>4}: an iteration every {result['seconds_per_iteration']} s, "
                              f"{result['iterations_in_window']} in {result['window_s']} s: Streamlit "
                              f"{result['streamlit_pct_of_a_core']} % of a core, Chromium "
                              f"{result['chromium_pct_of_a_core']} % (load average {result['load_average_1min']})",
                              flush=True)
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
