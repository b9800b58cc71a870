"""Exporting a checkpoint for use outside imori, each export checked against PyTorch.

Three formats (Ultralytics' and Teachable Machine's anchors; TorchScript is deprecated in
favour of ``torch.export``):

- ``state_dict``: the bare weights the tutorial's own model class loads;
- ``onnx``: ``torch.onnx.export(..., dynamo=True)`` (with ``onnx`` and ``onnxscript``),
  a dynamic batch dimension, opset ``DEFAULT_OPSET`` (or the one asked) and the lowest IR
  version that opset allows, so ONNX Runtime 1.16 and later load it (the exporter alone
  writes IR 10, which they refuse);
- ``pt2``: ``torch.export``'s ExportedProgram (``torch.export.save``);
- ``onnx-int8``: the ``onnx`` export (parity-checked first), quantised by ONNX Runtime's
  static quantisation (``quantize_static``: QDQ, INT8 weights per channel (7-bit range), activations
  calibrated on up to ``CALIBRATION_IMAGES`` training images) and **refused** unless its
  top-1 agrees with the float model's on at least ``INT8_MIN_AGREEMENT`` of the test split
  and its accuracy there is within ``INT8_MAX_ACCURACY_DROP`` of the float model's
  (Ultralytics' INT8 exports have no such guard, and users report silent collapses).

Each writes ``<out>.preprocess.json`` beside it (``core.checkpoint.preprocess_description``:
classes in output order, input size, resize, channels and their order, scale, mean/std,
output kind; with test-time augmentation, its views: an export is the single model, and
its result's ``note`` and the sidecar say so) and, for ``onnx`` and ``pt2``, is run on the checkpoint's own test split
(ONNX Runtime for ONNX) beside the PyTorch model and **refused** unless every image's
top-1 class agrees (images whose top two probabilities are within ``MARGIN`` ignored, as
either answer is right) and no probability differs by more than ``TOLERANCE``. The
figures go into the sidecar (``parity``), so the user sees what was checked. Lobe's
users got different answers from their ONNX files because apps preprocessed differently
from the trainer: the sidecar says exactly what imori does.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from core.checkpoint import export_state_dict, load_checkpoint, preprocess_description, preprocess_path
from core.data.augment import tta_probabilities
from core.data.preprocess import Preprocessing
from core.data.registry import load_dataset
from core.errors import ImoriError
from core.files import atomic_write
from core.models.specs import get_spec
from core.ood import ood_method
from core.predict import answer_rule, calibrated, recorded_calibration, to_probabilities

FORMATS = ("state_dict", "onnx", "pt2", "onnx-int8")
ONNX_FORMATS = ("onnx", "onnx-int8")
TOLERANCE = 1e-4  # largest allowed difference of any probability
MARGIN = 1e-4  # an image whose top two probabilities are closer has no single right answer
MAX_IMAGES = 2000  # the parity check's images at most (the test split's first)
# ONNX Runtime 1.16 (still in many apps) loads IR <= 9 and opset <= 19; the exporter
# implements opset 18 and later (an older one it silently leaves at 18).
DEFAULT_OPSET = 18
MIN_OPSET = 18
# The INT8 guard: top-1 agreement with the float model, and accuracy lost (a fraction).
INT8_MIN_AGREEMENT = 0.99
INT8_MAX_ACCURACY_DROP = 0.01
CALIBRATION_IMAGES = 256  # training images that calibrate the activations' ranges
LATENCY_IMAGES = 32  # images timed one at a time for ms_per_image


class ExportError(ImoriError):
    """An export that cannot be written, or that does not answer as PyTorch does."""


@dataclass
class Parity:
    """How an export answered beside PyTorch: on ``images`` inputs (``source`` says which),
    the share whose top-1 class agreed (``ignored`` near ties left out), and the largest
    difference of any probability."""

    source: str
    images: int
    agreement: float
    ignored: int
    max_difference: float
    tolerance: float = TOLERANCE
    margin: float = MARGIN

    @property
    def passed(self) -> bool:
        return self.agreement == 1.0 and self.max_difference <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def describe(self) -> str:
        return (f"top-1 agreement {100 * self.agreement:.2f} % on {self.images - self.ignored} of {self.images} images "
                f"({self.source}; {self.ignored} near ties ignored), largest probability difference "
                f"{self.max_difference:.2e} (allowed {self.tolerance:g})")


@dataclass
class Int8Check:
    """How an INT8 export answered beside its float ONNX model on ``images`` test images
    (``source``): top-1 ``agreement`` (a fraction), both models' accuracy (fractions, None
    without labels), the file's ``bytes`` (and the float file's) and its ``ms_per_image``
    (ONNX Runtime on the CPU, one image at a time, median)."""

    source: str
    images: int
    agreement: float
    float_accuracy: float
    int8_accuracy: float
    bytes: int
    float_bytes: int
    ms_per_image: float
    calibration_images: int
    min_agreement: float = INT8_MIN_AGREEMENT
    max_accuracy_drop: float = INT8_MAX_ACCURACY_DROP

    @property
    def passed(self) -> bool:
        return (self.agreement >= self.min_agreement
                and self.int8_accuracy >= self.float_accuracy - self.max_accuracy_drop - 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def describe(self) -> str:
        return (f"INT8 top-1 agreement with the float model {100 * self.agreement:.2f} % (at least "
                f"{100 * self.min_agreement:g} % needed) on {self.images} images ({self.source}); accuracy "
                f"{100 * self.float_accuracy:.2f} % float, {100 * self.int8_accuracy:.2f} % INT8 (at most "
                f"{100 * self.max_accuracy_drop:g} point lost allowed); {self.bytes:,} bytes "
                f"({self.float_bytes / max(self.bytes, 1):.1f}x smaller than float), "
                f"{self.ms_per_image:.2f} ms per image")


@dataclass
class ExportResult:
    path: Path
    sidecar: Path
    format: str
    parity: Parity | None
    # What a user must know about this file, e.g. that it holds the single model of a
    # checkpoint that predicts with test-time augmentation (its sidecar says so too).
    note: str | None = None
    opset: int | None = None  # ONNX only: the file's operator set and IR version
    ir_version: int | None = None
    int8: Int8Check | None = None  # onnx-int8 only: the guard's figures


def tta_note(ckpt: Any) -> str | None:
    """None, or what an export of a checkpoint with test-time augmentation leaves out."""
    if not getattr(ckpt, "tta", None):
        return None
    return (f"this export is the single model: imori predicts with the mean of its probabilities over "
            f"{len(ckpt.tta)} views of each image ({', '.join(ckpt.tta)}), so its answers can differ from this "
            "file's; preprocess.json lists the views under test_time_augmentation")


class ViewAverage(torch.nn.Module):
    """``model`` with test-time augmentation inside: the log of the mean softmax
    probabilities over ``views`` (``core.data.augment``'s names) of each ``N x C x H x W``
    input, so an export answers as ``imori predict`` does (softmax of its scores gives the
    averaged probabilities back). ``output``: what ``model`` returns, "logits" or "log_probs"."""

    def __init__(self, model: torch.nn.Module, views: list[str], output: str) -> None:
        super().__init__()
        self.model, self.views, self.output = model, list(views), output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tta_probabilities(self.model, x, self.views, self.output).clamp_min(1e-12).log()


def parity_inputs(checkpoint: Any, max_images: int = MAX_IMAGES) -> tuple[torch.Tensor, str]:
    """Normalised ``N x C x H x W`` inputs for the check: the checkpoint's test split when
    its dataset is on this machine, else seeded random images of its input size."""
    prep = Preprocessing.from_dict(checkpoint.preprocessing)
    dataset = (checkpoint.config or {}).get("dataset")
    if dataset:
        try:
            test = load_dataset(str(dataset), prep).test
            if len(test):
                return prep.normalize(test.images[:max_images]), f"the test split of {dataset}"
        except ImoriError:
            pass
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, prep.channels, prep.height, prep.width), dtype=torch.uint8, generator=generator)
    return prep.normalize(images), "64 random images (the checkpoint's dataset is not on this machine)"


def compare(reference: torch.Tensor, other: torch.Tensor, source: str) -> Parity:
    """``Parity`` of two ``N x classes`` probability tensors (PyTorch's first)."""
    top2 = reference.topk(min(2, reference.shape[1]), dim=1).values
    tie = (top2[:, 0] - top2[:, -1]) < MARGIN if reference.shape[1] > 1 else torch.zeros(len(reference), dtype=torch.bool)
    agree = reference.argmax(dim=1) == other.argmax(dim=1)
    counted = int((~tie).sum())
    agreement = float(agree[~tie].float().mean()) if counted else 1.0
    return Parity(source=source, images=len(reference), agreement=agreement, ignored=int(tie.sum()),
                  max_difference=float((reference - other).abs().max()) if len(reference) else 0.0)


def export(checkpoint: Any, out: str | Path, fmt: str = "state_dict", *, max_images: int = MAX_IMAGES,
           min_confidence: float = 0.0, progress: Callable[[str], None] | None = None,
           opset: int | None = None) -> ExportResult:
    """Export ``checkpoint`` (a path or a loaded ``Checkpoint``) to ``out`` as ``fmt`` (one
    of ``FORMATS``), with its ``.preprocess.json``; ``onnx`` and ``pt2`` are checked for
    parity first and refused (ExportError, with the figures; nothing left at ``out``)
    when they fail it; ``onnx-int8`` also when it fails the INT8 guard (``Int8Check``), and
    when the checkpoint's dataset is not on this machine. The sidecar's ``answer`` says imori's answer rule ("not sure" below
    ``min_confidence``, ``core.predict.answer_rule``). ``progress(text)`` hears of each stage.
    ``opset`` (ONNX only, default ``DEFAULT_OPSET``) is the operator set written."""
    rule = answer_rule(min_confidence)  # a nonsense floor is refused before any work
    if fmt not in FORMATS:
        raise ExportError(f"export format is one of {', '.join(FORMATS)}, not {fmt!r}")
    if opset is not None and fmt not in ONNX_FORMATS:
        raise ExportError(f"an opset is for ONNX exports only, not {fmt}")
    opset = check_opset(DEFAULT_OPSET if opset is None else opset) if fmt in ONNX_FORMATS else None
    ckpt = checkpoint if hasattr(checkpoint, "state_dict") else load_checkpoint(checkpoint)

    calibration = ckpt.calibration or (None if hasattr(checkpoint, "state_dict") else recorded_calibration(checkpoint))
    out = Path(out)
    if fmt == "state_dict":
        others = _shared_exports(preprocess_path(out), preprocess_description(ckpt))
        path = export_state_dict(ckpt, out)
        if others:  # an ONNX or .pt2 export of this model under this name: still described
            sidecar = preprocess_path(path)
            description = json.loads(sidecar.read_text(encoding="utf-8"))
            description["exports"] = {**others, "state_dict": {"file": path.name}}
            with atomic_write(sidecar, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(description, indent=2) + "\n")
        _describe_answer(preprocess_path(path), calibration, rule, get_spec(ckpt.model_name).output)
        return ExportResult(path, preprocess_path(path), fmt, None, tta_note(ckpt))

    _shared_exports(preprocess_path(out), preprocess_description(ckpt))  # refused before minutes of work
    say = progress or (lambda text: None)
    kind = get_spec(ckpt.model_name).output
    model = ckpt.build_model().eval()
    views = list(ckpt.tta or [])
    if views:  # the views inside the file: it answers as predict does
        model, kind = ViewAverage(model, views, kind).eval(), "log_probs"
    if fmt == "onnx-int8":
        splits = _int8_data(ckpt, max_images)  # refused before minutes of work without the dataset
        inputs, source = splits["test"], splits["source"]
    else:
        inputs, source = parity_inputs(ckpt, max_images)
    say(f"exporting {ckpt.model_name} to {fmt}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.exporting{out.suffix}")  # torch.export wants its .pt2 suffix
    floating = out.with_name(f".{out.stem}.float.exporting.onnx")
    int8 = None
    try:
        with torch.inference_mode():
            reference = to_probabilities(torch.cat([model(b) for b in inputs.split(256)]), kind)
        example = inputs[:2].clone()
        if fmt == "onnx-int8":
            ir_version = _export_onnx(model, example, floating, opset)
            say(f"checking the float model (opset {opset}, IR {ir_version}) with ONNX Runtime on {source}")
            other = _run_onnx(floating, inputs, kind)
            parity = compare(reference, other, source)
            if not parity.passed:
                raise ExportError(f"the float ONNX export does not answer as PyTorch does, so no INT8 copy was made: "
                                  f"{parity.describe()}")
            say(f"quantising to INT8 (calibrated on {len(splits['calibration'])} training images)")
            _quantize(floating, tmp, splits["calibration"])
            say(f"checking the INT8 model against the float one on {source}")
            int8 = int8_check(floating, tmp, inputs, splits["labels"], kind, source, len(splits["calibration"]))
            if not int8.passed:
                raise ExportError(f"the INT8 export loses too much against the float model, so it was not written: "
                                  f"{int8.describe()}; export the float model (--format onnx) instead")
        elif fmt == "onnx":
            ir_version = _export_onnx(model, example, tmp, opset)
            say(f"checking it (opset {opset}, IR {ir_version}) with ONNX Runtime on {source}")
            other = _run_onnx(tmp, inputs, kind)
        else:
            _export_pt2(model, example, tmp)
            say(f"checking it with torch.export.load on {source}")
            other = _run_pt2(tmp, inputs, kind)
        if fmt != "onnx-int8":
            parity = compare(reference, other, source)
            if not parity.passed:
                raise ExportError(f"the {fmt} export does not answer as PyTorch does, so it was not written: "
                                  f"{parity.describe()}")
        tmp.replace(out)
    except ExportError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as err:  # noqa: BLE001 - an exporter's failure, said in one line
        tmp.unlink(missing_ok=True)
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"{ckpt.model_name} cannot be exported to {fmt}: {text}") from err
    finally:
        floating.unlink(missing_ok=True)
    sidecar = preprocess_path(out)
    contract = preprocess_description(ckpt)
    if views:
        contract["output"] = "log_probs"
        contract["test_time_augmentation"]["exported"] = (
            "inside the file: its scores are the log of the mean softmax probabilities over these views of the "
            "image given (softmax gives them back), so it answers as imori predict does; give it the image as is")
    this = {"file": out.name, "parity": parity.to_dict()}
    if fmt in ONNX_FORMATS:
        this.update(input_name="image", output_name="scores", batch="dynamic", opset=opset, ir_version=ir_version)
    if int8 is not None:  # parity: the float model beside PyTorch; these: the INT8 file beside the float one
        this.update({k: v for k, v in int8.to_dict().items() if k != "passed"}, int8_passed=int8.passed,
                    quantization="onnxruntime quantize_static: QDQ, INT8 weights per channel, activations "
                                 "calibrated (MinMax) on training images")
    # The ONNX and .pt2 exports of one checkpoint under one name share their sidecar: it
    # lists each file's own figures under "exports"; the newest also sits at the top.
    exports = {k: v for k, v in _shared_exports(sidecar, contract).items() if k != fmt}
    description = {**contract, "format": fmt, **{k: v for k, v in this.items() if k != "file"},
                   "exports": {**exports, fmt: this}}
    with atomic_write(sidecar, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(description, indent=2) + "\n")
    _describe_answer(sidecar, calibration, rule, get_spec(ckpt.model_name).output)
    note = (f"test-time augmentation is inside the file: {len(views)} views averaged, as imori predict does"
            if views else None)
    if fmt in ONNX_FORMATS:
        return ExportResult(out, sidecar, fmt, parity, note, opset, ir_version, int8)
    return ExportResult(out, sidecar, fmt, parity, note)


def _shared_exports(sidecar: Path, contract: dict[str, Any]) -> dict[str, Any]:
    """The other exports an existing sidecar describes, when they are of a model with the
    same contract (input, classes, output) and their files are still there: this export
    joins them. Raises ExportError when such a file belongs to another model, since
    rewriting the sidecar would leave it described wrongly."""
    try:
        old = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(old, dict):
        return {}
    listed = old.get("exports") or ({old["format"]: {"file": None, "parity": old.get("parity")}}
                                    if old.get("format") in ("onnx", "pt2", "onnx-int8") else {})
    alive = {fmt: entry for fmt, entry in listed.items()
             if isinstance(entry, dict) and entry.get("file") and (sidecar.parent / entry["file"]).is_file()}
    # The temperature is the calibration's, recorded apart from the file: not the contract.
    same = all(old.get(k) == v for k, v in contract.items() if k != "temperature")
    if alive and not same:
        files = ", ".join(entry["file"] for entry in alive.values())
        raise ExportError(f"{sidecar.name} describes {files}, exported from another model: export to another name "
                          "(or remove those files first)")
    return alive if same else {}


def _describe_answer(sidecar: Path, calibration: dict[str, Any] | None, rule: dict[str, Any], output: str) -> None:
    """Say in the sidecar how imori turns the scores into an answer: calibrated
    probabilities ``softmax(scores / temperature)`` (core.calibration) when the checkpoint
    was calibrated, its thresholds, the "not sure" rule (``answer``) and, when the
    checkpoint stores one, the "none of these" threshold with its score's formula
    (``answer.ood``; ``output``: the model's, which picks the score of the exported single model)."""
    description = json.loads(sidecar.read_text(encoding="utf-8"))
    ood = (calibration or {}).get("ood")
    if ood and ood.get("method") == ood_method(output):  # fitted with test-time views: not the exported model's
        rule = answer_rule(rule["min_confidence"], ood)
    description["answer"] = rule
    if calibrated(calibration):
        _add_temperature(description, calibration)
    with atomic_write(sidecar, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(description, indent=2) + "\n")


def _add_temperature(description: dict[str, Any], calibration: dict[str, Any]) -> None:
    description["temperature"] = calibration["temperature"]
    description["probabilities"] = "softmax(scores / temperature): calibrated on the validation split"
    description["calibration"] = {k: calibration.get(k) for k in ("ece_val_before", "ece_val_after", "ece_test_before",
                                                                   "ece_test_after", "bins")}
    if calibration.get("thresholds"):
        description["thresholds"] = calibration["thresholds"]
        description["decision"] = ("a class with a threshold is the answer when its calibrated probability reaches it; "
                                   "otherwise the likeliest class without one")


def check_opset(opset: int) -> int:
    """``opset`` when the exporter can write it, else ExportError saying which it can."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ExportError(f"ONNX opset {opset} cannot be written here: choose {MIN_OPSET} to {newest} "
                          f"(default {DEFAULT_OPSET}, which ONNX Runtime 1.16 and later load)")
    return opset


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, opset: int) -> int:
    """Write ``model`` as ONNX at ``opset`` with the lowest IR version that opset allows
    (the exporter writes IR 10 whatever the opset, and older runtimes refuse it), checked
    by ``onnx.checker``; returns the IR version written."""
    import logging
    import warnings

    import onnx
    from onnx import helper

    batch = torch.export.Dim("batch", min=1, max=4096)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=["image"], output_names=["scores"],
                                        dynamic_shapes=({0: batch},), opset_version=opset, verbose=False)
    finally:
        quiet.setLevel(level)
    proto = program.model_proto
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise ExportError(f"the exporter wrote opset {written}, not the {opset} asked: choose {written} or later")
    proto.ir_version = min(proto.ir_version, helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True))
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(path))
    return proto.ir_version


def _session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run_onnx(path: Path, inputs: torch.Tensor, kind: str) -> torch.Tensor:
    session = _session(path)
    name = session.get_inputs()[0].name
    outputs = [torch.from_numpy(session.run(None, {name: b.numpy()})[0]) for b in inputs.split(256)]
    return to_probabilities(torch.cat(outputs), kind)


def _export_pt2(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def _run_pt2(path: Path, inputs: torch.Tensor, kind: str) -> torch.Tensor:
    loaded = torch.export.load(str(path)).module()
    with torch.inference_mode():
        return to_probabilities(torch.cat([loaded(b) for b in inputs.split(256)]), kind)


def _int8_data(checkpoint: Any, max_images: int) -> dict[str, Any]:
    """The checkpoint's dataset for an INT8 export: normalised test images (``test``, at
    most ``max_images``) with their ``labels``, and up to ``CALIBRATION_IMAGES`` training
    images (``calibration``, a seeded draw). Raises ExportError when the dataset is not on
    this machine: calibration and the guard need real images, random ones would mislead."""
    prep = Preprocessing.from_dict(checkpoint.preprocessing)
    dataset = (checkpoint.config or {}).get("dataset")
    try:
        splits = load_dataset(str(dataset), prep) if dataset else None
    except ImoriError as err:
        raise ExportError(f"an INT8 export calibrates on the training images of {dataset} and checks itself on its test "
                          f"split, but it cannot be loaded here ({err}): export --format onnx instead") from None
    if splits is None or not len(splits.train) or not len(splits.test):
        raise ExportError("an INT8 export needs the checkpoint's dataset (training images to calibrate, a test split to "
                          "check on), and this checkpoint names none that has both: export --format onnx instead")
    count = min(CALIBRATION_IMAGES, len(splits.train))
    chosen = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))[:count]
    test = splits.test.subset(torch.arange(min(max_images, len(splits.test))))
    return {"test": prep.normalize(test.images[:]), "labels": test.labels,
            "calibration": prep.normalize(splits.train.subset(chosen.sort().values).images[:]),
            "source": f"the test split of {dataset}"}


def _quantize(floating: Path, out: Path, calibration: torch.Tensor) -> None:
    """ONNX Runtime's static quantisation of ``floating`` into ``out``: QDQ nodes, INT8
    weights per output channel, activation ranges from ``calibration`` (normalised
    ``N x C x H x W`` floats), fed a batch of one at a time (the reader's contract)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration.split(1))

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"image": batch.numpy()}

    # reduce_range: 7-bit weights. On x86 CPUs without VNNI, ONNX Runtime's int8 kernels can
    # saturate with full-range weights (its quantisation guide says so); on digits, agreement
    # rose from 98.6 % to 100 % with it.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process, printed on every call: we check the result instead
    try:
        quantize_static(str(floating), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def int8_check(floating: Path, quantized: Path, inputs: torch.Tensor, labels: torch.Tensor, kind: str, source: str,
               calibration_images: int) -> Int8Check:
    """``Int8Check`` of ``quantized`` beside ``floating`` (two ONNX files) on normalised
    ``N x C x H x W`` ``inputs`` with their ``N`` int64 ``labels``."""
    import statistics
    import time

    float_top = _run_onnx(floating, inputs, kind).argmax(dim=1)
    int8_top = _run_onnx(quantized, inputs, kind).argmax(dim=1)
    session = _session(quantized)
    timings = []
    for image in inputs[:LATENCY_IMAGES].split(1):
        start = time.perf_counter()
        session.run(None, {"image": image.numpy()})
        timings.append(1000 * (time.perf_counter() - start))
    count = max(len(inputs), 1)
    return Int8Check(source=source, images=len(inputs), agreement=float((float_top == int8_top).sum()) / count,
                     float_accuracy=float((float_top == labels).sum()) / count,
                     int8_accuracy=float((int8_top == labels).sum()) / count, bytes=quantized.stat().st_size,
                     float_bytes=floating.stat().st_size, ms_per_image=statistics.median(timings) if timings else 0.0,
                     calibration_images=calibration_images, min_agreement=INT8_MIN_AGREEMENT,
                     max_accuracy_drop=INT8_MAX_ACCURACY_DROP)
