"""One run on several processes: DistributedDataParallel under ``torchrun``, started and relayed.

What the loop itself calls on several processes is ``core.ranks`` (``Ranks``,
``ProcessRanks``); this module starts the processes and carries their events. Two
halves, both here so that the protocol between them lives in one file:

- **The launching side** (``fit_in_processes``): what ``core.run.execute_run`` calls instead
  of ``core.train.fit`` when a run asks for ``nproc_per_node`` > 1 or ``nnodes`` > 1. It
  starts ``python -m torch.distributed.run`` (torchrun) as a child that dies with this
  process (``core.processes.die_with_parent``: its own session, ``PR_SET_PDEATHSIG``), and
  relays the events of rank 0 into this process's recorder over a Unix socket, so the
  run's recorder, heartbeat, cancel flag and stale-attempt checks are the very ones a run
  on one process has. ``torch.distributed`` never runs in the launching process (a
  Celery worker, ``imori train``).
- **The rank side** (``python -m core.distributed``, run by torchrun): each rank builds the
  same ``Trainer`` with a ``ProcessRanks``: its model in ``DistributedDataParallel`` (gloo
  on the CPU, NCCL with one GPU per rank on CUDA), a slice of each global batch (the same
  global order as one process, ``core.train.epoch_order``), the step's loss and accuracy
  all-reduced into the global figures, the cancel answer broadcast from rank 0 at every
  step, evaluations split across the ranks and summed. Rank 0 alone records (through the
  relay) and writes checkpoints; the other ranks never write. Collectives time out after
  ``COLLECTIVE_TIMEOUT_S``.

Exactness: with no class weights, each rank's loss is the mean over its slice scaled by
its share of the global batch (its images / the batch's, or its class weight / the
batch's), times the world size (DDP averages gradients), so the gradient is the global
batch's gradient and the first losses equal one process's to float rounding (tested:
within 1e-4). BatchNorm statistics are per rank (DDP broadcasts rank 0's buffers), so a
model with BatchNorm trains close to, not equal to, one process.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from core import devices
from core.config import RunConfig
from core.errors import ImoriError
from core.ranks import ProcessRanks
from core.recorder import CheckpointInfo, EvalMetrics, Forwarder, Recorder, RunEnd, RunStart, StageProgress, StepMetrics
from core.status import FAILED
from core.processes import die_with_parent
from core.train import FitResult, fit
from core.text import plural

COLLECTIVE_TIMEOUT_S = 60.0  # a rank that stops answering ends the run within this
CONNECT_TIMEOUT_S = 600.0  # rank 0 reaches the relay (imports, the rendezvous of every machine)
RELAY_ENV, TOKEN_ENV = "IMORI_RELAY", "IMORI_RELAY_TOKEN"


# -- what a machine can run ----------------------------------------------------------------------


def launches_processes(config: RunConfig) -> bool:
    """Whether ``config`` trains on several processes (torchrun) rather than in this one."""
    return config.nproc_per_node > 1 or config.nnodes > 1


def visible_gpus() -> int:
    """The GPUs a DDP run may use here: those of ``IMORI_GPUS`` (a worker started with
    ``--gpus`` trains a run of several processes across all of them), else every visible one."""
    listed = os.environ.get("IMORI_GPUS")
    if listed:
        return len([g for g in listed.split(",") if g.strip()])
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def shortfall(config: RunConfig) -> str | None:
    """Why this machine cannot run ``config``'s processes (None: it can): more processes
    than its CPU cores, or than its GPUs on CUDA (one GPU per process)."""
    if not launches_processes(config):
        return None

    n = config.nproc_per_node
    try:
        device = devices.resolve_device(config.device)
    except ImoriError as err:
        return str(err)
    if device.type == "cuda":
        gpus = visible_gpus()
        if n > gpus:
            return f"the run asks for {n} processes, one GPU each, and this machine has {plural(gpus, 'GPU')}"
        return None
    cores = devices.usable_cores()
    if n > cores:
        return f"the run asks for {n} processes and this machine has {plural(cores, 'CPU core')} (one at least for each)"
    return None


# -- the launching side --------------------------------------------------------------------------


class RankFailed(RuntimeError):
    """The training processes ended without a result (a crash, a signal)."""


def torchrun_command(config: RunConfig, *, node_rank: int = 0, backend: str = "gloo") -> list[str]:
    """The torchrun command line for ``config`` on the machine of ``node_rank``: standalone
    on loopback for one machine, the static rendezvous at ``rdzv_endpoint`` for several."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={config.nproc_per_node}",
           "--max-restarts=0"]
    if config.nnodes > 1:
        cmd += [f"--nnodes={config.nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=static",
                f"--rdzv-endpoint={config.rdzv_endpoint}"]
    else:
        cmd += ["--standalone"]
    return cmd + ["-m", "core.distributed", f"--backend={backend}"]


def rank_environment(config: RunConfig, relay: str | None = None, token: str | None = None,
                     gpus: str | None = None) -> dict[str, str]:
    """The environment of torchrun and its ranks: each rank's share of the cores as OpenMP's
    threads (torch's are set by the Trainer from the same share), the relay's address and
    token for rank 0, the GPUs when a worker was given ``--gpus``."""
    env = dict(os.environ)
    total = config.threads or devices.default_threads()
    env["OMP_NUM_THREADS"] = str(max(1, total // config.nproc_per_node))
    env["IMORI_TORCH_THREADS"] = str(total)
    if relay:
        env[RELAY_ENV], env[TOKEN_ENV] = relay, token or ""
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    # The ranks import imori from where this process does (a checkout, a test's PYTHONPATH).
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


def _backend(config: RunConfig) -> str:
    return "nccl" if devices.resolve_device(config.device).type == "cuda" else "gloo"


def _encode(event: str, value: Any) -> bytes:
    data = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return (json.dumps({"event": event, "data": data}, default=str) + "\n").encode()


EVENTS = {"on_start": RunStart, "on_step": StepMetrics, "on_eval": EvalMetrics, "on_checkpoint": CheckpointInfo,
          "on_stage": StageProgress, "on_end": RunEnd}


def fit_in_processes(config: RunConfig, run_dir: str | Path, recorder: Recorder | None = None, *,
                     resume_from: str | Path | None = None):
    """``core.train.fit`` on ``config.nproc_per_node`` processes (x ``nnodes`` machines):
    torchrun as a child of this process, rank 0's events replayed into ``recorder``.

    Returns rank 0's ``FitResult``. Raises what ``fit`` raises: an ``ImoriError`` for a
    user's error, the recorder's own error (a ``StaleAttemptError`` when this attempt lost
    the run), ``RankFailed`` when the processes died without a result (its reason is
    recorded as the run's error first). The processes end with this one: a SIGKILLed worker
    takes its ranks down with it.
    """
    recorder = recorder or Recorder()
    why = shortfall(config)
    if why:
        raise ImoriError(why)
    folder = tempfile.mkdtemp(prefix="imori-ddp-")
    address, token = os.path.join(folder, "relay.sock"), secrets.token_hex(16)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    server.listen(1)
    job = {"config": config.to_dict(), "run_dir": str(run_dir), "resume_from": str(resume_from) if resume_from else None}

    backend = _backend(config)
    proc = subprocess.Popen(torchrun_command(config, backend=backend),
                            env=rank_environment(config, address, token, os.environ.get("IMORI_GPUS")),
                            preexec_fn=die_with_parent)
    machines = f" on each of {config.nnodes} machines" if config.nnodes > 1 else ""
    recorder.on_log(f"training on {config.nproc_per_node} processes{machines} (torchrun, {backend}); "
                    f"the batch of {config.batch_size} split across them")
    relay = _Relay(proc, recorder, job, token)

    def forget_the_socket() -> None:  # once rank 0 is connected (or never will be): nothing left behind
        server.close()
        shutil.rmtree(folder, ignore_errors=True)

    try:
        try:
            conn = _accept(server, proc)
        finally:
            forget_the_socket()
        if conn is not None:
            relay.serve(conn)
        proc.wait()
    except BaseException:
        stop_processes(proc)
        raise
    return relay.outcome()


def _accept(server: socket.socket, proc: subprocess.Popen) -> socket.socket | None:
    """Rank 0's connection; None when torchrun ended first."""
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    server.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            conn, _ = server.accept()
            conn.settimeout(None)
            return conn
        except socket.timeout:
            if proc.poll() is not None:
                return None
    raise RankFailed(f"rank 0 did not reach its launcher within {CONNECT_TIMEOUT_S:.0f} s")


def stop_processes(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """End torchrun and its ranks (its session): SIGTERM, then SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class _Relay:
    """The launching side of the socket: rank 0's events into the recorder, its questions
    (should I stop? may I write a checkpoint?) answered by it."""

    def __init__(self, proc: subprocess.Popen, recorder: Recorder, job: dict, token: str) -> None:
        self.proc, self.recorder, self.job, self.token = proc, recorder, job, token
        self.result: dict | None = None
        self.error: dict | None = None
        self.failure: BaseException | None = None  # raised by this side's recorder: re-raised at the end
        self.ended = False
        self.last = (0, 0)  # (step, epoch) last seen

    def serve(self, conn: socket.socket) -> None:
        reader, writer = conn.makefile("rb"), conn.makefile("wb")
        hello = reader.readline()
        if json.loads(hello or b"{}").get("token") != self.token:
            raise RankFailed("a process that is not this run's rank 0 reached its relay")
        for line in reader:
            message = json.loads(line)
            reply = self.handle(message["event"], message.get("data"))
            if reply is not None:
                writer.write((json.dumps(reply) + "\n").encode())
                writer.flush()
        conn.close()

    def handle(self, event: str, data: Any) -> dict | None:
        if event == "job":
            return self.job
        if event == "result":
            self.result = data
            return None
        if event == "error":
            self.error = data
            return None
        try:
            if event == "should_stop":
                stop = self.failure is not None or bool(self.recorder.should_stop())
                return {"stop": stop, "raise": self._raise_text()}
            if event == "before_checkpoint":
                if self.failure is None:
                    self.recorder.before_checkpoint()
                return {"raise": self._raise_text()}
            if event in ("on_log", "on_checkpoint_removed", "on_search"):
                getattr(self.recorder, event)(data)
                return None
            value = EVENTS[event](**data)
            if event == "on_step":
                self.last = (value.step, value.epoch)
            if event == "on_end":
                self.ended = True
            getattr(self.recorder, event)(value)
        except Exception as err:  # noqa: BLE001 - the rank hears of it at its next question
            if self.failure is None:
                self.failure = err
            if event in ("should_stop", "before_checkpoint"):
                return {"stop": True, "raise": self._raise_text()}
        return None

    def _raise_text(self) -> str | None:
        if self.failure is None:
            return None
        return str(self.failure) or type(self.failure).__name__

    def outcome(self):
        if self.failure is not None:
            raise self.failure
        if self.result is not None:
            return FitResult(**self.result)
        if self.error is not None:
            text = self.error.get("text", "")
            if self.error.get("user"):
                raise ImoriError(text)
            raise RankFailed(text)
        text = f"the training processes ended without a result (torchrun exit status {self.proc.returncode})"
        if not self.ended:
            step, epoch = self.last
            try:
                self.recorder.on_end(RunEnd(status=FAILED, step=step, epoch=epoch, error=text))
            except Exception:  # noqa: BLE001 - the error below is the one to report
                pass
        raise RankFailed(text)


# -- the rank side -------------------------------------------------------------------------------


class RelayRecorder(Forwarder):
    """Rank 0's recorder: every event to the launching process, whose recorder answers
    ``should_stop`` and ``before_checkpoint``."""

    def __init__(self, address: str, token: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(address)
        self.reader, self.writer = self.sock.makefile("rb"), self.sock.makefile("wb")
        self._send_raw({"token": token})

    def _send_raw(self, message: dict) -> None:
        self.writer.write((json.dumps(message, default=str) + "\n").encode())
        self.writer.flush()

    def send(self, event: str, value: Any = None) -> None:
        self.writer.write(_encode(event, value))
        self.writer.flush()

    def ask(self, event: str) -> dict:
        self.send(event)
        line = self.reader.readline()
        if not line:
            raise RankFailed("the launching process is gone")
        reply = json.loads(line)
        if reply.get("raise"):
            raise RankFailed(f"the run's recorder refused: {reply['raise']}")
        return reply

    def forward(self, event: str, value: Any) -> None:
        self.send(event, value)

    def before_checkpoint(self) -> None:
        self.ask("before_checkpoint")

    def should_stop(self) -> bool:
        return bool(self.ask("should_stop").get("stop"))


def _die_with_torchrun() -> None:
    """A rank ends when its torchrun agent ends, however it ends."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the agent died before the line above
            os._exit(1)


def _share_job(job: dict | None, device: torch.device) -> dict:
    """Rank 0's job (config, run folder, checkpoint to resume from), on every rank."""
    import torch.distributed as dist

    box = [job]
    dist.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
    return box[0]


def rank_main(argv: list[str] | None = None) -> int:
    """One rank, as torchrun starts it (``python -m core.distributed --backend gloo``)."""
    import argparse

    import torch.distributed as dist

    parser = argparse.ArgumentParser(prog="python -m core.distributed")
    parser.add_argument("--backend", choices=("gloo", "nccl"), default="gloo")
    args = parser.parse_args(argv)
    _die_with_torchrun()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    relay = None
    job = None
    if rank == 0:
        address = os.environ.get(RELAY_ENV)
        if not address:
            print("imori: rank 0 must run on the machine that records the run (imori train); "
                  "start the other machines with `imori join`", file=sys.stderr)
            return 2
        relay = RelayRecorder(address, os.environ.get(TOKEN_ENV, ""))
        job = relay.ask("job")
    if args.backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(args.backend, timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S),
                            device_id=device if device.type == "cuda" else None)
    try:
        job = _share_job(job, device)
        config = RunConfig.from_dict(job["config"])
        if devices.resolve_device(config.device).type != device.type:
            raise ImoriError(f"this machine's ranks use {device.type} and the run asks for {config.device}")
        ranks = ProcessRanks(device)
        try:
            result = fit(config, job["run_dir"], relay if relay is not None else Recorder(),
                         resume_from=job["resume_from"], ranks=ranks)
        except BaseException as err:
            if relay is not None:
                user = isinstance(err, ImoriError)
                text = str(err) if user else f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
                relay.send("error", {"user": user, "text": text})
            raise
        if relay is not None:
            relay.send("result", result.to_dict())
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(rank_main())
