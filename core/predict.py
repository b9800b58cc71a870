"""Prediction and evaluation with a checkpoint: the recorded preprocessing, eval mode,
no gradients, probabilities of every class and the top k.

``Predictor`` loads a model once (the dashboard caches it) and answers single images in
milliseconds; ``evaluate`` runs a whole split and builds the confusion matrix, from which
the per-class precision, recall, F1 and the balanced accuracy are computed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from core.checkpoint import Checkpoint, load_checkpoint
from core.data.preprocess import Preprocessing, open_image
from core.errors import DatasetError, ImoriError
from core.metrics import balanced_accuracy, class_metrics

ImageInput = Any  # a path, raw bytes, a file object or a PIL image


@dataclass
class Prediction:
    source: str
    probabilities: dict[str, float]  # every class, in class order
    top: list[tuple[str, float]]  # the k most likely, most likely first
    error: str | None = None  # set (and the rest empty) when the image could not be read

    @property
    def label(self) -> str | None:
        return self.top[0][0] if self.top else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "label": self.label,
            "top": [{"class": c, "probability": p} for c, p in self.top],
            "probabilities": self.probabilities,
            "error": self.error,
        }


class Predictor:
    """A checkpoint's model, ready to classify images."""

    def __init__(self, checkpoint: Checkpoint | str | Path, *, device: str = "cpu", **bare: Any) -> None:
        """``bare``: ``model=``, ``classes=``, ``options=`` for a tutorial's bare state_dict."""
        self.checkpoint = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, **bare)
        from core.models import get_spec

        self.device = torch.device(device)
        self.classes = list(self.checkpoint.classes)
        self.preprocessing = Preprocessing.from_dict(self.checkpoint.preprocessing)
        self.output = get_spec(self.checkpoint.model_name).output
        self.model = self.checkpoint.build_model().to(self.device).eval()

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalised ``N x C x H x W`` floats -> ``N x classes`` probabilities."""
        out = self.model(batch.to(self.device)).float()
        probs = out.exp() if self.output == "log_probs" else out.softmax(dim=1)
        return probs.cpu()

    def predict(self, images: Iterable[ImageInput], top_k: int = 5, names: Iterable[str] | None = None) -> list[Prediction]:
        """Classify images; an unreadable one gets a Prediction with ``error`` set."""
        images = list(images)
        names = list(names) if names is not None else [_name(img, i) for i, img in enumerate(images)]
        tensors: list[torch.Tensor] = []
        results: list[Prediction | None] = []
        for image, name in zip(images, names):
            try:
                pil = image if hasattr(image, "mode") and hasattr(image, "size") else open_image(_source(image))
                tensors.append(self.preprocessing.to_uint8(pil))
                results.append(None)
            except ImoriError as err:
                results.append(Prediction(source=name, probabilities={}, top=[], error=str(err)))
        if tensors:
            probs = self.probabilities(self.preprocessing.normalize(torch.stack(tensors)))
        k = max(1, min(top_k, len(self.classes)))
        rows = iter(probs.tolist() if tensors else [])
        out: list[Prediction] = []
        for result, name in zip(results, names):
            if result is not None:
                out.append(result)
                continue
            row = next(rows)
            ranked = sorted(range(len(row)), key=lambda i: row[i], reverse=True)[:k]
            out.append(
                Prediction(
                    source=name,
                    probabilities={c: p for c, p in zip(self.classes, row)},
                    top=[(self.classes[i], row[i]) for i in ranked],
                )
            )
        return out


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
    from core.data import load_dataset

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
    for start in range(0, len(part), batch_size):
        x = predictor.preprocessing.normalize(part.images[start : start + batch_size])
        truth = to_ckpt[part.labels[start : start + batch_size]]
        probs = predictor.probabilities(x)
        conf, pred = probs.max(dim=1)
        confusion += torch.bincount(truth * n_cls + pred, minlength=n_cls * n_cls).view(n_cls, n_cls)
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
    )
