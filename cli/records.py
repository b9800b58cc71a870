"""``imori runs``, ``show``, ``delete``: the run records."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

from cli.progress import search_text
from core.config import RunConfig, dump_config
from core.errors import ConfigError
from core.status import FINISHED, STATUSES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list recorded runs (search, filter, page)")
    p.add_argument("--search", metavar="TEXT", help="runs whose name, model, dataset or note holds TEXT (or run id #N)")
    p.add_argument("--status", action="append", choices=STATUSES,
                   help="only runs in this state (repeat for several)")
    p.add_argument("--model", help="only runs of this model")
    p.add_argument("--dataset", help="only runs on this dataset")
    p.add_argument("--tag", action="append", metavar="TAG", help="only runs tagged TAG (repeat: all of them)")
    p.add_argument("--since", type=_date, metavar="YYYY-MM-DD", help="created on or after this day (UTC)")
    p.add_argument("--until", type=_date, metavar="YYYY-MM-DD", help="created on or before this day (UTC)")
    p.add_argument("--page", type=_positive, default=1, help="which page, from 1 (default: the newest runs)")
    p.add_argument("--per-page", "--limit", dest="per_page", type=_positive, default=50, help="runs a page (default 50)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("tag", help="add or remove tags on runs")
    p.add_argument("runs", nargs="+", type=int, metavar="RUN")
    p.add_argument("--add", action="append", default=[], metavar="TAG", help="a tag to add (repeat, or a,b,c)")
    p.add_argument("--remove", action="append", default=[], metavar="TAG", help="a tag to remove (repeat, or a,b,c)")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("note", help="show, set or clear a run's note")
    p.add_argument("run", type=int)
    p.add_argument("text", nargs="?", help="the note (\"\" clears it; none: print it)")
    p.set_defaults(func=cmd_note)

    p = sub.add_parser("show", help="one run with its latest metrics")
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", nargs="?", const="steps", choices=("steps", "eval"), help="print its metrics as CSV")
    p.add_argument("--log", action="store_true",
                   help="print its log, as the run page's Log tab shows it (with --json: one object a line)")
    p.add_argument("--config", action="store_true",
                   help="print its settings as YAML (`imori train --config FILE` reads them back)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("delete", help="delete runs and their checkpoints")
    p.add_argument("runs", nargs="+", type=int)
    p.add_argument("--keep-files", action="store_true", help="keep the checkpoint folder")
    p.set_defaults(func=cmd_delete)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-12-01") from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1")
    return int(text)


def run_filter(args: argparse.Namespace):
    """The runs list's filter from ``imori runs``' flags."""
    from datetime import datetime, time, timedelta, timezone

    from core.records import queries

    def day(d, shift=0):
        return None if d is None else datetime.combine(d + timedelta(days=shift), time(), timezone.utc)

    tags = [t.strip() for value in args.tag or () for t in value.split(",") if t.strip()]  # --tag a,b: both
    return queries.RunFilter(text=args.search, status=args.status, model=args.model, dataset=args.dataset,
                             tags=tags or None, since=day(args.since), until=day(args.until, 1))


def cmd_runs(args: argparse.Namespace) -> int:
    from core.records import queries

    page = queries.run_page(run_filter(args), page=args.page, per_page=args.per_page)
    runs = page.runs
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2, default=str))
        return 0
    if not runs:
        filtered = any(getattr(args, k) for k in ("search", "status", "model", "dataset", "tag", "since", "until"))
        print("no runs match" if filtered else "no runs yet: try `imori train --recipe seed003`")
        return 0
    print(f"{'run':>5}  {'status':<10} {'done':>5}  {'model':<18} {'dataset':<12} {'loss':<8} "
          f"{'best val':>8}  {'test':>8}  name")
    for r in runs:
        progress = f"{100 * (r.progress or 0):.0f} %"
        loss = "-" if r.last_loss is None else f"{r.last_loss:.4f}"
        tags = f"  [{', '.join(r.tags)}]" if r.tags else ""
        print(f"{r.id:>5}  {r.status:<10} {progress:>5}  {str(r.model or '-'):<18} {str(r.dataset or '-'):<12} "
              f"{loss:<8} {_pct(r.best_val_accuracy):>8}  {_pct(r.test_accuracy):>8}  {r.name or ''}{tags}")
    if page.pages > 1:
        first = (page.page - 1) * page.per_page + 1
        print(f"runs {first}-{first + len(runs) - 1} of {page.total:,} (page {page.page} of {page.pages}; --page N for another)")
    return 0


def _tag_list(values: list[str]) -> list[str]:
    return [t for value in values for t in value.split(",") if t.strip()] if values else []


def cmd_tag(args: argparse.Namespace) -> int:
    from core.records import queries, store

    add, remove = _tag_list(args.add), _tag_list(args.remove)
    if not add and not remove:
        raise ConfigError("give --add TAG and/or --remove TAG")
    store.tag_runs(args.runs, add=add, remove=remove)
    for run in queries.list_runs(ids=args.runs, limit=None):
        print(f"run {run.id}: {', '.join(run.tags) if run.tags else '(no tags)'}")
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    from core.records import queries, store

    if args.text is None:
        note = queries.get_run(args.run).note
        print(note if note else f"run {args.run} has no note")
        return 0
    store.set_note(args.run, args.text)
    print(f"run {args.run}: note {'cleared' if not args.text.strip() else 'saved'}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from core.records import checkpoints as checkpoint_records, queries

    run = queries.get_run(args.run)
    if args.log:
        return print_log(run, args.json)
    if args.config:
        print(dump_config(RunConfig.from_dict(run.config)), end="")
        trained_with = (run.search or {}).get("trained_with")
        if trained_with:  # as comments: reading the file back searches again, as a clone does
            winner = dump_config(RunConfig.from_dict({k: v for k, v in trained_with.items() if k != "tta_views"}))
            print(f"# the search's winner ({run.search.get('winner')}) trained with these settings"
                  f" (test-time views: {', '.join(trained_with.get('tta_views') or ['identity'])}):")
            print("".join(f"#   {line}\n" for line in winner.splitlines()), end="")
        return 0
    if args.csv:
        queries.metrics_csv(args.run, sys.stdout, kind=args.csv)
        return 0
    if args.json:
        data = run.to_dict()
        data["not_learning"] = queries.not_learning(run)
        data["evaluations"] = [e.to_dict() for e in queries.eval_series(args.run)]
        data["checkpoint_files"] = [c.to_dict() for c in checkpoint_records.checkpoints(args.run)]
        print(json.dumps(data, indent=2, default=str))
        return 0
    print(f"run {run.id}: {run.name}  [{run.status}]")
    print(f"  model {run.model} on {run.dataset}, device {run.device or '-'}, worker {run.worker or '-'}, attempt {run.attempt}")
    loss = "-" if run.last_loss is None else f"{run.last_loss:.4f}"
    probe = queries.probe_winner(run)
    if probe is not None:  # not "step 0/? (epoch 0)": it was fitted on features
        print(f"  the search's winner, {probe}, was fitted on features: no training steps")
    else:
        print(f"  step {run.step}/{run.total_steps or '?'} (epoch {run.epoch}), last loss {loss}, "
              f"last accuracy {_pct(run.last_accuracy)}")
    print(f"  best validation {_pct(run.best_val_accuracy)}, latest test {_pct(run.test_accuracy)}")
    if queries.not_learning(run):
        advice = queries.not_learning_advice(queries.trained_settings(run.config, run.search))
        print(f"  warning: {advice} (the loss has not fallen since the first epoch)")
    if run.tags:
        print(f"  tags: {', '.join(run.tags)}")
    if run.note:
        print("  note: " + run.note.replace("\n", "\n        "))
    evals = sorted(queries.eval_series(args.run), key=lambda e: (e.epoch, e.split != "val"))  # val, then test
    for e in evals:
        balanced = "" if e.balanced_accuracy is None else f" balanced {_pct(e.balanced_accuracy)}"
        loss = "-" if e.loss is None else f"{e.loss:.4f}"
        print(f"  epoch {e.epoch:>3} {e.split:>4}: loss {loss} accuracy {_pct(e.accuracy)}{balanced}")
    latest = next((e for e in reversed(evals) if e.split == "test" and e.per_class), None)
    if latest is not None:
        width = max(5, *(len(name) for name in latest.per_class))
        print(f"  per class, test split of epoch {latest.epoch}:")
        print(f"    {'class':<{width}}  precision  recall     f1  support")
        for name, m in latest.per_class.items():
            print(f"    {name:<{width}}  {m['precision']:9.3f}  {m['recall']:6.3f}  {m['f1']:5.3f}  {int(m['support']):7d}")
    for c in checkpoint_records.checkpoints(args.run):
        print(f"  checkpoint {c.path}" + ("  (best)" if c.is_best else ""))
    if run.search:
        print("  " + search_text(run.search).replace("\n", "\n  "))
    if run.error:
        print(f"  error: {run.error}")
    return 0


def print_log(run, as_json: bool) -> int:
    """``imori show RUN --log``: every line the run logged, oldest first, each with its UTC
    time and attempt; a run that logged nothing says why on stderr."""
    from core.records import queries

    lines = queries.run_logs(run.id, limit=None)
    for line in lines:
        if as_json:
            print(json.dumps(line.to_dict()))
        else:
            when = datetime.fromtimestamp(line.time, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{when}  [attempt {line.attempt}] {line.message}")
    if not lines:
        why = ("logged nothing yet: the log starts when a worker starts the run" if run.status not in FINISHED
               else "logged nothing (it never started)")
        print(f"run {run.id} {why}", file=sys.stderr)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from core.records import store

    for run_id in args.runs:
        folder = store.delete_run(run_id, remove_files=not args.keep_files)
        print(f"deleted run {run_id}" + ("" if args.keep_files else f" and {folder}"))
    return 0
