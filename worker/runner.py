"""Starting the stack's processes: one worker (``imori worker``) or everything (``imori up``).

Two lanes: trainings (the ``cpu`` / ``gpu`` queues) and short jobs (the ``jobs`` /
``gpu-jobs`` queues). A worker serves both by default (``imori worker`` alone does
everything, a job waiting while it trains), runs only (``--runs``) or jobs only
(``--jobs``: a few torch threads, never the CPU training slot). ``imori up`` starts a
runs worker and a jobs worker, so a job starts within seconds while a run trains.

A worker is a Celery worker with the solo pool: the training runs in the worker's own
process, so torch is imported once (warm: a submitted run starts within a second), a
SIGKILL takes the training down with it (nothing orphaned keeps writing), and one
training at a time per worker is the default. Beside Celery's loop, two threads: the
presence beat (worker.presence) and the watchdog (worker.watchdog).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import core.devices
from core.errors import ImoriError
from worker.lifetime import die_with_parent
from core.paths import imori_home
from core.records import database_url, get_engine, is_sqlite
from worker import broker, tasks
from worker.app import cpu_queue, get_app, gpu_jobs_queue, gpu_queue, jobs_queue
from worker.presence import Presence, WorkerInfo, default_name
from worker.watchdog import Watchdog

log = logging.getLogger("imori.worker")

DASHBOARD_APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


def remote_redis_with_sqlite() -> str | None:
    """The warning a worker prints when its records cannot be shared: a SQLite file (one
    machine) together with a Redis on another host (several machines)."""
    redis = os.environ.get("REDIS_URL")
    if not redis or not is_sqlite(database_url()):
        return None
    host = urlsplit(redis).hostname
    if host in (None, "", "localhost", "127.0.0.1", "::1"):
        return None
    return (
        f"this worker records into a SQLite file ({database_url()}) but takes jobs from a Redis "
        f"on {host}: workers on other machines cannot see these records. Point DATABASE_URL at a "
        "server database (PostgreSQL) shared by every machine, and share IMORI_HOME too."
    )


SERVES = ("all", "runs", "jobs")


def worker_queues(kind: str, serves: str = "all") -> list[str]:
    """The queues a worker on ``kind`` (``cuda`` | ``cpu``) consumes, first served first:
    ``runs`` the trainings', ``jobs`` the short jobs', ``all`` both (runs first)."""
    if serves not in SERVES:
        raise ImoriError(f"a worker serves one of {', '.join(SERVES)}, not {serves!r}")
    runs = [gpu_queue(), cpu_queue()] if kind == "cuda" else [cpu_queue()]
    short = [gpu_jobs_queue(), jobs_queue()] if kind == "cuda" else [jobs_queue()]
    return {"runs": runs, "jobs": short, "all": runs + short}[serves]


def jobs_threads() -> int:
    """Torch threads of a worker that serves jobs only: a quarter of the cores (at least
    one), so that a job beside a training slows it little."""
    return max(1, core.devices.usable_cores() // 4)


def run_worker(device: str = "auto", name: str | None = None, loglevel: str = "INFO", threads: int | None = None,
               serves: str = "all") -> int:
    """Run a worker in this process until it is stopped (Ctrl-C / SIGTERM). ``serves``:
    ``all`` (trainings and jobs), ``runs`` or ``jobs`` (``worker_queues``)."""
    get_app()  # a nonsense queue setting is an error now, not after torch has loaded
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ImoriError("a GPU worker needs CUDA, and this machine has no usable CUDA GPU: start a CPU worker")
    kind = "cuda" if (device in ("auto", "cuda") and has_cuda) else "cpu"
    queues = worker_queues(kind, serves)
    threads = threads or (jobs_threads() if serves == "jobs" else core.devices.default_threads())
    os.environ["IMORI_TORCH_THREADS"] = str(threads)  # what fit() uses for runs that do not say
    torch.set_num_threads(threads)
    warning = remote_redis_with_sqlite()
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    # The queue: this worker serves the embedded Redis when nothing else does (`imori up`
    # does, for its workers); the server is this process's child and ends with it.
    server = broker.serve()
    watchdog = None
    try:
        get_engine()  # creates or upgrades the schema before the first run arrives
        app = get_app()
        info = WorkerInfo(
            name=name or default_name(f"{kind}-jobs" if serves == "jobs" else kind),
            host=socket.gethostname(),
            pid=os.getpid(),
            device=kind,
            device_name=torch.cuda.get_device_name(0) if kind == "cuda" else (os.uname().machine + " CPU"),
            queues=queues,
            threads=threads,
        )
        tasks.presence = Presence(info).start()
        watchdog = Watchdog().start()
        lane = {"all": "trainings and jobs", "runs": "trainings", "jobs": "jobs"}[serves]
        print(f"imori worker {info.name}: {kind}, {lane} (queues {','.join(queues)}), {threads} torch threads",
              flush=True)
        app.worker_main(
            [
                "worker",
                "--pool=solo",
                "--concurrency=1",
                f"--queues={','.join(queues)}",
                f"--hostname={info.name}@{info.host}",
                f"--loglevel={loglevel}",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        if watchdog is not None:
            watchdog.stop()
        if tasks.presence is not None:
            tasks.presence.stop()
        if server is not None:
            server.close()
    return 0


def gpu_worker_plan(gpus: str, name: str | None = None, threads: int | None = None) -> list[tuple[list[str], dict[str, str]]]:
    """``imori worker --gpus 0,1``: one worker process per device, each seeing only its own
    (``CUDA_VISIBLE_DEVICES``), as (command, extra environment) pairs. A run on one GPU
    trains in whichever worker takes it; a run with ``nproc_per_node`` > 1 trains across
    all of them (``IMORI_GPUS``, which ``core.distributed`` gives its torchrun). Each gets
    its share of the cores as torch threads. Devices are CUDA's indices or GPU UUIDs."""

    devices = [d.strip() for d in str(gpus).split(",") if d.strip()]
    if not devices:
        raise ImoriError(f"--gpus needs device numbers, e.g. --gpus 0,1 (not {gpus!r})")
    if len(set(devices)) != len(devices):
        raise ImoriError(f"--gpus names a device twice: {gpus}")
    base = name or f"cuda-{socket.gethostname()}"
    share = threads or max(1, core.devices.usable_cores() // len(devices))
    plan = []
    for device in devices:
        command = [sys.executable, "-m", "cli", "worker", "--device", "cuda", "--name", f"{base}-gpu{device}",
                   "--threads", str(share)]
        plan.append((command, {"CUDA_VISIBLE_DEVICES": device, "IMORI_GPUS": ",".join(devices)}))
    return plan


def stop_children(children: list[tuple[str, subprocess.Popen]], timeout: float = 60.0) -> None:
    """SIGTERM every child still running (a worker gives its run back within an iteration),
    then wait for each, killing one that has not stopped in ``timeout`` seconds."""
    for _, proc in children:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for label, proc in children:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"{label} did not stop in time; killing it", file=sys.stderr, flush=True)
            proc.kill()
            proc.wait()


def run_gpu_workers(gpus: str, name: str | None = None, loglevel: str = "INFO", threads: int | None = None) -> int:
    """Run ``gpu_worker_plan(gpus)``'s workers as children that end with this process (it
    serves the embedded Redis for them, unless ``REDIS_URL``); Ctrl-C or SIGTERM stops them
    in order (each gives its run back to the queue). Returns 1 when one of them failed."""
    plan = gpu_worker_plan(gpus, name, threads)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = broker.serve()
    children: list[subprocess.Popen] = []
    failed = None
    try:
        for command, env in plan:
            command = command + ["--loglevel", loglevel]
            children.append(subprocess.Popen(command, env={**os.environ, **env}, preexec_fn=die_with_parent))
        while not stop.is_set() and failed is None:
            for (command, env), proc in zip(plan, children):
                if proc.poll() is not None:
                    failed = f"the worker of GPU {env['CUDA_VISIBLE_DEVICES']} exited with status {proc.returncode}"
            stop.wait(0.5)
    finally:
        stop_children([(f"the worker of GPU {env['CUDA_VISIBLE_DEVICES']}", proc) for (_, env), proc in zip(plan, children)])
        if server is not None:
            server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed:
        print(f"error: {failed}; stopped the other workers", file=sys.stderr, flush=True)
        return 1
    return 0


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def dashboard_command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(DASHBOARD_APP),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        # Also in .streamlit/config.toml, but that is read only from the working folder:
        # say the security settings here too, wherever imori is started from.
        "--server.enableXsrfProtection", "true",
        "--server.maxUploadSize", "1024",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",  # no "Deploy" button: this dashboard is the user's own
    ]


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (as the dashboard's does, with
    SO_REUSEADDR: a port a stopped server left in TIME_WAIT counts as free)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class AlreadyUp(ImoriError):
    """Another `imori up` serves this IMORI_HOME."""


def up_lock():
    """This IMORI_HOME's `imori up` lock (an flock, freed by the OS however its holder
    ends) and the file naming the holder; AlreadyUp, with its URL and pid, when held."""
    import json

    from filelock import FileLock, Timeout

    folder = imori_home()
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / "up.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            holder = json.loads((folder / "up.json").read_text())
        except (OSError, ValueError):
            holder = {}
        raise AlreadyUp(
            f"imori is already up for {folder}: {holder.get('url', '?')} (pid {holder.get('pid', '?')}); "
            "open that, or stop it first (Ctrl-C in its terminal)"
        ) from None
    return lock, folder / "up.json"


def up_worker_commands(workers: int = 1, device: str = "auto") -> list[tuple[str, list[str]]]:
    """``imori up``'s workers as (label, command): ``workers`` training workers (``--runs``)
    and one jobs worker (``--jobs``), so that a short job never waits behind a training."""
    host = socket.gethostname()
    commands = []
    for i in range(workers):
        cmd = [sys.executable, "-m", "cli", "worker", "--device", device, "--runs"]
        if workers > 1:
            cmd += ["--name", f"{device}-{host}-{i + 1}"]
        commands.append((f"worker {i + 1}", cmd))
    commands.append(("jobs worker", [sys.executable, "-m", "cli", "worker", "--device", device, "--jobs"]))
    return commands


def run_up(host: str = "127.0.0.1", port: int = 8501, workers: int = 1, device: str = "auto", open_for: float | None = None,
           beside: list[tuple[str, list[str]]] = ()) -> int:
    """Start the embedded Redis (unless ``REDIS_URL``), ``workers`` training workers, one
    jobs worker and the dashboard; print the URL; stop everything on Ctrl-C or SIGTERM. Returns 0 after a
    requested stop, 1 when a component failed (its reason printed), or when another
    `imori up` serves this IMORI_HOME or the port is taken (nothing started).

    Every child ends when this process ends, however it ends (``die_with_parent``).
    ``open_for`` (seconds) stops by itself after that long (for tests and demos).
    ``beside``: more ``(label, command)`` children, started after the workers (``imori up --serve``).
    """
    import json

    try:
        lock, holder_file = up_lock()
    except AlreadyUp as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    url = f"http://{host}:{port}"
    if not port_free(host, port):
        lock.release()
        print(f"error: port {port} on {host} is in use by another program: choose another with --port "
              "(or IMORI_PORT)", file=sys.stderr, flush=True)
        return 1
    holder_file.write_text(json.dumps({"pid": os.getpid(), "url": url, "host": socket.gethostname()}))
    server = None
    failed: str | None = None
    children: list[tuple[str, subprocess.Popen]] = []
    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server = broker.serve()  # unless REDIS_URL: a child of this process, ending with it
        except OSError as err:
            raise ImoriError(f"the embedded Redis cannot start: {err}") from None
        get_engine()  # migrate once here, not raced by the children
        for label, cmd in [*up_worker_commands(workers, device), *beside]:
            children.append((label, subprocess.Popen(cmd, preexec_fn=die_with_parent)))
        dashboard = subprocess.Popen(dashboard_command(host, port), preexec_fn=die_with_parent)
        children.append(("dashboard", dashboard))
        if wait_http(f"{url}/_stcore/health", proc=dashboard):
            print(f"\nimori is up: open {url}   (Ctrl-C stops everything)\n", flush=True)
        else:
            failed = "the dashboard did not start; see its output above"
            stop.set()
        deadline = time.monotonic() + open_for if open_for else None
        while not stop.is_set():
            if deadline and time.monotonic() > deadline:
                break
            for label, proc in children:
                if proc.poll() is not None:
                    failed = f"{label} exited with status {proc.returncode}"
                    stop.set()
            stop.wait(0.5)
    except (ImoriError, OSError) as err:  # a component that cannot start: say why, exit 1
        failed = str(err)
    finally:
        if failed:
            print(f"error: {failed}; stopping imori", file=sys.stderr, flush=True)
        print("stopping imori...", file=sys.stderr, flush=True)
        stop_children(children)
        if server is not None:
            server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        holder_file.unlink(missing_ok=True)
        lock.release()
    return 1 if failed else 0
