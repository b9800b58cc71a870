"""``diff``: two checkpoints evaluated on the same dataset split, compared image by image
(``core.diff``). Subject: ``"A vs B"``. Params: ``a``, ``b`` (run ids or checkpoint
files), ``dataset`` (default: A's training dataset), ``split`` (default ``test``).
Result: ``core.diff.RunDiff.to_dict()``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from core.data import folders, manifests
from core.data.catalog import resolve
from core.data.registry import load_dataset
from core.diff import RunDiff, Side, compare
from core.errors import ImoriError
from core.jobs.kinds import JobContext
from core.predict import Predictor, evaluate
from core.records import queries
from core.selection import choose_checkpoint


def params(a: str | int, b: str | int, dataset: str | None = None, split: str = "test") -> dict[str, Any]:
    """A diff's params (``dataset`` None: A's training dataset)."""
    return {"a": str(a), "b": str(b), "split": split, **({"dataset": dataset} if dataset else {})}


def subject(a: str | int, b: str | int) -> str:
    """What a diff job is about, as its row names it: ``"3 vs 5"``."""
    return f"{a} vs {b}"


def locate(ref: str | int) -> tuple[str, str, dict[str, Any] | None]:
    """``(checkpoint file, label, the run's settings or None)`` of a run id (its default
    checkpoint, ``core.selection``) or a checkpoint file. ImoriError for an unknown run, a
    run without a checkpoint or a missing file."""
    text = str(ref).strip()
    if text.lstrip("#").isdigit():
        run = queries.get_run(int(text.lstrip("#")))
        choice = choose_checkpoint(run.id)
        if choice.path is None:
            raise ImoriError(choice.reason)
        # an automatic run: the settings its winner trained with, not the nominal ones
        return choice.path, f"#{run.id} {run.name}", queries.trained_settings(run.config, run.search)
    path = Path(text).expanduser()
    if not path.is_file():
        raise ImoriError(f"{text}: neither a run id nor a checkpoint file")
    return str(path), path.name, None


def image_files(dataset: str, names: list[str]) -> list[Path | None]:
    """The file of each image named relative to the dataset's root (None for an image
    without one: a built-in or torchvision set, a ZIP loaded in place)."""
    kind, key = resolve(dataset)
    if kind == "imported":
        root: Path | None = manifests.data_dir(key)
    elif kind == "path" and Path(key).expanduser().is_dir():
        root = folders.unwrap(Path(key).expanduser())
    else:
        root = None
    return [root / name if root is not None and name else None for name in names]


def side(predictor: Predictor, checkpoint: str, label: str, settings: dict[str, Any], dataset: str, split: str,
         progress=None) -> Side:
    """``predictor``'s answers on ``dataset``'s ``split`` (``core.predict.evaluate``),
    each image keyed by the SHA-256 of its file's bytes, or of its decoded uint8 pixels
    (C x H x W) where it has no file."""
    result = evaluate(predictor, dataset, split=split, progress=progress)
    seed = int(predictor.checkpoint.config.get("seed", 0))  # as evaluate drew the split
    data = load_dataset(dataset, predictor.preprocessing, seed=seed)  # decoded once already: from the cache
    part = data.test if split == "test" else data.train
    files = image_files(dataset, part.names) if part.names else [None] * len(part)
    keys, paths = [], []
    for start in range(0, len(part), 512):
        pixels = part.images[start:start + 512].contiguous().numpy()
        for offset, array in enumerate(pixels):
            i = start + offset
            file = files[i]
            if file is not None and file.is_file():
                keys.append(hashlib.sha256(file.read_bytes()).hexdigest())
                paths.append(str(file))
            else:
                keys.append(hashlib.sha256(array.tobytes()).hexdigest())
                paths.append(part.names[i] if part.names else f"{dataset}:{split}/{i}")
    classes = result.classes
    return Side(label=label, checkpoint=checkpoint, keys=keys, paths=paths, truth=[classes[t] for t in result.truth],
                predicted=[classes[p] for p in result.predicted], confidence=list(result.confidence),
                settings=settings)


def diff(a: str | int, b: str | int, *, dataset: str | None = None, split: str = "test", progress=None) -> RunDiff:
    """Evaluate A and B (run ids or checkpoint files) on ``dataset`` (default: A's
    training dataset) and compare them image by image (``core.diff.compare``).
    ``progress(stage, share)`` is told as each side is evaluated. Raises ImoriError
    (DatasetError) for an unknown run or file, an unknown dataset or split, a dataset
    with classes a checkpoint does not know, or two sides with no image in common."""
    if split not in ("test", "train"):
        raise ImoriError(f"split must be 'test' or 'train', not {split!r}")
    report = progress or (lambda stage, share: None)
    sides = []
    for n, ref in enumerate((a, b)):
        path, label, settings = locate(ref)
        report(f"loading {label}", n / 2)
        predictor = Predictor(path)
        settings = settings if settings is not None else dict(predictor.checkpoint.config or {})
        dataset = dataset or str(settings.get("dataset") or "")
        if not dataset:
            raise ImoriError(f"{label} does not say what it was trained on: name a dataset (--dataset)")
        sides.append(side(predictor, path, label, settings, dataset, split,
                          progress=lambda done, total, n=n: report("predicting", (n + done / max(total, 1)) / 2)))
    result = compare(*sides, dataset=dataset, split=split)
    if result.matched == 0:
        raise ImoriError(
            f"A and B share no image of {dataset}'s {split} split: images without a file (a built-in or "
            "torchvision set) are matched by their pixels as each checkpoint's preprocessing decodes them, "
            "and these two preprocess differently; compare them on an imported dataset")
    return result


def run(job: JobContext) -> dict[str, Any]:
    return diff(job.params["a"], job.params["b"], dataset=job.params.get("dataset"),
                split=job.params.get("split", "test"), progress=job.progress).to_dict()
