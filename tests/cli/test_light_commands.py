"""The commands that only read records or talk to the queue start at once: no torch.

Each command runs for real in a fresh interpreter (this process has imported torch long
ago), against the test's own IMORI_HOME; what is checked is what it imported by the time
it exited. A command that needs a queue fails with its one-line error, and that is fine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Runs `imori ARGV`, then says on its last stderr line whether torch was imported.
PROBE = """
import sys
from cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in ("torch", "torchvision") if m in sys.modules)
print("exit", code, "heavy", ",".join(heavy) or "none", file=sys.stderr)
"""

# `imori submit` as far as a queue would take it: the run recorded, the message not sent
# (Redis and Celery import no torch; what follows the send, the dataset's health warning,
# runs for real).
NO_QUEUE = """
import worker.client
worker.client.queue_ready = lambda: None
worker.client.send = lambda run_id, device, countdown=None: "imori-cpu"
"""


def imori(home: Path, *argv: str, preamble: str = "", importtime: bool = False) -> tuple[int, str, str]:
    """Run the command in a fresh interpreter; (exit status, stderr, heavy modules imported)."""
    env = {**os.environ, "IMORI_HOME": str(home), "PYTHONPATH": str(ROOT)}
    flags = ["-X", "importtime"] if importtime else []
    done = subprocess.run([sys.executable, *flags, "-c", preamble + PROBE, *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    match = re.fullmatch(r"exit (\S+) heavy (\S+)", last)
    assert match, done.stderr[-2000:]
    return int(match[1]), done.stderr, match[2]


@pytest.fixture
def finished_run(imori_home) -> int:
    from core.records import store
    from core.status import SUCCEEDED

    run_id = store.create_run({"model": "lenet5", "dataset": "digits", "epochs": 1}, name="light")
    store.claim_run(run_id, worker="test")
    store.set_status(run_id, SUCCEEDED)
    return run_id


@pytest.mark.parametrize("argv", [["--help"], ["runs"], ["runs", "--json"], ["show", "{run}"],
                                  ["show", "{run}", "--json"], ["wait", "{run}"], ["workers"]])
def test_reading_commands_import_no_torch(imori_home, finished_run, argv):
    argv = [a.format(run=finished_run) for a in argv]
    code, err, heavy = imori(imori_home, *argv)
    assert heavy == "none", f"imori {' '.join(argv)} imported {heavy}"
    if argv[0] == "workers":
        assert code == 2 and "no imori queue is running" in err  # its one-line error, no torch for it
    else:
        assert code == 0, err


@pytest.mark.parametrize("argv", [["jobs"], ["jobs", "--json"], ["jobs", "show", "{job}"], ["jobs", "cancel", "{job}"]])
def test_jobs_commands_import_no_torch(imori_home, argv):
    jobs = pytest.importorskip("core.records.jobs")
    job_id = jobs.create_job("health", "digits", {"features": False})
    argv = [a.format(job=job_id) for a in argv]
    code, err, heavy = imori(imori_home, *argv)
    assert heavy == "none", f"imori {' '.join(argv)} imported {heavy}"
    assert code == 0, err


@pytest.fixture
def imported_dataset(imori_home, tmp_path) -> str:
    """A small imported dataset (two classes of PNGs), so submit checks its manifest."""
    from PIL import Image

    from core.data.registry import import_dataset

    for label, shade in (("dark", 40), ("light", 210)):
        folder = tmp_path / "leaves" / label
        folder.mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), (shade + i, shade, shade)).save(folder / f"{i}.png")
    return import_dataset(tmp_path / "leaves", "leaves").name


@pytest.mark.parametrize("argv", [
    ["--model", "lenet5", "--dataset", "digits", "--epochs", "1"],
    ["--model", "efficientnet_lite0", "--pretrained", "--dataset", "{imported}", "--epochs", "1"],
])
def test_submit_imports_no_torch(imori_home, imported_dataset, argv):
    argv = [a.format(imported=imported_dataset) for a in argv]
    code, err, heavy = imori(imori_home, "submit", *argv, preamble=NO_QUEUE)
    assert code == 0, err
    assert heavy == "none", f"imori submit {' '.join(argv)} imported {heavy}"


def test_submit_without_a_queue_says_so(imori_home):
    code, err, _ = imori(imori_home, "submit", "--model", "lenet5", "--dataset", "digits")
    assert code == 2 and "no imori queue is running" in err and "Traceback" not in err


def import_seconds(stderr: str) -> float:
    """The time -X importtime counts for the top-level imports (each includes its own)."""
    top = re.findall(r"^import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", stderr, re.MULTILINE)
    return sum(int(us) for us, _ in top) / 1e6


def test_help_imports_little(imori_home):
    """`imori --help`: about 0.1 s of imports on an idle machine (0.15 s measured on a busy
    one); the bound is loose so that a loaded test machine does not fail it, and still far
    below torch's (1.5 s or more) or SQLAlchemy's and Celery's together (0.4 s or more)."""
    code, err, heavy = imori(imori_home, "--help", importtime=True)
    assert code == 0 and heavy == "none"
    assert not re.search(r"\| +(sqlalchemy|celery|numpy|PIL)$", err, re.MULTILINE), "imori --help imports the records or the queue"
    assert import_seconds(err) < 2.0
