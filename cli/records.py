"""``imori runs``, ``show``, ``delete``: the run records."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list recorded runs")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="one run with its latest metrics")
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", nargs="?", const="steps", choices=("steps", "eval"), help="print its metrics as CSV")
    p.add_argument("--config", action="store_true",
                   help="print its settings as YAML (`imori train --config FILE` reads them back)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("delete", help="delete runs and their checkpoints")
    p.add_argument("runs", nargs="+", type=int)
    p.add_argument("--keep-files", action="store_true", help="keep the checkpoint folder")
    p.set_defaults(func=cmd_delete)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def cmd_runs(args: argparse.Namespace) -> int:
    from core.records import queries

    runs = queries.list_runs(limit=args.limit)
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2, default=str))
        return 0
    if not runs:
        print("no runs yet: try `imori train --recipe seed003`")
        return 0
    print(f"{'run':>5}  {'status':<10} {'done':>5}  {'model':<18} {'dataset':<12} {'loss':<8} "
          f"{'best val':>8}  {'test':>8}  name")
    for r in runs:
        progress = f"{100 * (r.progress or 0):.0f} %"
        loss = "-" if r.last_loss is None else f"{r.last_loss:.4f}"
        print(f"{r.id:>5}  {r.status:<10} {progress:>5}  {str(r.model or '-'):<18} {str(r.dataset or '-'):<12} "
              f"{loss:<8} {_pct(r.best_val_accuracy):>8}  {_pct(r.test_accuracy):>8}  {r.name or ''}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from core.records import queries

    run = queries.get_run(args.run)
    if args.config:
        from core.config import RunConfig, dump_config

        print(dump_config(RunConfig.from_dict(run.config)), end="")
        return 0
    if args.csv:
        queries.metrics_csv(args.run, sys.stdout, kind=args.csv)
        return 0
    if args.json:
        data = run.to_dict()
        data["evaluations"] = [e.to_dict() for e in queries.eval_series(args.run)]
        data["checkpoint_files"] = [c.to_dict() for c in queries.checkpoints(args.run)]
        print(json.dumps(data, indent=2, default=str))
        return 0
    print(f"run {run.id}: {run.name}  [{run.status}]")
    print(f"  model {run.model} on {run.dataset}, device {run.device or '-'}, worker {run.worker or '-'}, attempt {run.attempt}")
    print(f"  step {run.step}/{run.total_steps or '?'} (epoch {run.epoch}), last loss {run.last_loss}, last accuracy {_pct(run.last_accuracy)}")
    print(f"  best validation {_pct(run.best_val_accuracy)}, latest test {_pct(run.test_accuracy)}")
    evals = queries.eval_series(args.run)
    for e in evals:
        balanced = "" if e.balanced_accuracy is None else f" balanced {_pct(e.balanced_accuracy)}"
        print(f"  epoch {e.epoch:>3} {e.split:>4}: loss {e.loss:.4f} accuracy {_pct(e.accuracy)}{balanced}")
    latest = next((e for e in reversed(evals) if e.split == "test" and e.per_class), None)
    if latest is not None:
        width = max(5, *(len(name) for name in latest.per_class))
        print(f"  per class, test split of epoch {latest.epoch}:")
        print(f"    {'class':<{width}}  precision  recall     f1  support")
        for name, m in latest.per_class.items():
            print(f"    {name:<{width}}  {m['precision']:9.3f}  {m['recall']:6.3f}  {m['f1']:5.3f}  {int(m['support']):7d}")
    for c in queries.checkpoints(args.run):
        print(f"  checkpoint {c.path}" + ("  (best)" if c.is_best else ""))
    if run.error:
        print(f"  error: {run.error}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from core.records import store

    for run_id in args.runs:
        folder = store.delete_run(run_id, remove_files=not args.keep_files)
        print(f"deleted run {run_id}" + ("" if args.keep_files else f" and {folder}"))
    return 0
