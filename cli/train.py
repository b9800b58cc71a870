"""``imori train``, ``predict``, ``evaluate``, ``export``: the work that runs here."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
from pathlib import Path

from cli.datasets import warn_about_health
from cli.options import add_run_options, build_config
from cli.progress import CliRecorder, search_text
from core import cpu_lock
from core.config import RunConfig
from core.errors import ConfigError, ImoriError
from core.devices import resolve_device
from core.files import atomic_write
from core.processes import die_with_parent
from core.saliency import DEFAULT_METHOD, METHODS
from core.status import SUCCEEDED
from core.text import plural


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model here, in the foreground")
    add_run_options(p)
    p.add_argument("--resume", help="continue from a checkpoint (give --epochs/--iterations to train further)")
    p.add_argument("--run-dir", dest="run_dir", help="where checkpoints go (default: IMORI_HOME/runs/<id>)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-wait", dest="no_wait", action="store_true",
                   help="when another training uses this machine's CPU cores, fail at once instead of waiting "
                        "for it (or give --threads N to train beside it)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("join", help="add this machine to a run on several machines (--nnodes) that `imori train` "
                                    "started on the first one")
    p.add_argument("--nnodes", type=int, required=True, help="the machines of the run, this one included")
    p.add_argument("--node-rank", dest="node_rank", type=int, required=True,
                   help="this machine's place, 1 to nnodes - 1 (the first machine, 0, runs `imori train`)")
    p.add_argument("--nproc-per-node", dest="nproc_per_node", type=int, default=1,
                   help="processes on this machine: as the run's --nproc-per-node")
    p.add_argument("--rdzv-endpoint", dest="rdzv_endpoint", required=True, metavar="HOST:PORT",
                   help="as the run's --rdzv-endpoint: the first machine's address and port")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="as the run's: gloo on the CPU, NCCL on CUDA")
    p.add_argument("--threads", type=int, help="torch threads shared by this machine's processes (default: its cores)")
    p.set_defaults(func=cmd_join)

    p = sub.add_parser("lr-find", help="the learning-rate range test (fastai's lr_find): which learning rate to train at")
    add_run_options(p)
    p.add_argument("--start-lr", dest="start_lr", type=float, default=1e-7)
    p.add_argument("--end-lr", dest="end_lr", type=float, default=10.0)
    p.add_argument("--num-it", dest="num_it", type=int, default=100, help="steps of the test")
    p.add_argument("--plot", metavar="PNG", help="also draw the loss against the learning rate into PNG")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_lr_find)

    p = sub.add_parser("predict", help="classify images with a checkpoint")
    p.add_argument("images", nargs="+", help="image files, or folders (every image in them, recursively)")
    add_checkpoint_options(p, run=True)
    p.add_argument("--top-k", dest="top_k", type=int, default=3)
    p.add_argument("--csv", metavar="OUT", help="also write one row per image to OUT: file, class, confidence, "
                                                 "each class's probability, error")
    p.add_argument("--min-confidence", dest="min_confidence", type=float, default=0.0, metavar="P",
                   help="answer 'not sure' when the class's probability is below P (0.8 for 80 %%; default 0: always "
                        "answer), as the dashboard's Predict page does")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("explain", help="why the model says what it says: a class activation map (HiResCAM) over an image")
    p.add_argument("image", help="an image file")
    add_checkpoint_options(p, run=True)
    p.add_argument("--class", dest="target", metavar="CLASS", help="the class to explain (default: the predicted one)")
    p.add_argument("--out", metavar="PNG", help="where to write the overlay (default: IMAGE's name + -METHOD.png)")
    p.add_argument("--method", choices=sorted(METHODS), default=DEFAULT_METHOD,
                   help=f"the class activation map (default {DEFAULT_METHOD}: HiResCAM, Draelos and Carin 2020; "
                        "gradcam: Selvaraju et al. 2017)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("calibrate", help="fit a checkpoint's temperature on its validation split (honest confidence), "
                                         "and optionally an operating point for one class")
    p.add_argument("checkpoint")
    p.add_argument("--class", dest="positive", metavar="CLASS",
                   help="choose a decision threshold for this class (one against the rest), with --target-recall or "
                        "--target-precision")
    p.add_argument("--target-recall", dest="target_recall", type=float, metavar="R",
                   help="the highest threshold that still finds this share of the class's images (e.g. 0.95)")
    p.add_argument("--target-precision", dest="target_precision", type=float, metavar="P",
                   help="the lowest threshold whose answers of this class are right this often")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("evaluate", help="accuracy and confusion matrix of a checkpoint on a dataset")
    add_checkpoint_options(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test", choices=("test", "train"))
    p.add_argument("--data-root", dest="data_root")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export a checkpoint: a bare state_dict (default), ONNX or torch.export's .pt2, "
                                      "checked against PyTorch on its test split")
    p.add_argument("checkpoint")
    p.add_argument("output")
    p.add_argument("--format", choices=("state_dict", "onnx", "pt2", "onnx-int8"), default=None,
                   help="state_dict: for the tutorial's own model class; onnx: for ONNX Runtime and other apps; "
                        "pt2: torch.export's program (no Python class needed); onnx-int8: ONNX quantised to INT8, "
                        "refused unless it agrees with the float model on 99 %% of the test split and loses at "
                        "most 1 point of accuracy. Default: from OUTPUT's extension (.int8.onnx, .onnx, .pt2), "
                        "else state_dict")
    p.add_argument("--min-confidence", dest="min_confidence", type=float, default=0.0, metavar="P",
                   help="the answer rule the export's preprocess.json states: 'not sure' below P (default 0)")
    p.add_argument("--opset", type=int, default=None, metavar="N",
                   help="ONNX only: the operator set to write (default 18, with IR 8: ONNX Runtime 1.16 and later "
                        "load it); a newer runtime takes a newer opset")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)


# -- train -----------------------------------------------------------------------------------


def resumed_config(args: argparse.Namespace):
    """For ``--resume``: the checkpoint's own settings, with the flags on top."""
    from core.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.resume)
    if not ckpt.config:
        raise ImoriError(f"{args.resume}: not an imori checkpoint with a run configuration; cannot resume it")
    return build_config(args, base=dict(ckpt.config))


def cpu_slot(config, *, no_wait: bool):
    """This machine's CPU training slot (``core.cpu_lock``) for a run that trains on the CPU
    with the default threads: taken at once when free, else waited for (saying so once on
    stderr) or, with ``no_wait``, a one-line error. A run given ``--threads`` trains beside
    another without waiting (saying so); a CUDA run needs no slot."""
    try:
        on_cpu = resolve_device(config.device).type == "cpu"
    except ConfigError:
        on_cpu = False  # `--device cuda` without a GPU: the run records that error itself
    if not on_cpu:
        return contextlib.nullcontext()
    if config.threads is not None:
        try:
            busy = cpu_lock.slot_busy()
        except ImoriError:
            busy = False  # no lock folder: nothing to say beside whom it trains
        if busy:
            print(f"imori: another training is using this machine's CPU cores: {cpu_lock.busy_message(cpu_lock.read_holder())}; "
                  f"training beside it with {plural(config.threads, 'thread')}", file=sys.stderr, flush=True)
        return contextlib.nullcontext()

    waited = []

    def on_wait(holder) -> None:
        waited.append(holder)
        print(f"imori: another training is using this machine's CPU cores: {cpu_lock.busy_message(holder)}; "
              "waiting for it to finish (Ctrl-C to stop, or --threads N to run beside it)", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def slot():
        with contextlib.ExitStack() as stack:
            try:
                taken = stack.enter_context(
                    cpu_lock.cpu_training_slot(f"imori train (pid {os.getpid()})", wait=not no_wait, on_wait=on_wait)
                )
            except cpu_lock.CpuSlotBusy as err:
                raise ImoriError(f"{err}; not waiting (--no-wait): try again when it has finished, "
                                 "or give --threads N to train beside it") from None
            except ImoriError as err:  # the lock folder cannot be made: train as before, and say so
                print(f"warning: {err}; training without checking for other trainings", file=sys.stderr, flush=True)
                yield None
                return
            if not taken.held:
                print(f"imori: {cpu_lock.busy_message(taken.holder)} holds this machine's CPU cores but is stopped; "
                      "training beside it", file=sys.stderr, flush=True)
            elif waited:
                print("imori: the CPU cores are free; training", file=sys.stderr, flush=True)
            yield taken

    return slot()


def cmd_train(args: argparse.Namespace) -> int:
    """Train in the foreground, recorded in the run records like a queued run: the same
    life cycle (``core.run.execute_run``) as a worker's, with a progress bar. A CPU run
    first takes this machine's CPU training slot (``cpu_slot``)."""
    resume = getattr(args, "resume", None)
    config = resumed_config(args) if resume else build_config(args)
    config = config.checked_here()  # refused here, before a run is recorded, not failed after
    from core.distributed import shortfall

    why = shortfall(config)
    if why:
        raise ImoriError(f"{why}: give --nproc-per-node {config.nproc_per_node - 1} or fewer")
    warn_about_health(config.dataset)
    # Before any record is written: a run queued in the records meanwhile could be sent to a worker.
    with cpu_slot(config, no_wait=getattr(args, "no_wait", False)) as slot:
        return train_recorded(args, config, resume, slot)


def train_recorded(args: argparse.Namespace, config, resume: str | None, slot) -> int:
    from core.records import RunStateError, queries, store

    run_id = None
    run_dir = Path(args.run_dir) if args.run_dir else None
    elsewhere = None
    if resume:
        # A checkpoint in a recorded run's folder (<run>/checkpoints/x.pt) continues that
        # run; one kept anywhere else (a project folder, a download) continues as a new run
        # under IMORI_HOME, so nothing is ever written beside the user's own files.
        owner = run_dir or Path(resume).resolve().parent.parent
        run_id = queries.find_run_by_dir(owner)
        if run_id is not None:
            try:
                store.requeue_finished(run_id, config.to_dict())
            except RunStateError as err:
                raise ImoriError(f"{err}; cancel it first or resume into a new --run-dir") from None
        elif run_dir is None:
            elsewhere = resume
    if run_id is None:
        run_id = store.create_run(config, name=config.name, run_dir=run_dir.resolve() if run_dir else None)
    if slot is not None:
        slot.describe(f"run {run_id} from imori train (pid {os.getpid()})")
    cli = CliRecorder(quiet=args.quiet)
    if elsewhere:
        cli.write(f"{elsewhere} is not in a recorded run's folder: it continues as a new run, whose checkpoints go "
                  "under IMORI_HOME (give --run-dir to choose the folder)")
    cli.write(f"run {run_id}: {queries.get_run(run_id).run_dir}")
    cli.install_sigint()
    from core.run import execute_run  # torch, at the CLI's edge

    outcome = execute_run(run_id, f"cli@{socket.gethostname()}", listeners=lambda run: [cli], resume_from=resume,
                          cpu_slot=False)
    if outcome.result is None:
        raise ImoriError(f"run {run_id} {outcome.status}: {outcome.error}")
    result = outcome.result
    summary = {"run_id": run_id, "run_dir": result.run_dir, "config": config.to_dict(), **result.to_dict()}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"run {run_id} {result.status}: {result.step} iterations, {plural(result.epoch, 'epoch')} in {result.seconds:.1f} s "
              f"({result.images_per_second:.0f} images/s on {result.device})")
        if result.test:
            print(f"test accuracy {100 * result.test['accuracy']:.2f} %, balanced {100 * result.test['balanced_accuracy']:.2f} %"
                  f"  (loss {result.test['loss']:.4f})")
        if result.pretrained_weights:
            print(f"pretrained weights: {result.pretrained_weights}")
        if result.best_val_accuracy is not None:
            print(f"best validation accuracy {100 * result.best_val_accuracy:.2f} %")
        if result.best_checkpoint and result.best_checkpoint == result.last_checkpoint:
            print(f"checkpoint: {result.best_checkpoint}")  # one file is both (an automatic search's winner)
        else:
            print(f"checkpoints: {result.best_checkpoint or '-'} (best), {result.last_checkpoint or '-'} (last)")
        if result.search:
            print(search_text(result.search))
    return 0 if result.status == SUCCEEDED else 1


def cmd_join(args: argparse.Namespace) -> int:
    """This machine's ranks of a run on several machines: torchrun with ``--node-rank``, as
    this process's child (it ends with it). The run's settings come from its rank 0 (the
    first machine); each machine needs the dataset, and a resumed run its checkpoint (a
    shared IMORI_HOME)."""
    import subprocess

    from core.distributed import shortfall, stop_processes, torchrun_command

    config = RunConfig(nproc_per_node=args.nproc_per_node, nnodes=args.nnodes, rdzv_endpoint=args.rdzv_endpoint,
                       device=args.device, threads=args.threads, batch_size=max(64, 2 * args.nproc_per_node * args.nnodes))
    problems = [p for p in config.problems() if "batch size" not in p]
    if not 1 <= args.node_rank < max(2, args.nnodes):
        problems.append(f"--node-rank must be 1 to {args.nnodes - 1} (0 is the first machine, which runs `imori train`)")
    why = shortfall(config)
    if problems or why:
        raise ImoriError("; ".join(problems + ([why] if why else [])))
    from core.distributed import rank_environment

    command = torchrun_command(config, node_rank=args.node_rank, backend="nccl" if args.device == "cuda" else "gloo")
    print(f"imori join: machine {args.node_rank} of {args.nnodes}, {args.nproc_per_node} process(es), "
          f"meeting at {args.rdzv_endpoint}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(command, env=rank_environment(config), preexec_fn=die_with_parent)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop_processes(proc)
        return 130


# -- predict / evaluate / export -----------------------------------------------------------


def add_checkpoint_options(p: argparse.ArgumentParser, *, run: bool = False) -> None:
    """``run``: also ``--run RUN`` (the run's default checkpoint), instead of ``--checkpoint``."""
    if run:
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--checkpoint", help="an imori checkpoint, or a bare state_dict with --model")
        which.add_argument("--run", type=int, metavar="RUN",
                           help="a recorded run: its best.pt, or its last checkpoint when validation held too few "
                                "images to choose (which one, and why, goes to stderr)")
    else:
        p.add_argument("--checkpoint", required=True, help="an imori checkpoint, or a bare state_dict with --model")
    p.add_argument("--model", help="model name, for a bare state_dict (a tutorial's cnn.pt)")
    p.add_argument("--classes", help="class names, comma-separated, for a bare state_dict")
    p.add_argument("--kernel", type=int, help="lenet5 kernel of a bare state_dict (3 for seed 004's code)")


def run_checkpoint(run_id: int) -> str:
    """The run's default checkpoint (``core.selection``), saying which and why on stderr."""
    from core.records import queries

    queries.get_run(run_id)  # an unknown run is a one-line error
    from core.selection import choose_checkpoint  # torch, at the CLI's edge

    choice = choose_checkpoint(run_id)
    if choice.path is None:
        raise ImoriError(choice.reason)
    row = choice.row
    where = ""
    if row is not None:
        metrics = row.metrics or {}
        scores = [f"{label} {100 * metrics[key]:.1f} %" for key, label in (("val_accuracy", "val"), ("test_accuracy", "test"))
                  if metrics.get(key) is not None]
        where = f" (epoch {row.epoch}, step {row.step}{', ' + ', '.join(scores) if scores else ''})"
    print(f"run {run_id}: using {choice.path}{where}: {choice.reason}", file=sys.stderr)
    return choice.path


def predictor_from_args(args: argparse.Namespace):
    from core.predict import Predictor

    if getattr(args, "run", None) is not None:
        args.checkpoint = run_checkpoint(args.run)
    bare = {}
    if args.model:
        bare["model"] = args.model
    if args.classes:
        bare["classes"] = [c.strip() for c in args.classes.split(",") if c.strip()]
    if args.kernel:
        bare["options"] = {"kernel": args.kernel}
    predictor = Predictor(args.checkpoint, min_confidence=getattr(args, "min_confidence", 0.0), **bare)
    if predictor.checkpoint.kind == "state_dict" and "classes" not in bare:
        print(f"warning: {args.checkpoint} is a bare state_dict and no class names were given: the classes are "
              f"indices 0..{len(predictor.classes) - 1}, in the order the model was trained with "
              "(give --classes a,b,... or use the .preprocess.json that imori export wrote)", file=sys.stderr)
    return predictor


def image_files(paths: list[str]) -> list[str]:
    """The images named: files as given, folders expanded to the files in them that are
    images by their content (core.data.formats.identify), in name order."""
    from pathlib import Path

    from core.data.formats import identify

    out: list[str] = []
    skipped: list[str] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                               p.relative_to(path).parts))
            images = [str(p) for p in found if identify(p) is not None]
            skipped += [str(p) for p in found if str(p) not in set(images)]
            if not images:
                raise ImoriError(f"{given}: a folder with no image in it")
            out += images
        else:
            out.append(given)
    if skipped:
        shown = ", ".join(Path(s).name for s in skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        print(f"skipped {plural(len(skipped), 'file')} in the folders given that are not images Pillow can read: {shown}",
              file=sys.stderr)
    return out


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.predict import calibrated

    predictor = predictor_from_args(args)
    if not calibrated(predictor.calibration) and not args.json:
        print("probabilities as trained: this checkpoint carries no calibration (imori calibrate fits one)",
              file=sys.stderr)
    files = image_files(args.images)
    predictions = []
    with tqdm(total=len(files), unit="img", file=sys.stderr, disable=args.json or len(files) < 50) as bar:
        for start in range(0, len(files), 64):  # batches: memory stays flat for a folder of thousands
            predictions += predictor.predict(files[start:start + 64], top_k=args.top_k)
            bar.update(len(files[start:start + 64]))
    if args.csv:
        from core.predict import predictions_csv

        with atomic_write(args.csv, "w", encoding="utf-8") as handle:
            handle.write(predictions_csv(predictions, predictor.classes))
        print(f"wrote {plural(len(predictions), 'row')} to {args.csv}", file=sys.stderr)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
    else:
        for p in predictions:
            if p.error:
                error = p.error.removeprefix(f"{p.source}: ")  # the decoder's message names the file already
                print(f"{p.source}: error: {error}")
                continue
            ranked = ", ".join(f"{c} {100 * prob:.1f} %" for c, prob in p.top)
            point = predictor.thresholds.get(p.decision) if p.decision else None
            why = f", by the operating point: {p.decision} if p({p.decision}) >= {point['threshold']:.3f}" if point else ""
            print(f"{p.source}: {p.answer}  ({ranked}{why})")
    for p in predictions:
        for warning in p.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 1 if any(p.error for p in predictions) else 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.lr_find import lr_find, plot_limit

    config = build_config(args)
    if args.num_it < 10:
        raise ImoriError(f"--num-it must be at least 10, not {args.num_it}")
    if not 0 < args.start_lr < args.end_lr:
        raise ImoriError(f"the learning rates must rise from above 0: --start-lr {args.start_lr} --end-lr {args.end_lr}")
    with tqdm(total=args.num_it, unit="step", file=sys.stderr, disable=args.json) as bar:
        def progress(step: int, total: int, lr: float, loss: float) -> None:
            bar.update(step - bar.n)
            bar.set_postfix(lr=f"{lr:.2g}", loss=f"{loss:.3f}")

        result = lr_find(config, start_lr=args.start_lr, end_lr=args.end_lr, num_it=args.num_it, progress=progress)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6, 4))
        axis.plot(result.lrs, result.losses)
        axis.set_ylim(min(result.losses) * 0.95, plot_limit(result))
        axis.set_xscale("log")
        axis.set_xlabel("learning rate")
        axis.set_ylabel("loss (smoothed)")
        axis.plot([result.suggestion], [result.suggestion_loss], "o", color="red", label=f"valley: {result.suggestion:.2g}")
        axis.legend()
        figure.tight_layout()
        figure.savefig(args.plot, dpi=100)
        plt.close(figure)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"suggested learning rate: {result.suggestion:.3g} (fastai's valley; loss {result.suggestion_loss:.3f} there)")
    for note in result.notes:
        print(f"note: {note}")
    print(f"train with it: imori train ... --lr {result.suggestion:.3g}" + (f"; the plot: {args.plot}" if args.plot else ""))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.saliency import explain

    predictor = predictor_from_args(args)
    source = Path(args.image)
    if not source.is_file():
        raise ImoriError(f"{source}: no such file")
    saliency = explain(predictor, source, target=args.target, method=args.method)
    out = Path(args.out) if args.out else source.with_name(source.stem + f"-{args.method}.png")
    overlay = saliency.overlay
    if min(overlay.size) < 256:  # a 28x28 input is too small to look at: enlarged, its pixels kept sharp
        from PIL import Image

        factor = -(-256 // min(overlay.size))
        overlay = overlay.resize((overlay.width * factor, overlay.height * factor), Image.NEAREST)
    overlay.save(out)
    row, col = saliency.peak()
    if args.json:
        print(json.dumps({"image": str(source), "class": saliency.target, "probability": saliency.probability,
                          "overlay": str(out), "peak": {"row": row, "col": col},
                          "input_size": list(saliency.heatmap.shape)}, indent=2))
    else:
        print(f"{source}: {saliency.target} ({100 * saliency.probability:.1f} %); the model looked hardest at "
              f"row {row}, column {col} of its {saliency.heatmap.shape[0]}x{saliency.heatmap.shape[1]} input")
        print(f"wrote {out}: the image as the model saw it, with the {args.method} map over it")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.calibration import Calibration, calibrate_checkpoint

    path = Path(args.checkpoint).expanduser().resolve()
    if (args.target_recall is not None or args.target_precision is not None) and not args.positive:
        raise ImoriError("--target-recall and --target-precision choose a threshold for a --class CLASS")
    stored, recorded = calibrate_checkpoint(str(path), positive=args.positive, target_recall=args.target_recall,
                                            target_precision=args.target_precision)
    result = Calibration(**{k: v for k, v in stored.items() if k in Calibration.__dataclass_fields__})
    if args.json:
        print(json.dumps({**stored, "recorded": recorded}, indent=2))
        return 0
    print(f"{path.name}: {result.describe()}")
    for cls, point in stored.get("thresholds", {}).items():
        of_class = f", {point['positives']} of them {cls}" if "positives" in point else ""
        print(f"operating point: {cls} when p({cls}) >= {point['threshold']:.3f} (on {point['images']} validation "
              f"images{of_class}: recall {100 * point['recall']:.1f} %, precision {100 * point['precision']:.1f} %, "
              f"for a target {point['by']} of {100 * point['target']:g} %)")
        if point.get("warning"):
            print(f"warning: {point['warning']}", file=sys.stderr)
    ood = stored.get("ood")
    if ood:
        print(f"none of these: above {'an' if ood['method'][0] in 'aeiou' else 'a'} {ood['method']} score of {ood['threshold']:.4g} ({100 * ood['keep']:g} % of the "
              f"{ood['images']} validation images stay within)")
    print("reliability (test split): confidence bin, images, accuracy before -> after")
    for before, after in zip(result.reliability_before, result.reliability_after):
        if before["count"] or after["count"]:
            acc = lambda b: "  -  " if b["accuracy"] is None else f"{100 * b['accuracy']:5.1f} %"  # noqa: E731
            print(f"  {100 * before['lower']:3.0f}-{100 * before['upper']:3.0f} %  {before['count']:>5} -> "
                  f"{after['count']:>5}   {acc(before)} -> {acc(after)}")
    print(f"stored in {path.name} itself (a copy anywhere answers the same) and its run's record: Predict, imori "
          "predict and imori export use it" if recorded else
          "not stored: no run in these records wrote this file, so nothing will use it (calibrate a run's checkpoint)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.jobs.evaluate import split_warnings
    from core.predict import evaluate

    predictor = predictor_from_args(args)
    for warning in split_warnings(args.dataset, args.split):  # as the dashboard's evaluation says
        print(f"warning: {warning}", file=sys.stderr)
    bar = tqdm(unit="img", file=sys.stderr, disable=args.json)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    result = evaluate(predictor, args.dataset, split=args.split, data_root=args.data_root, progress=progress)
    bar.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    point = result.operating_point
    heads = [("by the top class", result.__dict__)]
    if point:
        heads.append((f"with the operating point: {point['rule']}", point))
    for head, figures in heads:
        if point:
            print(f"-- {head}")
        print(f"{result.dataset} {result.split}: accuracy {100 * figures['accuracy']:.2f} % over {result.count} images")
        if figures["balanced_accuracy"] is not None:
            print(f"balanced accuracy {100 * figures['balanced_accuracy']:.2f} % (mean of the per-class recalls)")
        width = max(len(c) for c in result.classes)
        print(class_table(figures["class_metrics"]))
        print("confusion (rows: true, columns: predicted):")
        print(" " * (width + 1) + " ".join(f"{c[:6]:>6}" for c in result.classes))
        for c, row in zip(result.classes, figures["confusion"]):
            print(f"{c:>{width}} " + " ".join(f"{v:>6}" for v in row))
    return 0


def class_table(metrics: dict[str, dict[str, float]]) -> str:
    """Each class's precision, recall, F1 and support, one row a class."""
    width = max([len(c) for c in metrics] + [len("class")])
    lines = ["class".ljust(width) + f"{'precision':>11}{'recall':>9}{'f1':>9}{'support':>9}"]
    for name, m in metrics.items():
        lines.append(name.ljust(width) + f"{m['precision']:>11.3f}{m['recall']:>9.3f}{m['f1']:>9.3f}{int(m['support']):>9,}")
    return "\n".join(lines)


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.checkpoint import load_checkpoint
    from core.export import export

    ckpt = load_checkpoint(args.checkpoint)
    by_suffix = {".onnx": "onnx", ".pt2": "pt2"}.get(Path(args.output).suffix.lower())
    if by_suffix == "onnx" and Path(args.output).name.lower().endswith(".int8.onnx"):
        by_suffix = "onnx-int8"
    if args.format is None:
        args.format = by_suffix or "state_dict"
    elif by_suffix and by_suffix != args.format and {by_suffix, args.format} != {"onnx", "onnx-int8"}:
        raise ImoriError(f"{args.output} is named like {by_suffix}, but --format {args.format} was asked: "
                         f"name it otherwise, or leave out --format")
    say = None if args.json else (lambda text: print(text + "...", file=sys.stderr, flush=True))
    result = export(args.checkpoint, args.output, args.format, min_confidence=args.min_confidence,
                    progress=say, opset=args.opset)  # the path: its record's temperature too
    if args.json:
        print(json.dumps({"path": str(result.path), "preprocess": str(result.sidecar), "format": result.format,
                          "parity": result.parity.to_dict() if result.parity else None, "note": result.note,
                          "opset": result.opset, "ir_version": result.ir_version,
                          "int8": result.int8.to_dict() if result.int8 else None}, indent=2))
        return 0
    how = {
        "state_dict": "a bare state_dict; load it with model.load_state_dict(torch.load(path, weights_only=True))",
        "onnx": "ONNX; run it with onnxruntime.InferenceSession(path), input 'image' (N x C x H x W float32)",
        "pt2": "torch.export's program; run it with torch.export.load(path).module()(images)",
        "onnx-int8": "ONNX quantised to INT8 (QDQ); run it with onnxruntime.InferenceSession(path), input 'image' "
                     "(N x C x H x W float32)",
    }[result.format]
    if result.opset is not None:
        how += f" (opset {result.opset}, IR version {result.ir_version})"
    print(f"wrote {result.path}: {how}")
    if result.parity is not None:
        print(f"checked against PyTorch: {result.parity.describe()}")
    if result.int8 is not None:
        print(f"checked against the float model: {result.int8.describe()}")
    if result.note:
        print(result.note)
    print(f"wrote {result.sidecar}: the input it expects and the class order")
    print("classes, in output order: " + ", ".join(f"{i}={c}" for i, c in enumerate(ckpt.classes)))
    return 0
