"""The ``imori`` command.

Heavy imports (torch, the dataset code) happen inside each command so that ``imori
--help`` answers at once. A user error prints ``error: ...`` and exits with status 2;
a traceback means a bug.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from core.errors import ImoriError
from core.recorder import EvalMetrics, Recorder, RunEnd, RunStart, StepMetrics


# -- train -----------------------------------------------------------------------------------

# CLI flag -> RunConfig field, for the flags that map one to one.
TRAIN_FIELDS = {
    "model": str, "dataset": str, "data_root": str, "epochs": int, "iterations": int,
    "batch_size": int, "lr": float, "optimizer": str, "momentum": float, "weight_decay": float,
    "loss": str, "schedule": str, "step_epochs": int, "gamma": float, "seed": int,
    "device": str, "threads": int, "channel_order": str, "val_fraction": float,
    "pretrained_path": str, "backbone_lr_mult": float, "init_from": str,
    "checkpoint_every_epochs": int, "checkpoint_every_minutes": float, "keep_checkpoints": int,
    "eval_batch_size": int, "name": str,
}


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Every RunConfig setting as a flag; all default to "not given" so a recipe or a
    resumed checkpoint supplies what the user did not say."""
    s = argparse.SUPPRESS
    p.add_argument("--recipe", default=s, help="start from a tutorial's recipe: seed000, seed002, seed003, seed004")
    p.add_argument("--model", default=s, help="model name (see `imori models`)")
    p.add_argument("--dataset", default=s, help="digits, shapes, shapes2, mnist, fashionmnist, cifar10, an imported name, or a folder/ZIP path")
    p.add_argument("--data-root", dest="data_root", default=s, help="where torchvision datasets live")
    p.add_argument("--download", action="store_true", default=s, help="download torchvision data / pretrained weights if missing")
    p.add_argument("--epochs", type=int, default=s)
    p.add_argument("--iterations", type=int, default=s, help="train a fixed number of optimizer steps instead of epochs")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=s)
    p.add_argument("--lr", type=float, default=s, help="learning rate")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default=s)
    p.add_argument("--momentum", type=float, default=s)
    p.add_argument("--weight-decay", dest="weight_decay", type=float, default=s)
    p.add_argument("--loss", choices=("auto", "cross_entropy", "nll"), default=s)
    p.add_argument("--schedule", choices=("none", "step", "cosine"), default=s)
    p.add_argument("--step-epochs", dest="step_epochs", type=int, default=s)
    p.add_argument("--gamma", type=float, default=s)
    p.add_argument("--seed", type=int, default=s)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=s)
    p.add_argument("--threads", type=int, default=s, help="torch threads (default: the cores this process may use)")
    p.add_argument("--image-size", dest="image_size", default=s, help="N or HxW")
    p.add_argument("--channel-order", dest="channel_order", choices=("RGB", "BGR"), default=s)
    p.add_argument("--mean", default=s, help="normalisation mean, one value or one per channel, comma-separated")
    p.add_argument("--std", default=s, help="normalisation std, like --mean")
    p.add_argument("--augment", default=s, help="comma-separated: flip,crop,rotate")
    p.add_argument("--val-fraction", dest="val_fraction", type=float, default=s)
    p.add_argument("--kernel", type=int, default=s, help="lenet5 kernel size: 5 (classic) or 3 (seed 004's code)")
    p.add_argument("--pretrained", action="store_true", default=s)
    p.add_argument("--pretrained-path", dest="pretrained_path", default=s)
    p.add_argument("--freeze-backbone", dest="freeze_backbone", action="store_true", default=s)
    p.add_argument("--backbone-lr-mult", dest="backbone_lr_mult", type=float, default=s)
    p.add_argument("--init-from", dest="init_from", default=s, help="start from an earlier checkpoint of the same model")
    p.add_argument("--checkpoint-every-epochs", dest="checkpoint_every_epochs", type=int, default=s)
    p.add_argument("--checkpoint-every-minutes", dest="checkpoint_every_minutes", type=float, default=s)
    p.add_argument("--keep-checkpoints", dest="keep_checkpoints", type=int, default=s)
    p.add_argument("--eval-batch-size", dest="eval_batch_size", type=int, default=s)
    p.add_argument("--compile", action="store_true", default=s, help="torch.compile the model")
    p.add_argument("--no-amp", dest="no_amp", action="store_true", default=s, help="no mixed precision on CUDA")
    p.add_argument("--name", default=s, help="a name for the run")


def parse_size(text: str) -> list[int]:
    try:
        parts = [int(v) for v in str(text).lower().replace(",", "x").split("x")]
    except ValueError:
        raise ImoriError(f"image size must look like 64 or 64x48, not {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ImoriError(f"image size must look like 64 or 64x48, not {text!r}")
    return parts


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields the user gave on the command line, and only those."""
    given = vars(args)
    out: dict[str, Any] = {k: given[k] for k in TRAIN_FIELDS if k in given}
    if "image_size" in given:
        out["image_size"] = parse_size(given["image_size"])
    for key in ("mean", "std"):
        if key in given:
            try:
                out[key] = [float(v) for v in given[key].split(",")]
            except ValueError:
                raise ImoriError(f"--{key} takes numbers separated by commas, not {given[key]!r}") from None
    if "augment" in given:
        out["augment"] = [a.strip() for a in given["augment"].split(",") if a.strip()]
    for flag in ("download", "pretrained", "freeze_backbone", "compile"):
        if given.get(flag):
            out[flag] = True
    if given.get("no_amp"):
        out["amp"] = False
    if "kernel" in given:
        out["model_options"] = {"kernel": given["kernel"]}
    if "epochs" in out:
        out.setdefault("iterations", None)
    elif "iterations" in out:
        out["epochs"] = None
    return out


def build_config(args: argparse.Namespace):
    """RunConfig from (a resumed checkpoint's config | a recipe | defaults) + the flags."""
    from core.config import RunConfig, recipe_config

    overrides = config_overrides(args)
    resume = getattr(args, "resume", None)
    if resume:
        from core.checkpoint import load_checkpoint

        ckpt = load_checkpoint(resume)
        if not ckpt.config:
            raise ImoriError(f"{resume}: not an imori checkpoint with a run configuration; cannot resume it")
        base = dict(ckpt.config)
        if "epochs" in overrides or "iterations" in overrides:
            base["epochs"] = base["iterations"] = None
        return RunConfig.from_dict({**base, **overrides}).validate()
    if "recipe" in vars(args):
        return recipe_config(args.recipe, **overrides).validate()
    return RunConfig.from_dict(overrides).validate()


class CliRecorder(Recorder):
    """Draws a tqdm progress bar and prints each evaluation; Ctrl-C stops at the next
    iteration with a checkpoint (a second Ctrl-C stops at once)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bar = None
        self.stop_requested = False
        self.step = 0

    def install_sigint(self) -> None:
        def handler(signum, frame):  # noqa: ARG001
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            self.write("stopping after this iteration (Ctrl-C again to abort at once)")

        signal.signal(signal.SIGINT, handler)

    def write(self, text: str) -> None:
        if not self.quiet:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)

    def on_start(self, start: RunStart) -> None:
        from tqdm import tqdm

        self.step = start.start_step
        self.write(
            f"training on {start.device}: {start.train_size} train / {start.val_size} val / "
            f"{start.test_size} test images, {len(start.classes)} classes, {start.total_steps} iterations"
        )
        self.bar = tqdm(
            total=start.total_steps, initial=start.start_step, unit="it", file=sys.stderr,
            disable=self.quiet, dynamic_ncols=True,
        )

    def on_step(self, m: StepMetrics) -> None:
        if self.bar is not None:
            self.bar.update(m.step - self.step)
            self.bar.set_postfix(epoch=m.epoch, loss=f"{m.loss:.4f}", acc=f"{m.accuracy:.3f}", refresh=False)
        self.step = m.step

    def on_eval(self, m: EvalMetrics) -> None:
        self.write(f"epoch {m.epoch} {m.split:>4}: loss {m.loss:.4f}  accuracy {100 * m.accuracy:.2f} %")

    def on_log(self, message: str) -> None:
        self.write(message)

    def should_stop(self) -> bool:
        return self.stop_requested

    def on_end(self, end: RunEnd) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_train(args: argparse.Namespace) -> int:
    """Train in the foreground, recorded in the run records like a queued run."""
    import socket

    from core.records import DbRecorder, RunStateError, queries, store
    from core.recorder import Recorders
    from core.train import fit

    config = build_config(args)
    resume = getattr(args, "resume", None)
    run_id = None
    if resume:
        run_dir = Path(args.run_dir) if args.run_dir else Path(resume).resolve().parent.parent
        run_id = queries.find_run_by_dir(run_dir)
        if run_id is not None:
            try:
                store.requeue_finished(run_id, config.to_dict())
            except RunStateError as err:
                raise ImoriError(f"{err}; cancel it first or resume into a new --run-dir") from None
    else:
        run_dir = Path(args.run_dir) if args.run_dir else None
    if run_id is None:
        run_id = store.create_run(config, name=config.name, run_dir=run_dir.resolve() if run_dir else None)
    run_dir = Path(queries.get_run(run_id).run_dir)
    attempt = store.claim_run(run_id, f"cli@{socket.gethostname()}")
    cli = CliRecorder(quiet=args.quiet)
    cli.write(f"run {run_id}: {run_dir}")
    cli.install_sigint()
    # The heartbeat keeps the run alive for the workers' watchdogs during long evaluations.
    recorder = Recorders(DbRecorder(run_id, attempt, heartbeat_interval=5.0), cli)
    result = fit(config, run_dir, recorder, resume_from=resume)
    summary = {"run_id": run_id, "run_dir": str(run_dir), "config": config.to_dict(), **result.to_dict()}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"run {run_id} {result.status}: {result.step} iterations, {result.epoch} epoch(s) in {result.seconds:.1f} s "
              f"({result.images_per_second:.0f} images/s on {result.device})")
        if result.test:
            print(f"test accuracy {100 * result.test['accuracy']:.2f} %  (loss {result.test['loss']:.4f})")
        if result.best_val_accuracy is not None:
            print(f"best validation accuracy {100 * result.best_val_accuracy:.2f} %")
        print(f"checkpoints: {result.best_checkpoint or '-'} (best), {result.last_checkpoint or '-'} (last)")
    return 0 if result.status == "succeeded" else 1


# -- the queue ---------------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    from worker.client import submit, submit_sweep

    config = build_config(args)
    sweep = {}
    for flag, key, kind in (("sweep_lr", "lr", float), ("sweep_batch_size", "batch_size", int)):
        if getattr(args, flag, None):
            try:
                sweep[key] = [kind(v) for v in getattr(args, flag).split(",") if v.strip()]
            except ValueError:
                raise ImoriError(f"--{flag.replace('_', '-')} takes values separated by commas") from None
    run_ids = submit_sweep(config, **sweep) if sweep else [submit(config)]
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
        print(f"run {run_id}: {'cancelling' if status == 'running' else status}")
    return 0


def cmd_clone(args: argparse.Namespace) -> int:
    from worker.client import clone

    new = clone(args.run)
    print(json.dumps({"run_id": new}) if args.json else f"queued run {new} (a clone of run {args.run})")
    return 0


def cmd_continue(args: argparse.Namespace) -> int:
    from worker.client import continue_run

    continue_run(args.run, epochs=args.epochs, iterations=args.iterations)
    print(f"run {args.run} queued again")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from core.records import store

    for run_id in args.runs:
        folder = store.delete_run(run_id, remove_files=not args.keep_files)
        print(f"deleted run {run_id}" + ("" if args.keep_files else f" and {folder}"))
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    """Block until the runs finish; exit 0 only if all of them succeeded."""
    from core.records import FINISHED, queries

    deadline = time.monotonic() + args.timeout if args.timeout else None
    pending = list(args.runs)
    while pending:
        for run_id in list(pending):
            if queries.get_run(run_id).status in FINISHED:
                pending.remove(run_id)
        if not pending:
            break
        if deadline and time.monotonic() > deadline:
            print(f"timed out waiting for run(s) {', '.join(map(str, pending))}", file=sys.stderr)
            return 3
        time.sleep(0.5)
    runs = [queries.get_run(run_id) for run_id in args.runs]
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2, default=str))
    else:
        for r in runs:
            print(f"run {r.id}: {r.status}" + (f" ({r.error.splitlines()[0]})" if r.error else ""))
    return 0 if all(r.status == "succeeded" for r in runs) else 1


def cmd_workers(args: argparse.Namespace) -> int:
    from worker.presence import live_workers

    workers = live_workers()
    if args.json:
        print(json.dumps([w.to_dict() for w in workers], indent=2))
        return 0
    if not workers:
        print("no live workers (start one with `imori worker`, or everything with `imori up`)")
    for w in workers:
        doing = f"training run {w.run_id}" if w.run_id else "idle"
        print(f"{w.name:<32} {w.device:<5} {w.device_name:<28} queues {','.join(w.queues):<8} {doing}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.runner import run_worker

    return run_worker(device=args.device, name=args.name, loglevel=args.loglevel, threads=args.threads)


def cmd_up(args: argparse.Namespace) -> int:
    from worker.runner import run_up

    return run_up(host=args.host, port=args.port, workers=args.workers, device=args.device, open_for=args.open_for)


def cmd_dashboard(args: argparse.Namespace) -> int:
    import subprocess

    from worker.runner import dashboard_command

    return subprocess.call(dashboard_command(args.host, args.port))


# -- the records ---------------------------------------------------------------------------------


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
    for r in runs:
        progress = f"{100 * (r.progress or 0):.0f} %"
        print(f"{r.id:>5}  {r.status:<10} {progress:>5}  {str(r.model):<12} {str(r.dataset):<12} "
              f"loss {r.last_loss if r.last_loss is None else round(r.last_loss, 4)!s:<8} "
              f"best val {_pct(r.best_val_accuracy):>8}  test {_pct(r.test_accuracy):>8}  {r.name}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from core.records import queries

    run = queries.get_run(args.run)
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
    for e in queries.eval_series(args.run):
        print(f"  epoch {e.epoch:>3} {e.split:>4}: loss {e.loss:.4f} accuracy {_pct(e.accuracy)}")
    for c in queries.checkpoints(args.run):
        print(f"  checkpoint {c.path}" + ("  (best)" if c.is_best else ""))
    if run.error:
        print(f"  error: {run.error}")
    return 0


# -- predict / evaluate / export -----------------------------------------------------------


def add_checkpoint_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="an imori checkpoint, or a bare state_dict with --model")
    p.add_argument("--model", help="model name, for a bare state_dict (a tutorial's cnn.pt)")
    p.add_argument("--classes", help="class names, comma-separated, for a bare state_dict")
    p.add_argument("--kernel", type=int, help="lenet5 kernel of a bare state_dict (3 for seed 004's code)")


def load_predictor(args: argparse.Namespace):
    from core.predict import Predictor

    bare = {}
    if args.model:
        bare["model"] = args.model
    if args.classes:
        bare["classes"] = [c.strip() for c in args.classes.split(",") if c.strip()]
    if args.kernel:
        bare["options"] = {"kernel": args.kernel}
    return Predictor(args.checkpoint, **bare)


def cmd_predict(args: argparse.Namespace) -> int:
    predictor = load_predictor(args)
    predictions = predictor.predict(args.images, top_k=args.top_k)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
    else:
        for p in predictions:
            if p.error:
                print(f"{p.source}: error: {p.error}")
                continue
            ranked = ", ".join(f"{c} {100 * prob:.1f} %" for c, prob in p.top)
            print(f"{p.source}: {p.label}  ({ranked})")
    return 1 if any(p.error for p in predictions) else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.predict import evaluate

    predictor = load_predictor(args)
    bar = tqdm(unit="img", file=sys.stderr, disable=args.json)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    result = evaluate(predictor, args.dataset, split=args.split, data_root=args.data_root, progress=progress)
    bar.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"{result.dataset} {result.split}: accuracy {100 * result.accuracy:.2f} % over {result.count} images")
    width = max(len(c) for c in result.classes)
    print("per class: " + ", ".join(f"{c} {100 * a:.1f} %" for c, a in result.per_class.items()))
    print("confusion (rows: true, columns: predicted):")
    print(" " * (width + 1) + " ".join(f"{c[:6]:>6}" for c in result.classes))
    for c, row in zip(result.classes, result.confusion):
        print(f"{c:>{width}} " + " ".join(f"{v:>6}" for v in row))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from core.checkpoint import export_state_dict

    out = export_state_dict(args.checkpoint, args.output)
    print(f"wrote {out}: a bare state_dict; load it with model.load_state_dict(torch.load(path, weights_only=True))")
    return 0


# -- listings ----------------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from core.models import build_model, get_spec, list_models, summarize

    if args.name:
        spec = get_spec(args.name)
        options = {"kernel": args.kernel} if args.kernel else {}
        model = build_model(spec.name, args.classes, options=options)
        summary = summarize(model)
        if args.json:
            print(json.dumps(summary.to_dict(), indent=2))
        else:
            print(f"{spec.name}: {spec.title}")
            print(summary.as_text())
        return 0
    specs = list_models()
    if args.json:
        print(json.dumps([
            {"name": s.name, "title": s.title, "seed": s.seed, "in_channels": s.in_channels,
             "default_size": list(s.default_size), "allowed_sizes": s.allowed_sizes, "output": s.output}
            for s in specs
        ], indent=2))
        return 0
    for s in specs:
        size = "x".join(map(str, s.default_size))
        print(f"{s.name:<20} {s.in_channels}x{size:<8} {s.output:<9} {s.title}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from core.data import import_dataset, list_datasets

    if args.action == "import":
        if not args.path:
            raise ImoriError("imori datasets import PATH [--name NAME]")
        info = import_dataset(args.path, name=args.name)
        if args.json:
            print(json.dumps(_info_dict(info), indent=2, default=str))
        else:
            print(f"imported {info.name} ({info.kind}) into {info.location}")
            report = getattr(info, "report", None)
            if report is not None:
                print(report.as_text())
        return 0
    infos = list_datasets()
    if args.json:
        print(json.dumps([_info_dict(i) for i in infos], indent=2, default=str))
        return 0
    for info in infos:
        d = _info_dict(info)
        classes = d.get("classes") or []
        print(f"{d['name']:<16} {d['kind']:<12} {len(classes):>3} classes  {d.get('location') or ''}")
    return 0


def _info_dict(info: Any) -> dict[str, Any]:
    if hasattr(info, "to_dict"):
        return info.to_dict()
    import dataclasses

    return dataclasses.asdict(info)


def cmd_recipes(args: argparse.Namespace) -> int:
    from core.config import RECIPES

    if args.json:
        print(json.dumps(RECIPES, indent=2))
        return 0
    for key, recipe in RECIPES.items():
        print(f"{key}: {recipe['title']}\n    {recipe['about']}")
    return 0


# -- main ----------------------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imori", description="Train image classifiers: the imori command line.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model here, in the foreground")
    add_train_options(p)
    p.add_argument("--resume", help="continue from a checkpoint (give --epochs/--iterations to train further)")
    p.add_argument("--run-dir", dest="run_dir", help="where checkpoints go (default: IMORI_HOME/runs/<id>)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("submit", help="queue a run for a worker (same options as train)")
    add_train_options(p)
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

    p = sub.add_parser("delete", help="delete runs and their checkpoints")
    p.add_argument("runs", nargs="+", type=int)
    p.add_argument("--keep-files", action="store_true", help="keep the checkpoint folder")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("wait", help="wait until runs finish (exit 0 if all succeeded)")
    p.add_argument("runs", nargs="+", type=int)
    p.add_argument("--timeout", type=float, help="give up after this many seconds (exit 3)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("workers", help="live workers, their device and current run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_workers)

    p = sub.add_parser("worker", help="run a worker in the foreground")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: a GPU worker where CUDA is present, else a CPU worker")
    p.add_argument("--name", help="worker name (default: device-host-pid)")
    p.add_argument("--threads", type=int, help="torch threads (default: the usable cores)")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("up", help="start everything: Redis (embedded unless REDIS_URL), a worker, the dashboard")
    p.add_argument("--host", default="127.0.0.1", help="dashboard address (default: localhost only)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--workers", type=int, default=1, help="worker processes (one per machine trains fastest)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--open-for", dest="open_for", type=float, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("dashboard", help="run the dashboard alone")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8501)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("runs", help="list recorded runs")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="one run with its latest metrics")
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", nargs="?", const="steps", choices=("steps", "eval"), help="print its metrics as CSV")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("predict", help="classify images with a checkpoint")
    p.add_argument("images", nargs="+", help="image files")
    add_checkpoint_options(p)
    p.add_argument("--top-k", dest="top_k", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="accuracy and confusion matrix of a checkpoint on a dataset")
    add_checkpoint_options(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test", choices=("test", "train"))
    p.add_argument("--data-root", dest="data_root")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="write a checkpoint's bare state_dict for the tutorial's own model class")
    p.add_argument("checkpoint")
    p.add_argument("output")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("models", help="list models, or show one's parameters")
    p.add_argument("name", nargs="?")
    p.add_argument("--classes", type=int, default=10, help="class count for the summary")
    p.add_argument("--kernel", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("datasets", help="list datasets, or import a folder or ZIP")
    p.add_argument("action", nargs="?", choices=("list", "import"), default="list")
    p.add_argument("path", nargs="?")
    p.add_argument("--name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("recipes", help="the tutorials' recipes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_recipes)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ImoriError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
