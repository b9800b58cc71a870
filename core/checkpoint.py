"""Checkpoints: the one module that writes and reads the format, and every policy of when.

``Checkpointer`` decides when a run writes a checkpoint (best, every N epochs, every M
minutes mid-epoch, on cancel, the last K kept); ``make_payload`` builds the file's
contents and ``load_checkpoint`` reads them back; ``save_atomic`` writes, ``read_file``
loads with ``weights_only=True`` and explains every refusal.

An imori checkpoint is a dict of plain values and tensors only, so it loads with
``torch.load(weights_only=True)``: the model's state_dict, its name, options and
classes, the preprocessing, and (for resuming) the optimizer and scheduler states,
step, epoch, position in the epoch and RNG states as tensors.

A bare state_dict (what the tutorials save with ``torch.save(model.state_dict())``)
is accepted wherever a checkpoint is, given the model name and class names.
"""

from __future__ import annotations

import io
import pickletools
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import core
from core.errors import CheckpointError, ImoriError
from core.files import atomic_write
from core.models.registry import build_model
from core.models.specs import get_spec
from core.models.weights import strip_wrapper_prefixes
from core.recorder import CheckpointInfo, Recorder

FORMAT = "imori-checkpoint"
FORMAT_VERSION = 1

# Globals a pickle may name that mean "this runs code", for the error message only:
# nothing here is ever unpickled (weights_only=True refuses them all).
_CODE_MODULES = ("os", "posix", "nt", "subprocess", "sys", "shutil", "runpy", "importlib", "pty", "socket")
_CODE_BUILTINS = ("eval", "exec", "compile", "__import__", "getattr", "open", "breakpoint", "input")


def _runs_code(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    if module in ("builtins", "__builtin__"):
        return attr in _CODE_BUILTINS
    return name.split(".")[0] in _CODE_MODULES


@dataclass
class Checkpoint:
    """What a checkpoint file holds, whichever kind it was."""

    kind: str  # "imori" or "state_dict"
    model_name: str
    model_options: dict[str, Any]
    classes: list[str]
    preprocessing: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    path: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # optimizer, scheduler, step, rng...
    metrics: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # facts about the training images
    # Test-time augmentation: the views (core.data.augment.tta_views) whose softmax
    # probabilities prediction averages; empty for the single model.
    tta: list[str] = field(default_factory=list)
    # The file's own calibration (core.calibration: temperature, thresholds, curves), so a
    # copy anywhere answers as the original does; None when it was never calibrated.
    calibration: dict[str, Any] | None = None

    @property
    def step(self) -> int:
        return int(self.training.get("step", 0))

    @property
    def epoch(self) -> int:
        return int(self.training.get("epoch", 0))

    def build_model(self) -> torch.nn.Module:
        """The model with these weights loaded strictly, in eval mode, on the CPU."""
        prep = self.preprocessing
        model = build_model(
            self.model_name,
            len(self.classes),
            image_size=(int(prep["height"]), int(prep["width"])),
            options=self.model_options,
        )
        load_weights(model, self.state_dict, self.model_name, self.path)
        return model.eval()


def load_weights(model: torch.nn.Module, state_dict: dict, model_name: str, path: str | None = None) -> None:
    """``load_state_dict(strict=True)`` with a message that says what does not fit."""
    missing, unexpected, mismatched = [], [], []
    own = model.state_dict()
    for key, value in state_dict.items():
        if key not in own:
            unexpected.append(key)
        elif tuple(own[key].shape) != tuple(value.shape):
            mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}")
    missing = [key for key in own if key not in state_dict]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            parts.append("shapes differ: " + ", ".join(mismatched[:3]))
        if missing:
            parts.append("missing: " + ", ".join(missing[:4]))
        if unexpected:
            parts.append("unexpected: " + ", ".join(unexpected[:4]))
        where = f"{path}: " if path else ""
        raise CheckpointError(
            f"{where}these weights are not a {model_name} with {_classes_of(model)} classes "
            f"(a checkpoint of another architecture or class count?); " + "; ".join(parts)
        )
    model.load_state_dict(state_dict, strict=True)


def _classes_of(model: torch.nn.Module) -> str:
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return str(last[-1].out_features) if last else "?"


# -- writing -------------------------------------------------------------------------------


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename.

    A reader (or a worker killed mid-write) sees either the old file or the new one,
    never half of one. A full or read-only disk becomes a CheckpointError and leaves
    no temporary file behind.
    """
    path = Path(path)
    # Serialise in memory first: a full disk then fails in a plain write with its own
    # OSError, not inside torch's zip writer (which reports it as a RuntimeError).
    try:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, fsync=True) as fh:
            fh.write(buffer.getbuffer())
    except OSError as err:
        raise CheckpointError(f"cannot write checkpoint {path}: {err.strerror or err}") from None
    return path


def write_calibration(path: str | Path, calibration: dict[str, Any] | None) -> bool:
    """Put ``calibration`` (plain values) into the imori checkpoint at ``path`` itself,
    atomically, so that the file carries it wherever it is copied; None removes it.
    Returns False for a file that is not an imori checkpoint (a bare state_dict: its
    calibration can live only in the records). Raises CheckpointError as ``read_file``
    and ``save_atomic`` do."""
    data = read_file(path)
    if not (isinstance(data, dict) and data.get("format") == FORMAT):
        return False
    if calibration:
        data["calibration"] = dict(calibration)
    else:
        data.pop("calibration", None)
    save_atomic(data, path)
    return True


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights as CPU tensors, without the ``_orig_mod.`` prefix of compile."""
    model = getattr(model, "_orig_mod", model)
    return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}


def export_state_dict(checkpoint: str | Path | Checkpoint, out: str | Path) -> Path:
    """Write the bare ``state_dict`` that the tutorial's own model class loads, and beside
    it ``<out>.preprocess.json`` (``preprocess_path``): what an application must do to an
    image first and how to read the output, so no one has to guess the class order."""
    import json

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    path = save_atomic({k: v.contiguous() for k, v in ckpt.state_dict.items()}, out)
    sidecar = preprocess_path(path)
    sidecar.write_text(json.dumps(preprocess_description(ckpt), indent=2) + "\n")
    return path


def preprocess_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".preprocess.json")


def preprocess_description(ckpt: Checkpoint) -> dict[str, Any]:
    """A checkpoint's input and output contract as plain JSON values: class names in
    output order, input size (pixels), channels, channel order, resize method, the scale
    to [0, 1], mean and std, and whether the model outputs logits or log-probabilities."""
    prep = ckpt.preprocessing
    return {
        "model": ckpt.model_name,
        "model_options": dict(ckpt.model_options),
        "classes": list(ckpt.classes),
        "input_size": {"height": int(prep["height"]), "width": int(prep["width"])},
        "channels": int(prep["channels"]),
        "channel_order": prep.get("channel_order", "RGB"),
        "resize": "bilinear (Pillow), to exactly height x width",
        "scale": 1 / 255,
        "mean": list(prep.get("mean", [0.0])),
        "std": list(prep.get("std", [1.0])),
        "layout": "N x C x H x W, float32",
        "output": get_spec(ckpt.model_name).output,
        "temperature": 1.0,  # softmax(scores / temperature); imori calibrate fits one on the validation split
        **({"test_time_augmentation": {
            "views": list(ckpt.tta),
            "exported": "the single model: imori predicts with the mean of the softmax probabilities over these "
                        "views of each image (flips, quarter turns), so its answers can differ from this file's "
                        "on one view; average them in the application to answer as imori does",
        }} if ckpt.tta else {}),
    }


def make_payload(
    *,
    model_name: str,
    model_options: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    classes: list[str],
    preprocessing: dict[str, Any],
    config: dict[str, Any],
    metrics: dict[str, float],
    training: dict[str, Any],
    data: dict[str, Any] | None = None,
    tta: list[str] | None = None,
) -> dict[str, Any]:
    """An imori checkpoint's contents: plain values and tensors only (``load_checkpoint``
    reads them back). ``training`` holds what resuming needs: step, epoch, position in the
    epoch (``next_epoch``, ``next_batch``), optimizer and scheduler states, the best
    validation score so far and the RNG states as tensors. ``data`` holds facts about the
    training images that prediction compares uploads with (``core.train.training_data_facts``).
    ``tta``: the views prediction averages over (test-time augmentation), when the run asked
    for it. A run with an EMA of its weights writes the average as the model, and the
    weights it trains under ``training["raw_state_dict"]``."""
    extra = {"tta": list(tta)} if tta else {}
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "imori_version": core.__version__,
        "model": {"name": model_name, "options": dict(model_options), "state_dict": state_dict},
        "classes": list(classes),
        "preprocessing": dict(preprocessing),
        "config": dict(config),
        "metrics": dict(metrics),
        "data": dict(data or {}),
        "training": training,
        **extra,
    }


# Validation score: (accuracy, -loss), so that a tie in accuracy goes to the lower loss.
Score = tuple[float, float]


class Checkpointer:
    """Every checkpoint policy of one run, called by the loop at two points (timm's
    ``CheckpointSaver`` is the anchor).

    ``after_step``: a checkpoint every ``every_minutes`` mid-epoch (so a long CPU epoch is
    never lost), and one when the run stops early (cancelled). ``after_epoch``: ``best.pt``
    whenever the validation score improves, a periodic checkpoint every ``every_epochs``
    epochs and at the end of the run. Only the last ``keep`` periodic checkpoints are kept;
    ``best.pt`` always is. ``payload(metrics)`` gives the file's contents at this moment.
    """

    def __init__(
        self,
        folder: str | Path,
        payload: Callable[[dict[str, float]], dict[str, Any]],
        recorder: Recorder,
        *,
        every_epochs: int = 1,
        every_minutes: float = 0.0,
        keep: int = 3,
        writes: bool = True,
    ) -> None:
        self.folder = Path(folder)
        self.writes = writes  # False: keep the policy's state, write nothing (DDP ranks but rank 0)
        self.payload = payload
        self.recorder = recorder
        self.every_epochs = every_epochs
        self.every_s = every_minutes * 60
        self.keep = keep
        self.best_score: Score | None = None
        self.best_path: str | None = None
        self.last_path: str | None = None
        self.last_time = time.monotonic()
        # A worker killed in the middle of a write leaves its temporary file (never half
        # a checkpoint: the rename is atomic); clear them out.
        for stale in self.folder.glob(".*.tmp") if writes else ():
            stale.unlink(missing_ok=True)

    def restore(self, best_score: Score | None, last_path: str | Path) -> None:
        """Continue the policy of a resumed run."""
        self.best_score = tuple(best_score) if best_score is not None else None  # type: ignore[assignment]
        best = self.folder / "best.pt"
        self.best_path = str(best) if self.best_score is not None and best.exists() else None
        self.last_path = str(last_path)

    def after_step(self, *, stopping: bool, finished: bool) -> None:
        """After every optimizer step; ``stopping``: the run ends here (cancelled)."""
        if stopping or (self.every_s and not finished and time.monotonic() - self.last_time >= self.every_s):
            self.save({})

    def after_epoch(self, epoch: int, val: dict[str, float], metrics: dict[str, float], *, finished: bool) -> None:
        """After each evaluation (the end of an epoch, or the end of a run of iterations)."""
        score = (val["accuracy"], -val["loss"]) if val else None
        if score is not None and (self.best_score is None or score > self.best_score):
            self.best_score = score
            self.save(metrics, best=True)
        if finished or (self.every_epochs and epoch % self.every_epochs == 0):
            self.save(metrics)

    def save(self, metrics: dict[str, float], *, best: bool = False) -> str:
        """Write a checkpoint now (``best.pt``, or a periodic ``ckpt-s<step>.pt``)."""
        if not self.writes:
            return ""
        self.recorder.before_checkpoint()
        payload = self.payload(metrics)
        step, epoch = int(payload["training"]["step"]), int(payload["training"]["epoch"])
        path = str(save_atomic(payload, self.folder / ("best.pt" if best else f"ckpt-s{step:08d}.pt")))
        self.recorder.on_checkpoint(CheckpointInfo(path=path, epoch=epoch, step=step, metrics=dict(metrics), is_best=best))
        if best:
            self.best_path = path
            return path
        self.last_path, self.last_time = path, time.monotonic()
        periodic = sorted(self.folder.glob("ckpt-s*.pt"))
        for old in periodic[: max(0, len(periodic) - self.keep)]:
            old.unlink(missing_ok=True)
            self.recorder.on_checkpoint_removed(str(old))
        return path


# -- reading -------------------------------------------------------------------------------


def _numpy_plain_data() -> list[Any]:
    """The numpy globals that a training script's checkpoint holds for plain numbers and
    numeric arrays (``numpy.float64(0.94)``, ``np.arange(3)``): allowed in weights_only
    loads (PyTorch's ``torch.serialization.safe_globals``). Object arrays stay refused:
    torch does not allow their dtype."""
    import numpy as np

    try:
        from numpy._core import multiarray  # numpy 2
    except ImportError:  # numpy 1
        from numpy.core import multiarray  # type: ignore[no-redef]
    dtype_classes = [type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG"]
    return [multiarray.scalar, multiarray._reconstruct, np.ndarray, np.dtype, *dtype_classes]


def read_file(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into a CheckpointError.

    Besides tensors and plain Python values, numpy scalars and numeric arrays load (a
    training script's ``'best_acc': np.float64(0.94)``); nothing that runs code does."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(_numpy_plain_data()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types here; all mean "refused"
        raise CheckpointError(f"{path}: {_explain_refusal(path, err)}") from None
    return data


def _explain_refusal(path: Path, err: Exception) -> str:
    text = str(err)
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        head = b""
    # torch.save writes a ZIP (since 1.6) or, before, a pickle (protocol opcode 0x80).
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):
        kind = "an empty file" if not head else "neither torch.save's ZIP format nor a pickle"
        return f"not a PyTorch checkpoint ({kind}): is it the right file?"
    if head.startswith(b"PK") and "hasRecord" in text:  # a ZIP, but not torch.save's layout
        return ("not a PyTorch checkpoint (a ZIP file, but not one torch.save wrote: a dataset or an "
                "export?): is it the right file?")
    found = _pickle_globals(path)
    globals_named = set(found)
    if any(_runs_code(name) for name in globals_named):
        return (
            "refused: this file holds a pickle that would run code when loaded "
            f"({', '.join(sorted(globals_named)[:3])}); imori loads tensors only and never runs it"
        )
    if any(name.startswith("torch.nn.modules") for name in globals_named) or "torch.nn.modules" in text:
        return (
            "this file holds a whole pickled model (torch.save(model)), which imori will not "
            "unpickle because loading it runs code. Re-save only the weights: load it where "
            "you trust it and run torch.save(model.state_dict(), 'weights.pt'), then give "
            "imori that file with its model name and classes"
        )
    if "ObjectDType" in text:
        return ("refused: an entry is a numpy array of Python objects, not numbers; "
                "save numbers, tensors and strings only")
    if globals_named or "Unsupported global" in text or "weights_only" in text.lower():
        # Name only what weights_only refuses (never OrderedDict, which it allows), and the
        # entry that holds it.
        try:
            culprits = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # noqa: BLE001 - a file torch cannot list: fall back to our scan
            culprits = sorted(n for n in globals_named if n not in _ALLOWED_GLOBALS)
        allowed = {f"{getattr(g, '__module__', '')}.{getattr(g, '__qualname__', '')}" for g in _numpy_plain_data()}
        culprits = [c for c in culprits if c not in allowed and c.replace("numpy._core", "numpy.core") not in allowed]
        where = [f"{c} (under {found[c]!r})" if found.get(c) else c for c in culprits[:3]]
        return (
            f"refused: this file holds Python objects, not only tensors and plain values: "
            f"{', '.join(where) or 'unknown objects'}. Re-save it with plain data only, e.g. "
            "torch.save({'model_state_dict': model.state_dict(), 'args': vars(args)}, path)"
        )
    return f"not a PyTorch checkpoint ({type(err).__name__}: {text.splitlines()[0][:200] if text else 'empty'})"


# Globals that torch's weights_only unpickler allows (named by a pickle, harmless).
_ALLOWED_GLOBALS = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
                    "builtins.set", "builtins.frozenset", "builtins.bytearray", "torch.Size"}


def _pickle_globals(path: Path) -> dict[str, str | None]:
    """Names of the globals a torch (zip) or plain pickle refers to, each with the string
    pushed just before it (usually the dict key that holds it), read without running it."""
    try:
        raw = path.read_bytes()
        if zipfile.is_zipfile(io.BytesIO(raw)):
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                pkl = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                raw = zf.read(pkl) if pkl else b""
        names: dict[str, str | None] = {}
        strings: list[str] = []
        for opcode, arg, _ in pickletools.genops(raw):
            if opcode.name in ("GLOBAL", "INST") and isinstance(arg, str):
                names.setdefault(arg.replace(" ", "."), strings[-1] if strings else None)
            elif opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE") and isinstance(arg, str):
                strings.append(arg)
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.setdefault(f"{strings[-2]}.{strings[-1]}", strings[-3] if len(strings) >= 3 else None)
        return names
    except Exception:  # noqa: BLE001 - garbage in, no names out
        return {}


def load_checkpoint(
    path: str | Path,
    *,
    model: str | None = None,
    classes: list[str] | None = None,
    options: dict[str, Any] | None = None,
    image_size: tuple[int, int] | None = None,
) -> Checkpoint:
    """Load an imori checkpoint or a bare state_dict, safely.

    For a bare state_dict, ``model`` is required and ``classes`` names the outputs
    (default "0", "1", ...); its preprocessing is the model's recipe (seed 000's BGR
    for mynet), so a tutorial's ``cnn.pt`` predicts as the tutorial did.
    """
    data = read_file(path)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        if int(data.get("version", 0)) > FORMAT_VERSION:
            raise CheckpointError(f"{path}: written by a newer imori (format {data['version']}); upgrade imori")
        ckpt = Checkpoint(
            kind="imori",
            model_name=data["model"]["name"],
            model_options=dict(data["model"].get("options") or {}),
            classes=list(data["classes"]),
            preprocessing=dict(data["preprocessing"]),
            state_dict=data["model"]["state_dict"],
            path=str(path),
            config=dict(data.get("config") or {}),
            training=dict(data.get("training") or {}),
            metrics=dict(data.get("metrics") or {}),
            data=dict(data.get("data") or {}),
            tta=[str(v) for v in data.get("tta") or []],
            calibration=dict(data["calibration"]) if data.get("calibration") else None,
        )
        if model and model != ckpt.model_name:
            raise CheckpointError(f"{path}: this checkpoint is a {ckpt.model_name}, not a {model}")
        return ckpt
    state_dict = _as_state_dict(data, path)
    if model is None:
        raise CheckpointError(
            f"{path}: a bare state_dict (as the tutorials save) does not say which model it is: "
            "give the model name (and the class names)"
        )
    return bare_checkpoint(state_dict, model, classes=classes, options=options, image_size=image_size, path=str(path))


def _as_state_dict(data: Any, path: str | Path) -> dict[str, torch.Tensor]:
    if isinstance(data, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "n_averaged"}  # swa_utils.AveragedModel's counter
    if (
        isinstance(data, dict)
        and data
        and all(isinstance(k, str) for k in data)
        and all(isinstance(v, torch.Tensor) for v in data.values())
    ):
        return strip_wrapper_prefixes(data)
    raise CheckpointError(
        f"{path}: not a checkpoint: expected imori's checkpoint or a state_dict "
        f"(a dict of parameter names to tensors), found {type(data).__name__}"
    )


def bare_checkpoint(
    state_dict: dict[str, torch.Tensor],
    model: str,
    *,
    classes: list[str] | None = None,
    options: dict[str, Any] | None = None,
    image_size: tuple[int, int] | None = None,
    path: str | None = None,
) -> Checkpoint:
    """Wrap a tutorial's state_dict as a Checkpoint, checking it fits the model."""
    spec = get_spec(model)
    options = dict(options or {})
    out_features = _output_count(state_dict)
    if classes is None:
        if out_features is None:
            raise CheckpointError(f"{path}: cannot tell the number of classes; give the class names")
        classes = [str(i) for i in range(out_features)]
    if out_features is not None and out_features != len(classes):
        raise CheckpointError(
            f"{path or 'checkpoint'}: its output layer has {out_features} classes, "
            f"but {len(classes)} class names were given"
        )
    prep = spec.default_preprocessing(*(image_size or (None, None)), options=options)
    ckpt = Checkpoint(
        kind="state_dict",
        model_name=model,
        model_options=options,
        classes=list(classes),
        preprocessing=prep.to_dict(),
        state_dict=state_dict,
        path=path,
    )
    try:
        ckpt.build_model()  # proves the weights fit before anyone relies on them
    except CheckpointError:
        raise
    except ImoriError as err:
        raise CheckpointError(f"{path or 'checkpoint'}: {err}") from None
    return ckpt


def _output_count(state_dict: dict[str, torch.Tensor]) -> int | None:
    """The class count: rows of the last 2-D weight (every registry model ends in a Linear)."""
    weights = [v for k, v in state_dict.items() if k.endswith("weight") and v.ndim == 2]
    return int(weights[-1].shape[0]) if weights else None
