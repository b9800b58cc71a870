"""Prediction and evaluation with a checkpoint: the recorded preprocessing, eval mode,
no gradients, probabilities of every class and the top k.

``Predictor`` loads a model once (the dashboard caches it) and answers single images in
milliseconds; ``evaluate`` runs a whole split and builds the confusion matrix, from which
the per-class precision, recall, F1 and the balanced accuracy are computed.

``input_warnings`` compares an image with the checkpoint's training images (its ``data``:
mean brightness and spread, polarity, original sizes) and says in plain words when the
model is likely to be wrong for that reason; ``Predictor.predict`` attaches them to each
``Prediction``. It also says when an upload is unlike every training image (colour among
grayscale training images, a far-off shape) and offers inverting only when the inverted
image looks like the training images (its brightness histogram). Every prediction carries
its out-of-distribution score (``core.ood``: the energy score, Liu et al. 2020) and, when
the checkpoint stores the threshold fitted on its validation split (at the end of every
run, and by ``imori calibrate``), answers "none of these" above it (``NONE_OF_THESE``),
beside "not sure" for a low probability. ``Predictor.model_input`` and ``to_picture`` show
what the model receives, ``invert_image`` turns dark-on-light into light-on-dark.
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
from core.ood import ood_method, ood_scores
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


NONE_OF_THESE = "none of these"


def answer_rule(min_confidence: float = 0.0, ood: dict[str, Any] | None = None) -> dict[str, Any]:
    """How imori turns probabilities into an answer, as every export's preprocess.json
    describes it (``Prediction.answer`` applies it). ``ood``: the checkpoint's stored
    "none of these" threshold (``core.ood.ood_reference``), described with its formula so
    a deployment can answer it from the model's scores."""
    rule = {"min_confidence": check_min_confidence(min_confidence), "not_sure": NOT_SURE,
            "rule": f"the label (by the thresholds when there are some, else the likeliest class) when its "
                    f"probability is at least min_confidence, else {NOT_SURE!r}"}
    if ood:
        formula = ("-logsumexp(scores) over the classes (energy score, Liu et al. 2020)" if ood["method"] == "energy"
                   else "minus the largest softmax probability at temperature 1 (Hendrycks and Gimpel 2017)")
        rule["none_of_these"] = NONE_OF_THESE
        rule["ood"] = {"method": ood["method"], "threshold": ood["threshold"], "keep": ood.get("keep"),
                       "images": ood.get("images"), "ood_score": formula}
        rule["rule"] = (f"{NONE_OF_THESE!r} when ood_score is above ood.threshold (fitted to keep "
                        f"{100 * float(ood.get('keep') or 0.95):g} % of the validation images); else " + rule["rule"])
    return rule


UNLIKE = "unlike the training images"  # every warning that an upload is unlike them says so


def operating_point_rule(thresholds: dict[str, dict[str, float]]) -> str:
    """An operating point in words, as every page and command names it: "defective if
    p(defective) ≥ 0.220" (classes joined by "; ", the first reached wins), "" for none."""
    return "; ".join(f"{c} if p({c}) ≥ {p['threshold']:.3f}" for c, p in thresholds.items())


@dataclass
class Prediction:
    source: str
    probabilities: dict[str, float]  # every class, in class order
    top: list[tuple[str, float]]  # the k most likely, most likely first
    error: str | None = None  # set (and the rest empty) when the image could not be read
    warnings: list[str] = field(default_factory=list)  # how it differs from the training images
    decision: str | None = None  # the answer by the checkpoint's operating point, when it has one
    # False when the label's probability is below the predictor's min_confidence; None for
    # an image that could not be read (nothing was measured, so nothing to be sure of)
    sure: bool | None = True
    ood_score: float | None = None  # core.ood.ood_scores: higher is stranger
    none_of_these: bool = False  # True when ood_score is above the checkpoint's stored threshold
    seen: torch.Tensor | None = field(default=None, repr=False)  # uint8 C x H x W: the model's input, unnormalised

    @property
    def label(self) -> str | None:
        """The class: by the operating point when the checkpoint has one, else the likeliest."""
        return self.decision or (self.top[0][0] if self.top else None)

    @property
    def answer(self) -> str | None:
        """What imori answers: ``NONE_OF_THESE`` when the image looks like none of the
        classes (``none_of_these``), else the label, or ``NOT_SURE`` when its probability is
        below the predictor's ``min_confidence`` (the same rule in the dashboard, the CLI
        and exports)."""
        if self.label is None:
            return None
        if self.none_of_these:
            return NONE_OF_THESE
        return self.label if self.sure else NOT_SURE

    def __post_init__(self) -> None:
        if self.error:  # an unreadable image has no answer of any kind
            self.sure, self.decision = None, None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "answer": self.answer,
            "label": self.label,
            "sure": self.sure,
            "none_of_these": self.none_of_these,
            "ood_score": self.ood_score,
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
        self.ood_method = ood_method(self.output, len(self.views))
        # The "none of these" threshold (core.ood.ood_reference), stored with the calibration;
        # one fitted by another method (say, before test-time views were recorded) does not apply.
        reference = (self.calibration or {}).get("ood") or {}
        self.ood_reference: dict[str, Any] | None = reference if reference.get("method") == self.ood_method else None

    def ood(self, scores: torch.Tensor) -> torch.Tensor:
        """``core.ood.ood_scores`` of ``scores`` (``N x classes``, from ``scores``) by this
        predictor's method (``ood_method``): ``N`` floats on the CPU, higher is stranger."""
        return ood_scores(scores.cpu(), self.ood_method)

    def none_of_these(self, values: torch.Tensor) -> list[bool]:
        """For ``N`` ``ood`` values: whether each is above the stored threshold (all False
        when the checkpoint stores none)."""
        if not self.ood_reference:
            return [False] * len(values)
        return [v > self.ood_reference["threshold"] for v in values.tolist()]

    def ood_warning(self, name: str) -> str:
        """Why an image was answered "none of these", in words."""
        ref = self.ood_reference or {}
        method = ("energy score (Liu et al. 2020)" if ref.get("method") == "energy"
                  else "top probability (Hendrycks and Gimpel 2017)")
        return (f"{name} looks like none of the classes, so {UNLIKE} as the model sees them: its {method} is beyond "
                f"the threshold that {100 * float(ref.get('keep', 0.95)):g} % of the {ref.get('images', '?')} "
                "validation images stay within. The model has likely never seen anything like it; do not trust "
                "its class.")

    def decide(self, probabilities: dict[str, float]) -> str:
        """The answer for one image: a class with an operating point wins when its
        probability reaches its threshold; otherwise the likeliest class without one (for
        two classes: the other class), else the likeliest."""
        for cls, point in self.thresholds.items():
            if probabilities.get(cls, 0.0) >= point["threshold"]:
                return cls
        rest = {c: p for c, p in probabilities.items() if c not in self.thresholds}
        return max(rest or probabilities, key=(rest or probabilities).get)

    def decide_batch(self, probs: torch.Tensor) -> torch.Tensor:
        """``decide`` for a batch: ``N x classes`` probabilities -> ``N`` class indices."""
        index = {c: i for i, c in enumerate(self.classes)}
        rest = [index[c] for c in self.classes if c not in self.thresholds] or list(range(len(self.classes)))
        decided = torch.tensor(rest)[probs[:, rest].argmax(dim=1)]
        for cls, point in reversed(list(self.thresholds.items())):  # the first class reaching its threshold wins
            decided = torch.where(probs[:, index[cls]] >= point["threshold"], index[cls], decided)
        return decided

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
            scores = self.scores(self.preprocessing.normalize(torch.stack(tensors)))
            probs = to_probabilities(scores, self.output, self.temperature).cpu()
            valid = [n for n, r in zip(names, results) if r is None]
            ood_values = self.ood(scores)
            strange = self.none_of_these(ood_values)
            for note, name, far in zip(notes, valid, strange):
                if far:
                    note.append(self.ood_warning(name))
        k = max(1, min(top_k, len(self.classes)))
        rows = iter(probs.tolist() if tensors else [])
        warned = iter(notes)
        seen = iter(tensors)
        oods = iter(zip(ood_values.tolist(), strange) if tensors else [])
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
            ood_score, none_of_these = next(oods)
            out.append(
                Prediction(
                    source=name,
                    probabilities=probabilities,
                    top=[(self.classes[i], row[i]) for i in ranked],
                    warnings=next(warned),
                    decision=decision,
                    sure=probabilities[label] >= floor,
                    ood_score=ood_score,
                    none_of_these=none_of_these,
                    seen=next(seen),
                )
            )
        return out


def predictions_csv(predictions: Sequence[Prediction], classes: Sequence[str]) -> str:
    """CSV text, one row per prediction (DIGITS' Classify Many): file, class (the answer:
    "none of these" above the stored out-of-distribution threshold, "not sure" below the
    predictor's min_confidence), confidence, each class's probability (in output order),
    none_of_these (true/false), ood_score (``core.ood``: higher is stranger), error (for an
    image that did not read)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["file", "class", "confidence", *classes, "none_of_these", "ood_score", "error"])
    for p in predictions:
        if p.error:
            writer.writerow([p.source, "", "", *([""] * len(classes)), "", "", p.error])
        else:
            writer.writerow([p.source, p.answer, f"{p.probabilities[p.label]:.6f}",
                             *(f"{p.probabilities[c]:.6f}" for c in classes), str(p.none_of_these).lower(),
                             "" if p.ood_score is None else f"{p.ood_score:.6f}", ""])
    return out.getvalue()


def calibrated(calibration: dict[str, Any] | None) -> bool:
    """Whether a stored calibration (``core.calibration``) has a fitted temperature: a
    run's own end stores only its "none of these" threshold there."""
    return bool(calibration) and calibration.get("temperature") is not None


def recorded_calibration(path: str | Path) -> dict[str, Any] | None:
    """The calibration the records hold for the checkpoint at ``path``, if any (none when
    the records cannot be read: predicting never needs them)."""
    try:
        return checkpoint_records.calibration_of(str(Path(path).expanduser().resolve()))
    except Exception:  # noqa: BLE001 - no database, another schema: predict as trained
        return None


# -- how an image differs from the training images --------------------------------------------

# An upload this many standard deviations from the training images' mean brightness is far
# (at 2, one training photo in twenty was called "much darker" than its own set).
BRIGHTNESS_SDS = 3.0
# The spread used is at least this (a set of near-identical images has almost none).
MIN_BRIGHTNESS_STD = 0.02
# An original under 1/SIZE_FACTOR or over SIZE_FACTOR times the training images' median
# size (side length: the square root of width x height) is far from them.
SIZE_FACTOR = 4.0


def brightness(image: Any, preprocessing: Preprocessing | None = None, tensor: torch.Tensor | None = None) -> float:
    """Mean brightness 0..1, measured as ``core.train.training_data_facts`` measures the
    training images: over the model's input (its channels, at its size) when
    ``preprocessing`` is given, otherwise over the image in grayscale."""
    tensor = _model_view(image, preprocessing, tensor)
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


# Hasler and Süsstrunk (2003)'s colourfulness on 0..255: about 15 is "slightly colourful"; a
# grayscale photo stored as RGB (or a JPEG's chroma noise) stays well under it.
COLOURFUL = 15.0
# Pillow modes without colour (a dataset whose images are all of these is grayscale).
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
# The brightness histogram of the model's input: bins over 0..255.
HISTOGRAM_BINS = 16
# Training facts are measured on at most this many training images, evenly spaced.
FACTS_SAMPLE = 256
# Histograms and colourfulness are measured on every k-th pixel, k making the side about this.
MEASURE_SIDE = 64


def _thin(batch: torch.Tensor) -> torch.Tensor:
    """Every k-th row and column of ``... x H x W`` (a view): about ``MEASURE_SIDE`` a side,
    an unbiased sample of the pixels for histograms and colour at a fraction of the cost."""
    k = max(1, min(batch.shape[-2:]) // MEASURE_SIDE)
    return batch[..., ::k, ::k]
# A shape (width / height) more than this many times wider or taller than the training
# images' usual one is far from them.
ASPECT_FACTOR = 2.0
# The inverted image looks like the training images when its histogram is at least this
# many times nearer theirs than the image's own (a natural photo's negative is about as far).
INVERT_RATIO = 3.0


def colourfulness(images: torch.Tensor) -> torch.Tensor:
    """Hasler and Süsstrunk's colourfulness ("Measuring colourfulness in natural images",
    2003) of ``uint8 [N x] 3 x H x W`` images, on the 0..255 scale: ``N`` floats (one for
    a single image); 0 for a gray image, about 15 slightly colourful, 59 quite colourful.
    One-channel images are 0. Measured on about ``MEASURE_SIDE`` x ``MEASURE_SIDE`` pixels."""
    batch = images if images.dim() == 4 else images.unsqueeze(0)
    if batch.shape[1] != 3:
        return torch.zeros(batch.shape[0])
    r, g, b = _thin(batch).float().unbind(dim=1)
    rg, yb = (r - g).flatten(1), (0.5 * (r + g) - b).flatten(1)
    spread = (rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False)).sqrt()
    level = (rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2).sqrt()
    return spread + 0.3 * level


def histograms(images: torch.Tensor) -> torch.Tensor:
    """The brightness histograms of ``uint8 [N x] C x H x W`` images (every channel's
    pixels, about ``MEASURE_SIDE`` x ``MEASURE_SIDE`` of them), ``N x HISTOGRAM_BINS``
    fractions summing to 1."""
    batch = _thin(images if images.dim() == 4 else images.unsqueeze(0))
    n = batch.shape[0]
    bins = batch.reshape(n, -1).long().mul_(HISTOGRAM_BINS).bitwise_right_shift_(8)
    bins += torch.arange(n).unsqueeze(1) * HISTOGRAM_BINS  # one range of bins an image
    counts = torch.bincount(bins.flatten(), minlength=n * HISTOGRAM_BINS).view(n, HISTOGRAM_BINS).float()
    return counts / counts.sum(dim=1, keepdim=True).clamp_min(1)


def histogram_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The earth mover's (Wasserstein-1) distance between brightness histograms over 0..1
    (``[N x] HISTOGRAM_BINS`` each, broadcast): 0 for the same, 1 for all-black against
    all-white; the mean difference of their cumulative sums."""
    return (a.cumsum(dim=-1) - b.cumsum(dim=-1)).abs().sum(dim=-1) / a.shape[-1]


def image_facts(images: Any, modes: dict[str, int] | None = None) -> dict[str, Any]:
    """What ``input_warnings`` compares an upload's look with, measured on the training
    images as the model receives them (``uint8 N x C x H x W``, a tensor or
    ``core.data.cache.DiskImages``; at most ``FACTS_SAMPLE`` of them, evenly spaced):
    ``histogram`` (their mean brightness histogram), ``histogram_distance`` (the 99th
    percentile of one image's distance to it), ``grayscale`` (True when no training image
    has colour: for a one-channel model, from the originals' Pillow ``modes``, None when
    unknown) and, for three channels, ``colourfulness`` (its 99th percentile)."""
    n = len(images)
    if n == 0:
        return {}
    picked = torch.linspace(0, n - 1, min(n, FACTS_SAMPLE)).round().long().unique()
    each, colour = [], []
    for part in picked.split(32):  # a float copy of 32 images at a time, not of them all
        sample = torch.as_tensor(images[part.numpy()]).cpu()  # DiskImages: one read
        each.append(histograms(sample))
        colour.append(colourfulness(sample))
    hists = torch.cat(each)
    mean = hists.mean(dim=0)
    facts: dict[str, Any] = {"histogram": [round(float(v), 5) for v in mean],
                             "histogram_distance": float(histogram_distance(hists, mean).quantile(0.99))}
    if images.shape[1] == 3:
        value = float(torch.cat(colour).quantile(0.99))
        facts.update(colourfulness=value, grayscale=value < COLOURFUL)
    else:
        facts["grayscale"] = set(modes) <= GRAY_MODES if modes else None
    return facts


def upload_colourfulness(image: Any) -> float:
    """The colourfulness (``colourfulness``) of a decoded Pillow image, measured in RGB at
    ``MEASURE_SIDE`` a side (as the training images are), whatever the model's channels."""
    import numpy as np
    from PIL import Image

    size = (MEASURE_SIDE, MEASURE_SIDE)
    rgb = np.array(to_mode(image, "RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)
    return float(colourfulness(torch.from_numpy(rgb).permute(2, 0, 1))[0])


def _model_view(image: Any, preprocessing: Preprocessing | None, tensor: torch.Tensor | None) -> torch.Tensor:
    """The uint8 picture that brightness and histograms are measured on (``brightness``)."""
    if tensor is not None:
        return tensor
    if preprocessing is not None:
        return preprocessing.to_uint8(image)
    import numpy as np

    return torch.from_numpy(np.array(to_mode(image, "L"), dtype=np.uint8))[None]


def looks_inverted(data: dict[str, Any], image: Any, preprocessing: Preprocessing | None = None, *,
                   tensor: torch.Tensor | None = None, colour: float | None = None) -> bool:
    """Whether ``image``'s negative looks like the training images where the image itself
    does not: never for a colour image (``COLOURFUL`` or more); with the training images'
    ``histogram``, when the negative's histogram is ``INVERT_RATIO`` times nearer it than
    the image's (``histogram_distance``); without it (an older checkpoint), when the negative's mean brightness is within 2 x ``BRIGHTNESS_SDS``
    standard deviations of theirs and the image's is not."""
    colour = upload_colourfulness(image) if colour is None else colour
    if colour >= COLOURFUL:
        return False
    view = _model_view(image, preprocessing, tensor)
    if data.get("histogram"):
        usual = torch.tensor(data["histogram"], dtype=torch.float)
        own = histograms(view)[0]  # the negative's histogram is this one reversed
        near, far = float(histogram_distance(own.flip(0), usual)), float(histogram_distance(own, usual))
        return near * INVERT_RATIO <= far
    mean, std = data.get("brightness_mean"), data.get("brightness_std")
    if mean is None or std is None:
        return False
    bound = 2 * BRIGHTNESS_SDS * max(float(std), MIN_BRIGHTNESS_STD)
    value = brightness(image, preprocessing, view)
    return abs((1.0 - value) - float(mean)) <= bound < abs(value - float(mean))


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

    - colour: a colour image (Hasler-Süsstrunk colourfulness ``COLOURFUL`` or more) where
      every training image was grayscale (``grayscale``, from ``image_facts``);
    - brightness: the image's mean brightness more than ``BRIGHTNESS_SDS`` standard
      deviations from the training images' (``brightness_mean`` / ``brightness_std``);
    - polarity: the same, on the other side of 0.5, and the negative looks like the
      training images (``looks_inverted``): then this one warning, with the advice to
      invert, instead of the brightness one;
    - size: the original under a quarter or over four times the training images' median
      size (``sizes``), by side length; shape: its width-to-height ratio over
      ``ASPECT_FACTOR`` times theirs, or under its inverse.

    The colour and shape warnings contain ``UNLIKE``. ``preprocessing``: the model's, so
    brightness is measured on what the model receives (``tensor``: that input already
    made, as ``Preprocessing.to_uint8`` gives it).
    """
    data = data or {}
    what = name or "this image"
    out: list[str] = []
    colour = upload_colourfulness(image) if hasattr(image, "mode") else 0.0
    if data.get("grayscale") and colour >= COLOURFUL:
        out.append(
            f"{what} is a colour image (colourfulness {colour:.0f}) and so {UNLIKE}, which are all grayscale: the "
            f"model never saw anything like it, so its answer says little about this image."
        )
    mean, std = data.get("brightness_mean"), data.get("brightness_std")
    if mean is not None and std is not None:
        mean, spread = float(mean), max(float(std), MIN_BRIGHTNESS_STD)
        view = _model_view(image, preprocessing, tensor)
        value = brightness(image, preprocessing, view)
        if abs(value - mean) > BRIGHTNESS_SDS * spread:
            usual = f"{mean:.2f} ± {float(std):.2f}"
            if (mean < 0.5) != (value < 0.5) and looks_inverted(data, image, preprocessing, tensor=view, colour=colour):
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
        shape = (w / h) / (usual_size[0] / usual_size[1]) if h and usual_size[1] else 1.0
        if shape > ASPECT_FACTOR or shape < 1 / ASPECT_FACTOR:
            out.append(
                f"{what} is {w}x{h}, a shape {UNLIKE} ({typical}): {'wider' if shape > 1 else 'taller'} by "
                f"{max(shape, 1 / shape):.1f} times, it is distorted or cropped to the model's input."
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
    # With the checkpoint's operating point (core.calibration), the same figures as the top
    # class gives above, decided by it: {"rule", "thresholds", "accuracy", "balanced_accuracy",
    # "confusion", "per_class", "class_metrics"}; None when the checkpoint has none.
    operating_point: dict[str, Any] | None = None

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
    F1 and support (``class_metrics``) and the balanced accuracy (``balanced_accuracy``),
    each image scored by its likeliest class; where the checkpoint has an operating point
    (``Predictor.thresholds``), the same figures as decided by it too (``operating_point``).
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
    decided = torch.zeros(n_cls, n_cls, dtype=torch.long)  # by the operating point, if any
    mistakes: list[tuple[float, int, int, int]] = []
    every: tuple[list[int], list[int], list[float]] = ([], [], [])
    for start in range(0, len(part), batch_size):
        x = predictor.preprocessing.normalize(part.images[start : start + batch_size])
        truth = to_ckpt[part.labels[start : start + batch_size]]
        probs = predictor.probabilities(x)
        conf, pred = probs.max(dim=1)
        confusion += torch.bincount(truth * n_cls + pred, minlength=n_cls * n_cls).view(n_cls, n_cls)
        if predictor.thresholds:
            chosen = predictor.decide_batch(probs)
            decided += torch.bincount(truth * n_cls + chosen, minlength=n_cls * n_cls).view(n_cls, n_cls)
        every[0].extend(truth.tolist())
        every[1].extend(pred.tolist())
        every[2].extend(round(c, 5) for c in conf.tolist())
        wrong = (pred != truth).nonzero().flatten().tolist()
        mistakes.extend((conf[i].item(), start + i, truth[i].item(), pred[i].item()) for i in wrong)
        if progress is not None:
            progress(min(start + batch_size, len(part)), len(part))
    total = confusion.sum().item()
    correct = confusion.diag().sum().item()
    per_class = _recalls(confusion, predictor.classes)
    mistakes.sort(reverse=True)
    matrix = confusion.tolist()
    operating = None
    if predictor.thresholds:
        by_point = decided.tolist()
        operating = {"rule": operating_point_rule(predictor.thresholds),
                     "thresholds": {c: float(p["threshold"]) for c, p in predictor.thresholds.items()},
                     "accuracy": decided.diag().sum().item() / total, "balanced_accuracy": balanced_accuracy(by_point),
                     "confusion": by_point, "per_class": _recalls(decided, predictor.classes),
                     "class_metrics": class_metrics(by_point, list(predictor.classes))}
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
        operating_point=operating,
    )


def _recalls(confusion: torch.Tensor, classes: Sequence[str]) -> dict[str, float]:
    """Each class's recall from a confusion matrix (rows: true), for the classes present."""
    return {c: confusion[i, i].item() / confusion[i].sum().item() for i, c in enumerate(classes) if confusion[i].sum() > 0}
