"""``imori jobs``, ``jobs show``, ``jobs cancel``: the work workers do besides training.

Evaluations, health checks, calibrations, learning-rate finds, exports and imports are
each a row of the records' ``jobs`` table (``core.records.jobs``); this module only lists,
shows and cancels them. Reading a kind's name (``core.jobs.kinds``) loads nothing heavy;
the records (SQLAlchemy) and the queue (Celery) are imported by the command that needs
them, so that ``imori --help`` does not pay for them.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.jobs.kinds import KINDS
from core.status import CANCELLED, JOB_FINISHED, JOB_STATUSES, QUEUED, RUNNING

SUBJECT_WIDTH = 36


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="the jobs workers do besides training (evaluate, health, calibrate, lr_find, "
                                    "export, import): list, show or cancel them",
                       description="imori jobs [--kind K] [--status S] [--json]; imori jobs show ID [--json]; "
                                   "imori jobs cancel ID")
    p.add_argument("--kind", choices=tuple(KINDS), help="only jobs of this kind")
    p.add_argument("--status", choices=JOB_STATUSES, help="only jobs in this state")
    p.add_argument("--limit", type=int, default=100, help="the newest N jobs (default 100)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_jobs)
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    q = actions.add_parser("show", help="one job: its parameters, progress, result or error")
    q.add_argument("job", type=int, metavar="ID")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_show)

    q = actions.add_parser("cancel", help="cancel jobs: a queued one never starts, a running one stops at its next "
                                          "progress report")
    q.add_argument("jobs", type=int, nargs="+", metavar="ID")
    q.set_defaults(func=cmd_cancel)


def cmd_jobs(args: argparse.Namespace) -> int:
    """The newest jobs, as a table (or JSON), newest first."""
    from core.records import jobs

    found = jobs.list_jobs(kind=args.kind, status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps([j.to_dict() for j in found], indent=2, default=str))
        return 0
    if not found:
        filtered = args.kind or args.status
        print("no jobs match" if filtered else "no jobs yet: evaluations, health checks, calibrations, exports and "
                                               "imports asked of a worker are listed here")
        return 0
    now = datetime.now(timezone.utc)
    print(f"{'job':>5}  {'kind':<10} {'status':<11} {'done':>5}  {'subject':<{SUBJECT_WIDTH}}  {'age':>8}  "
          f"{'took':>8}  worker")
    for j in found:
        took = _duration(j.finished_at - j.created_at) if j.finished_at else "-"
        print(f"{j.id:>5}  {j.kind:<10} {_status(j):<11} {100 * (j.progress or 0):>3.0f} %  "
              f"{_shorten(j.subject, SUBJECT_WIDTH):<{SUBJECT_WIDTH}}  {_duration(now - j.created_at):>8}  "
              f"{took:>8}  {j.worker or '-'}")
    if len(found) == args.limit:
        print(f"the newest {args.limit} jobs (--limit N for more)")
    waiting = [j for j in found if j.status == QUEUED]
    if waiting:
        print()
        for j in waiting[:5]:  # each line reads the workers: the oldest few say enough
            print(f"job {j.id} is queued: {_waiting(j)}")
    return 0


def _waiting(job: Any) -> str:
    """What a queued job waits for (worker.waits), or that the queue does not answer."""
    from worker.waits import job_wait

    try:
        return job_wait(job)
    except Exception:  # noqa: BLE001 - Redis down: say so on one line, never a traceback
        return "waiting for a worker, and the queue does not answer: start `imori up` (or `imori worker`)"


def cmd_show(args: argparse.Namespace) -> int:
    """One job with its parameters, where it is, and its result or error."""
    from core.records import jobs

    job = jobs.get_job(args.job)
    if args.json:
        print(json.dumps(job.to_dict(), indent=2, default=str))
        return 0
    kind = KINDS.get(job.kind)
    where = f"{100 * (job.progress or 0):.0f} %" + (f": {job.stage}" if job.stage else "")
    print(f"job {job.id}: {kind.title if kind else job.kind}  [{_status(job)}, {where}]")
    print(f"  {kind.subject if kind else 'subject'}: {job.subject}")
    if job.params:
        print("  params: " + ", ".join(f"{k}={_compact(v)}" for k, v in job.params.items()))
    if job.run_id is not None:
        print(f"  run {job.run_id}")
    if job.status == QUEUED:
        print(f"  {_waiting(job)}")
    now = datetime.now(timezone.utc)
    print(f"  worker {job.worker or '-'}, created {_when(job.created_at)} ({_duration(now - job.created_at)} ago)"
          + (f", finished {_when(job.finished_at)} (took {_duration(job.finished_at - job.created_at)})"
             if job.finished_at else ""))
    if job.result:
        print("  result:")
        for key, value in job.result.items():
            print(f"    {key}: {_compact(value, limit=100)}")
    if job.error:
        print("  error: " + job.error.strip().replace("\n", "\n         "))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel each job: say whether it ended at once or stops at its next progress report."""
    from core.records import jobs
    from worker.client import cancel_job

    for job_id in args.jobs:
        before = jobs.get_job(job_id).status  # an unknown id: JobNotFound, one line and exit 2
        status = cancel_job(job_id)
        if status == CANCELLED and before == QUEUED:
            print(f"job {job_id}: cancelled (it had not started)")
        elif status == RUNNING:
            print(f"job {job_id}: cancel requested: it stops at its next progress report")
        elif status in JOB_FINISHED:
            print(f"job {job_id}: already {status}, nothing to cancel")
        else:
            print(f"job {job_id}: {status}")
    return 0


def _status(job: Any) -> str:
    return "cancelling" if job.status == RUNNING and job.cancel_requested else job.status


def _shorten(text: str, width: int) -> str:
    """A subject within ``width`` characters, read from its start: the home folder as ``~``,
    then cut at the right with an ellipsis (``imori jobs show ID`` gives it whole)."""
    home = str(Path.home())
    if home not in ("", "/") and (text == home or text.startswith(home + "/")):
        text = "~" + text[len(home):]
    return text if len(text) <= width else text[:width - 1] + "…"


def _duration(delta: Any) -> str:
    seconds = max(0.0, delta.total_seconds())
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _compact(value: Any, limit: int = 60) -> str:
    """A value on one line: numbers rounded, nested values as short JSON, or how many."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
        if len(text) <= limit:
            return text
        return f"({len(value)} {'entries' if isinstance(value, dict) else 'items'}: --json shows them)"
    return str(value)
