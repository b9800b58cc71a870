"""``imori up``, ``worker``, ``dashboard``: the long-running processes."""

from __future__ import annotations

import argparse
import os
import sys

# The dashboard's address: flags, else IMORI_HOST / IMORI_PORT, else localhost:8501.
DEFAULT_HOST = os.environ.get("IMORI_HOST") or "127.0.0.1"
DEFAULT_PORT = int(os.environ.get("IMORI_PORT") or 8501)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run a worker in the foreground")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: a GPU worker where CUDA is present, else a CPU worker")
    p.add_argument("--name", help="worker name (default: device-host-pid)")
    p.add_argument("--threads", type=int, help="torch threads (default: the usable cores; a quarter of them with --jobs)")
    p.add_argument("--gpus", metavar="LIST",
                   help="a machine with several GPUs: one worker process per device, each seeing only its own "
                        "(e.g. --gpus 0,1); a run with --nproc-per-node N trains across N of them")
    lane = p.add_mutually_exclusive_group()
    lane.add_argument("--jobs", dest="serves", action="store_const", const="jobs",
                      help="serve the short jobs only (evaluate, health, calibrate, lr_find, export, import), with "
                           "a quarter of the cores as torch threads: beside a training worker, a job never waits "
                           "for a run to end (imori up starts one)")
    lane.add_argument("--runs", dest="serves", action="store_const", const="runs",
                      help="serve trainings only (default: trainings and jobs, a job waiting while a run trains)")
    p.set_defaults(serves="all")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("up", help="start everything: Redis (embedded unless REDIS_URL), a training worker, a jobs "
                                  "worker, the dashboard")
    p.add_argument("--host", default=DEFAULT_HOST, help="dashboard address (default: IMORI_HOST, else localhost only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="dashboard port (default: IMORI_PORT, else 8501)")
    p.add_argument("--workers", type=int, default=1, help="training worker processes (one per machine trains fastest); one jobs worker "
                                                             "comes beside them")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--serve", type=int, metavar="RUN",
                   help="also serve RUN's default checkpoint over HTTP (imori serve --run RUN), ending with imori up")
    p.add_argument("--serve-port", dest="serve_port", type=int, default=8700,
                   help="the endpoint's port with --serve (default 8700; on --host)")
    p.add_argument("--open-for", dest="open_for", type=float, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("dashboard", help="run the dashboard alone")
    p.add_argument("--host", default=DEFAULT_HOST, help="default: IMORI_HOST, else localhost only")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: IMORI_PORT, else 8501")
    p.set_defaults(func=cmd_dashboard)


def cmd_worker(args: argparse.Namespace) -> int:
    if args.gpus is not None:
        from worker.runner import run_gpu_workers

        return run_gpu_workers(args.gpus, name=args.name, loglevel=args.loglevel, threads=args.threads)
    from worker.runner import run_worker

    return run_worker(device=args.device, name=args.name, loglevel=args.loglevel, threads=args.threads,
                      serves=args.serves)


def cmd_up(args: argparse.Namespace) -> int:
    from worker.runner import run_up

    beside = []
    if args.serve is not None:
        from cli.train import run_checkpoint

        run_checkpoint(args.serve)  # a run without a checkpoint is refused before anything starts
        # A child like the workers: it dies with imori up (IMORI_SERVE_TOKEN inherited).
        beside.append(("endpoint", [sys.executable, "-m", "cli", "serve", "--run", str(args.serve), "--host", args.host,
                                    "--port", str(args.serve_port)]))
    return run_up(host=args.host, port=args.port, workers=args.workers, device=args.device, open_for=args.open_for,
                  beside=beside)


def cmd_dashboard(args: argparse.Namespace) -> int:
    import subprocess

    from worker.runner import dashboard_command

    return subprocess.call(dashboard_command(args.host, args.port))
