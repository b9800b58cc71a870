"""Prediction and evaluation with a checkpoint: the recorded preprocessing, eval mode,
no gradients, probabilities of every class and the top k.

``Predictor`` loads a model once (the dashboard caches it) and answers single images in
milliseconds; ``evaluate`` runs a whole split and builds the confusion matrix, from which
the per-class precision, recall, F1 and the balanced accuracy are computed.

``input_warnings`` compares an image with the checkpoint's training images (its ``data``:
mean brightness and spread, polarity, original sizes) and says in plain words when the
model is likely to be wrong for that reason; ``Predictor.predict`` attaches them to each
``Prediction``. ``Predictor.model_input`` and ``to_picture`` show what the model receives,
``invert_image`` turns dark-on-light into light-on-dark.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from core.records import checkpoints as checkpoint_records
from core.checkpoint import Checkpoint, load_checkpoint
from core.data.images import open_image, original_size
from core.data.preprocess import HIGH_DEPTH_MODES, Preprocessing, to_mode
from core.data.registry import load_dataset
from core.errors import ConfigError, DatasetError, ImoriError
from core.metrics import balanced_accuracy, class_metrics
from core.data.augment import tta_probabilities
from core.models.specs import get_spec
from core.records import queries

ImageInput = Any  # a path, raw bytes, a file object or a PIL image


def to_probabilities(scores: torch.Tensor, output: str, temperature: float = 1.0) -> torch.Tensor:
    """A model's outputs (logits, or log-probabilities for ``output == "log_probs"``) as
    probabilities at ``temperature``: ``softmax(scores / T)`` (log-probabilities are
    logits up to a constant, so the same formula holds)."""
    scores = scores.float()
    if temperature == 1.0:
        return scores.exp() if output == "log_probs" else scores.softmax(dim=1)
    return (scores / temperature).softmax(dim=1)


NOT_SURE = "not sure"


def check_min_confidence(value: float) -> float:
    """A confidence floor in [0, 1): below it the answer is "not sure". ConfigError otherwise."""
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"min_confidence is a probability in [0, 1) (0.8 for 80 %), not {value:g}")
    return value


def answer_rule(min_confidence: float = 0.0) -> dict[str, Any]:
    """How imori turns probabilities into an answer, as every export's preprocess.json
    describes it (``Prediction.answer`` applies it)."""
    return {"min_confidence": check_min_confidence(min_confidence), "not_sure": NOT_SURE,
            "rule": f"the label (by the thresholds when there are some, else the likeliest class) when its "
                    f"probability is at least min_confidence, else {NOT_SURE!r}"}


@dataclass
class Prediction:
    source: str
    probabilities: dict[str, float]  # every class, in class order
    top: list[tuple[str, float]]  # the k most likely, most likely first
    error: str | None = None  # set (and the rest empty) when the image could not be read
    warnings: list[str] = field(default_factory=list)  # how it differs from the training images
    decision: str | None = None  # the answer by the checkpoint's operating point, when it has one
    sure: bool = True  # False when the label's probability is below the predictor's min_confidence
    seen: torch.Tensor | None = field(default=None, repr=False)  # uint8 C x H x W: the model's input, unnormalised

    @property
    def label(self) -> str | None:
        """The class: by the operating point when the checkpoint has one, else the likeliest."""
        return self.decision or (self.top[0][0] if self.top else None)

    @property
    def answer(self) -> str | None:
        """What imori answers: the label, or ``NOT_SURE`` when its probability is below the
        predictor's ``min_confidence`` (the same rule in the dashboard, the CLI and exports)."""
        return self.label if self.sure or self.label is None else NOT_SURE

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "answer": self.answer,
            "label": self.label,
            "sure": self.sure,
            "top": [{"class": c, "probability": p} for c, p in self.top],
            "probabilities": self.probabilities,
            "error": self.error,
            "warnings": list(self.warnings),
        }


class Predictor:
    """A checkpoint's model, ready to classify images."""

    def __init__(self, checkpoint: Checkpoint | str | Path, *, device: str = "cpu", temperature: float | None = None,
                 min_confidence: float = 0.0, tta: bool = True, **bare: Any) -> None:
        """``bare``: ``model=``, ``classes=``, ``options=`` for a tutorial's bare state_dict.
        ``temperature`` divides the model's scores before the softmax (``core.calibration``);
        by default the one recorded for this checkpoint's file, else 1 (as trained).
        ``min_confidence`` (0..1): below it, the answer is "not sure" (``answer_rule``).
        ``tta``: average over the test-time views the checkpoint records (``views``), if any;
        False predicts with the single model. Raises ConfigError for a min_confidence outside [0, 1)."""
        self.min_confidence = check_min_confidence(min_confidence)
        self.checkpoint = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, **bare)
        # The file's own calibration; else (calibrated before files carried it) its run's record.
        self.calibration = None if temperature is not None else (
            self.checkpoint.calibration or (None if isinstance(checkpoint, Checkpoint) else recorded_calibration(checkpoint)))
        self.temperature = float(temperature if temperature is not None else
                                 (self.calibration or {}).get("temperature", 1.0))
        # class -> {"threshold", ...}: an operating point (core.calibration.operating_point)
        self.thresholds: dict[str, dict[str, float]] = dict((self.calibration or {}).get("thresholds") or {})

        self.device = torch.device(device)
        self.classes = list(self.checkpoint.classes)
        self.preprocessing = Preprocessing.from_dict(self.checkpoint.preprocessing)
        self.output = get_spec(self.checkpoint.model_name).output
        self.model = self.checkpoint.build_model().to(self.device).eval()
        # Test-time augmentation: the views the run evaluated with (["identity"]: the single model).
        self.views = list(self.checkpoint.tta) if tta and self.checkpoint.tta else ["identity"]

    def decide(self, probabilities: dict[str, float]) -> str:
        """The answer for one image: a class with an operating point wins when its
        probability reaches its threshold; otherwise the likeliest class without one (for
        two classes: the other class), else the likeliest."""
        for cls, point in self.thresholds.items():
            if probabilities.get(cls, 0.0) >= point["threshold"]:
                return cls
        rest = {c: p for c, p in probabilities.items() if c not in self.thresholds}
        return max(rest or probabilities, key=(rest or probabilities).get)

    @torch.inference_mode()
    def scores(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalised ``N x C x H x W`` floats -> ``N x classes`` scores on the device: the
        model's outputs, or with test-time augmentation the log of the mean of the views'
        softmax probabilities (scores too: their softmax is that mean, and a temperature
        divides them as it divides a single model's)."""
        batch = batch.to(self.device)
        if len(self.views) > 1:
            return tta_probabilities(self.model, batch, self.views, self.output).clamp_min(1e-12).log()
        return self.model(batch)

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalised ``N x C x H x W`` floats -> ``N x classes`` probabilities (the one place
        scores become probabilities: temperature and test-time augmentation included)."""
        return to_probabilities(self.scores(batch), self.output, self.temperature).cpu()

    def model_input(self, image: Any) -> torch.Tensor:
        """A decoded Pillow image as the model receives it: normalised ``1 x C x H x W``."""
        return self.preprocessing(image)

    def predict(self, images: Iterable[ImageInput], top_k: int = 5, names: Iterable[str] | None = None,
                min_confidence: float | None = None) -> list[Prediction]:
        """Classify images; an unreadable one gets a Prediction with ``error`` set. Each
        one's ``warnings`` say how it differs from the training images (``input_warnings``),
        ``seen`` holds what the model received (each image is preprocessed once), and
        ``sure`` says whether its label reaches ``min_confidence`` (default: the predictor's)."""
        floor = self.min_confidence if min_confidence is None else check_min_confidence(min_confidence)
        images = list(images)
        names = list(names) if names is not None else [_name(img, i) for i, img in enumerate(images)]
        tensors: list[torch.Tensor] = []
        results: list[Prediction | None] = []
        notes: list[list[str]] = []
        for image, name in zip(images, names):
            try:
                pil = image if hasattr(image, "mode") and hasattr(image, "size") else open_image(_source(image), fit=self.preprocessing.size)
                tensor = self.preprocessing.to_uint8(pil)
                tensors.append(tensor)
                notes.append(input_warnings(self.checkpoint.data, pil, self.preprocessing, name=name, tensor=tensor))
                results.append(None)
            except ImoriError as err:
                results.append(Prediction(source=name, probabilities={}, top=[], error=str(err)))
        if tensors:
            probs = self.probabilities(self.preprocessing.normalize(torch.stack(tensors)))
        k = max(1, min(top_k, len(self.classes)))
        rows = iter(probs.tolist() if tensors else [])
        warned = iter(notes)
        seen = iter(tensors)
        out: list[Prediction] = []
        for result, name in zip(results, names):
            if result is not None:
                out.append(result)
                continue
            row = next(rows)
            ranked = sorted(range(len(row)), key=lambda i: row[i], reverse=True)[:k]
            probabilities = dict(zip(self.classes, row))
            decision = self.decide(probabilities) if self.thresholds else None
            label = decision or self.classes[ranked[0]]
            out.append(
                Prediction(
                    source=name,
                    probabilities=probabilities,
                    top=[(self.classes[i], row[i]) for i in ranked],
                    warnings=next(warned),
                    decision=decision,
                    sure=probabilities[label] >= floor,
                    seen=next(seen),
                )
            )
        return out


def predictions_csv(predictions: Sequence[Prediction], classes: Sequence[str]) -> str:
    """CSV text, one row per prediction (DIGITS' Classify Many): file, class (the answer:
    "not sure" below the predictor's min_confidence), confidence,
    each class's probability (in output order), error (for an image that did not read)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["file", "class", "confidence", *classes, "error"])
    for p in predictions:
        if p.error:
            writer.writerow([p.source, "", "", *([""] * len(classes)), p.error])
        else:
            writer.writerow([p.source, p.answer, f"{p.probabilities[p.label]:.6f}",
                             *(f"{p.probabilities[c]:.6f}" for c in classes), ""])
    return out.getvalue()


def recorded_calibration(path: str | Path) -> dict[str, Any] | None:
    """The calibration the records hold for the checkpoint at ``path``, if any (none when
    the records cannot be read: predicting never needs them)."""
    try:
        return checkpoint_records.calibration_of(str(Path(path).expanduser().resolve()))
    except Exception:  # noqa: BLE001 - no database, another schema: predict as trained
        return None


# -- how an image differs from the training images --------------------------------------------

# An upload this many standard deviations from the training images' mean brightness is far.
BRIGHTNESS_SDS = 2.0
# The spread used is at least this (a set of near-identical images has almost none).
MIN_BRIGHTNESS_STD = 0.02
# An original under 1/SIZE_FACTOR or over SIZE_FACTOR times the training images' median
# size (side length: the square root of width x height) is far from them.
SIZE_FACTOR = 4.0


def brightness(image: Any, preprocessing: Preprocessing | None = None, tensor: torch.Tensor | None = None) -> float:
    """Mean brightness 0..1, measured as ``core.train.training_data_facts`` measures the
    training images: over the model's input (its channels, at its size) when
    ``preprocessing`` is given, otherwise over the image in grayscale."""
    if tensor is None:
        if preprocessing is not None:
            tensor = preprocessing.to_uint8(image)
        else:
            import numpy as np

            tensor = torch.from_numpy(np.array(to_mode(image, "L"), dtype=np.uint8))
    return float(tensor.float().mean()) / 255.0 if tensor.numel() else 0.0


def median_size(sizes: dict[str, Any]) -> tuple[int, int] | None:
    """The median of ``{"WxH": count}`` by side length (counted images), as ``(w, h)``."""
    parsed: list[tuple[float, int, int, int]] = []
    for key, count in (sizes or {}).items():
        try:
            w, h = (int(v) for v in str(key).lower().split("x"))
            n = int(count)
        except (TypeError, ValueError):
            continue  # "other" and anything unreadable
        if w > 0 and h > 0 and n > 0:
            parsed.append((math.sqrt(w * h), w, h, n))
    if not parsed:
        return None
    parsed.sort()
    middle = (sum(n for *_, n in parsed) + 1) // 2
    seen = 0
    for _, w, h, n in parsed:
        seen += n
        if seen >= middle:
            return w, h
    return parsed[-1][1], parsed[-1][2]


def input_warnings(
    data: dict[str, Any] | None,
    image: Any,
    preprocessing: Preprocessing | None = None,
    *,
    name: str | None = None,
    tensor: torch.Tensor | None = None,
) -> list[str]:
    """How ``image`` (a decoded Pillow image) differs from a checkpoint's training images,
    in plain words; empty when nothing is known (a bare state_dict's ``data`` is ``{}``)
    or nothing is far.

    - brightness: the image's mean brightness more than ``BRIGHTNESS_SDS`` standard
      deviations from the training images' (``brightness_mean`` / ``brightness_std``);
    - polarity: the same, and on the other side of 0.5 (a light background where the
      training images are dark, or the reverse): then this one warning, not both;
    - size: the original under a quarter or over four times the training images' median
      size (``sizes``), by side length.

    ``preprocessing``: the model's, so brightness is measured on what the model receives
    (``tensor``: that input already made, as ``Preprocessing.to_uint8`` gives it).
    """
    data = data or {}
    what = name or "this image"
    out: list[str] = []
    mean, std = data.get("brightness_mean"), data.get("brightness_std")
    if mean is not None and std is not None:
        mean, spread = float(mean), max(float(std), MIN_BRIGHTNESS_STD)
        value = brightness(image, preprocessing, tensor)
        if abs(value - mean) > BRIGHTNESS_SDS * spread:
            usual = f"{mean:.2f} ± {float(std):.2f}"
            if (mean < 0.5) != (value < 0.5):
                if mean < 0.5:
                    # The example fits a grayscale model (digits, MNIST); a photo model gets none.
                    example = (", e.g. dark ink on light paper for a model trained on light strokes on a dark "
                               "background" if getattr(preprocessing, "channels", 1) == 1 else "")
                    out.append(
                        f"{what} looks inverted: it is mostly light (mean brightness {value:.2f}) where the training "
                        f"images are mostly dark ({usual}){example}. Try inverting it."
                    )
                else:
                    out.append(
                        f"{what} looks inverted: it is mostly dark (mean brightness {value:.2f}) where the training "
                        f"images are mostly light ({usual}). Try inverting it."
                    )
            else:
                side = "brighter" if value > mean else "darker"
                out.append(
                    f"{what} is much {side} than the training images (mean brightness {value:.2f}, theirs "
                    f"{usual}): the prediction may be unreliable."
                )
    usual_size = median_size(data.get("sizes") or {})
    if usual_size is not None and hasattr(image, "size"):
        w, h = original_size(image) if hasattr(image, "info") else image.size  # as stored, if decoded smaller
        ratio = math.sqrt(w * h) / math.sqrt(usual_size[0] * usual_size[1])
        typical = f"{usual_size[0]}x{usual_size[1]}"
        if ratio > SIZE_FACTOR:
            out.append(
                f"{what} is {w}x{h}, {ratio:.0f} times the training images' usual size ({typical}): shrunk to the "
                f"model's input, fine detail is lost and the subject may not be framed as in training."
            )
        elif ratio < 1 / SIZE_FACTOR:
            out.append(
                f"{what} is {w}x{h}, far smaller than the training images' usual size ({typical}): enlarged to the "
                f"model's input, it is blurred."
            )
    return out


def invert_image(image: Any) -> Any:
    """Light-on-dark from dark-on-light (and the reverse): the negative, as grayscale or
    RGB (transparency composited on white first, as everywhere else)."""
    from PIL import ImageOps

    mode = "L" if image.mode in ("1", "L", "LA") or image.mode in HIGH_DEPTH_MODES else "RGB"
    return ImageOps.invert(to_mode(image, mode))


def to_picture(preprocessing: Preprocessing, x: torch.Tensor) -> torch.Tensor:
    """A normalised ``[1 x] C x H x W`` model input back to ``uint8 C x H x W`` (the
    normalisation undone; channels still in the model's order, RGB or BGR)."""
    if x.dim() == 4:
        x = x[0]
    x = x.detach().float().cpu()
    mean = torch.tensor(preprocessing.mean, dtype=x.dtype).view(-1, 1, 1)
    std = torch.tensor(preprocessing.std, dtype=x.dtype).view(-1, 1, 1)
    return (x * std + mean).mul(255.0).round().clamp(0, 255).to(torch.uint8)


def _source(image: ImageInput):
    if isinstance(image, (str, Path, bytes)):
        return image
    if hasattr(image, "read"):
        return io.BytesIO(image.read())
    raise DatasetError(f"cannot read an image from a {type(image).__name__}")


def _name(image: ImageInput, index: int) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    return getattr(image, "name", None) or f"image {index + 1}"


@dataclass
class Evaluation:
    """A checkpoint's results on one split, in plain values (``to_dict`` is what
    ``imori evaluate --json`` prints and the evaluations table stores).

    ``per_class`` is each class's recall; ``class_metrics`` adds precision, F1 and support
    (a class never predicted has precision 0: scikit-learn's ``zero_division=0``);
    ``balanced_accuracy`` is the mean of the per-class recalls, scikit-learn's
    ``balanced_accuracy_score`` ("the average of recall obtained on each class").
    """

    dataset: str
    split: str
    count: int
    accuracy: float
    classes: list[str]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    per_class: dict[str, float]  # accuracy (recall) of each class
    misclassified: list[dict[str, Any]] = field(default_factory=list)  # most confident mistakes first
    # class -> {"precision", "recall", "f1", "support"}: core.metrics.class_metrics
    class_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    balanced_accuracy: float | None = None  # mean recall over the classes present: core.metrics.balanced_accuracy
    # Every image of the split, in its order: its true and predicted class indices and the
    # predicted class's probability, so that each cell of the matrix can be opened.
    truth: list[int] = field(default_factory=list)
    predicted: list[int] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)

    def cell(self, true: str, predicted: str) -> list[tuple[int, float]]:
        """The images of a cell of the matrix, as (index in the split, confidence), the
        most confident first."""
        t, p = self.classes.index(true), self.classes.index(predicted)
        found = [(i, c) for i, (a, b, c) in enumerate(zip(self.truth, self.predicted, self.confidence)) if a == t and b == p]
        return sorted(found, key=lambda item: -item[1])

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def evaluate(
    predictor: Predictor,
    dataset: str,
    *,
    split: str = "test",
    data_root: str | None = None,
    batch_size: int = 512,
    max_misclassified: int = 50,
    progress=None,
) -> Evaluation:
    """Run the checkpoint over a dataset split; classes are matched by name.

    The result has the accuracy, the confusion matrix, each class's precision, recall,
    F1 and support (``class_metrics``) and the balanced accuracy (``balanced_accuracy``).
    """
    seed = int(predictor.checkpoint.config.get("seed", 0))  # a flat folder's split depends on it
    data = load_dataset(dataset, predictor.preprocessing, data_root=data_root, seed=seed)
    part = {"test": data.test, "train": data.train}.get(split)
    if part is None:
        raise DatasetError(f"split must be 'test' or 'train', not {split!r}")
    if len(part) == 0:
        raise DatasetError(f"{dataset} has no images in its {split} split")
    missing = [c for c in data.classes if c not in predictor.classes]
    if missing:
        raise DatasetError(
            f"{dataset} has classes this checkpoint does not know: {', '.join(missing[:5])} "
            f"(it knows {', '.join(predictor.classes[:10])})"
        )
    # Dataset label -> checkpoint class index.
    to_ckpt = torch.tensor([predictor.classes.index(c) for c in data.classes])
    n_cls = len(predictor.classes)
    confusion = torch.zeros(n_cls, n_cls, dtype=torch.long)
    mistakes: list[tuple[float, int, int, int]] = []
    every: tuple[list[int], list[int], list[float]] = ([], [], [])
    for start in range(0, len(part), batch_size):
        x = predictor.preprocessing.normalize(part.images[start : start + batch_size])
        truth = to_ckpt[part.labels[start : start + batch_size]]
        probs = predictor.probabilities(x)
        conf, pred = probs.max(dim=1)
        confusion += torch.bincount(truth * n_cls + pred, minlength=n_cls * n_cls).view(n_cls, n_cls)
        every[0].extend(truth.tolist())
        every[1].extend(pred.tolist())
        every[2].extend(round(c, 5) for c in conf.tolist())
        wrong = (pred != truth).nonzero().flatten().tolist()
        mistakes.extend((conf[i].item(), start + i, truth[i].item(), pred[i].item()) for i in wrong)
        if progress is not None:
            progress(min(start + batch_size, len(part)), len(part))
    total = confusion.sum().item()
    correct = confusion.diag().sum().item()
    per_class = {
        c: (confusion[i, i].item() / confusion[i].sum().item()) for i, c in enumerate(predictor.classes) if confusion[i].sum() > 0
    }
    mistakes.sort(reverse=True)
    matrix = confusion.tolist()
    return Evaluation(
        dataset=dataset,
        split=split,
        count=total,
        accuracy=correct / total,
        classes=list(predictor.classes),
        confusion=matrix,
        per_class=per_class,
        misclassified=[
            {"index": i, "true": predictor.classes[t], "predicted": predictor.classes[p], "confidence": c}
            for c, i, t, p in mistakes[:max_misclassified]
        ],
        class_metrics=class_metrics(matrix, list(predictor.classes)),
        balanced_accuracy=balanced_accuracy(matrix),
        truth=every[0],
        predicted=every[1],
        confidence=every[2],
    )
