"""``imori submit``, ``cancel``, ``clone``, ``continue``, ``wait``, ``workers``: the queue."""

from __future__ import annotations

import argparse
import json
import sys
import time

from cli.datasets import warn_about_health
from cli.options import add_run_options, build_config, flags_in_errors
from core.errors import ImoriError
from core.status import FINISHED, RUNNING, SUCCEEDED


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="queue a run for a worker (same options as train)")
    add_run_options(p)
    p.add_argument("--sweep-lr", dest="sweep_lr", help="several learning rates, comma-separated: one run each")
    p.add_argument("--sweep-batch-size", dest="sweep_batch_size", help="several batch sizes, comma-separated")
    p.add_argument("--json", action="store_true", help='print {"run_id": ...}')
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("cancel", help="cancel queued or running runs")
    p.add_argument("runs", nargs="+", type=int)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("clone", help="queue a new run with an old run's settings")
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_clone)

    p = sub.add_parser("continue", help="queue a finished or cancelled run again to train further")
    p.add_argument("run", type=int)
    p.add_argument("--epochs", type=int, help="the new total number of epochs")
    p.add_argument("--iterations", type=int, help="the new total number of iterations")
    p.set_defaults(func=cmd_continue)

    p = sub.add_parser("wait", help="wait until runs finish (exit 0 if all succeeded)")
    p.add_argument("runs", nargs="+", type=int)
    p.add_argument("--timeout", type=float, help="give up after this many seconds (exit 3)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("workers", help="live workers, their device and current run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_workers)


def cmd_submit(args: argparse.Namespace) -> int:
    from worker.client import submit, submit_sweep

    config = build_config(args, validate=False)  # the client validates what it queues
    sweep = {}
    for flag, key, kind in (("sweep_lr", "lr", float), ("sweep_batch_size", "batch_size", int)):
        if getattr(args, flag, None):
            try:
                sweep[key] = [kind(v) for v in getattr(args, flag).split(",") if v.strip()]
            except ValueError:
                raise ImoriError(f"--{flag.replace('_', '-')} takes values separated by commas") from None
    with flags_in_errors():  # the client's check names fields; a CLI user typed flags
        run_ids = submit_sweep(config, sweep) if sweep else [submit(config)]
    warn_about_health(config.dataset)
    if args.json:
        print(json.dumps({"run_ids": run_ids, "run_id": run_ids[0]}))
    else:
        for run_id in run_ids:
            print(f"queued run {run_id}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from worker.client import cancel

    for run_id in args.runs:
        status = cancel(run_id)
        print(f"run {run_id}: {'cancelling' if status == RUNNING else status}")
    return 0


def cmd_clone(args: argparse.Namespace) -> int:
    from worker.client import clone

    new = clone(args.run)
    print(json.dumps({"run_id": new}) if args.json else f"queued run {new} (a clone of run {args.run})")
    return 0


def cmd_continue(args: argparse.Namespace) -> int:
    from worker.client import continue_run

    with flags_in_errors():
        continue_run(args.run, epochs=args.epochs, iterations=args.iterations)
    print(f"run {args.run} queued again")
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    """Block until the runs finish; exit 0 only if all of them succeeded."""
    from core.records import queries

    deadline = time.monotonic() + args.timeout if args.timeout else None
    pending = list(args.runs)
    while pending:
        for run_id in list(pending):
            if queries.get_run(run_id).status in FINISHED:
                pending.remove(run_id)
        if not pending:
            break
        if deadline and time.monotonic() > deadline:
            print(f"timed out waiting for {'run' if len(pending) == 1 else 'runs'} {', '.join(map(str, pending))}", file=sys.stderr)
            return 3
        time.sleep(0.5)
    runs = [queries.get_run(run_id) for run_id in args.runs]
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2, default=str))
    else:
        for r in runs:
            print(f"run {r.id}: {r.status}" + (f" ({r.error.splitlines()[0]})" if r.error else ""))
    return 0 if all(r.status == SUCCEEDED for r in runs) else 1


def cmd_workers(args: argparse.Namespace) -> int:
    from worker.broker import require
    from worker.presence import live_workers

    require()  # no queue running: say what to start (an ImoriError), not a traceback
    workers = live_workers()
    if args.json:
        print(json.dumps([w.to_dict() for w in workers], indent=2))
        return 0
    if not workers:
        print("no live workers (start one with `imori worker`, or everything with `imori up`)")
    for w in workers:
        print(f"{w.name:<32} {w.device:<5} {w.device_name:<28} {w.lanes:<17} {w.doing}")
    return 0
