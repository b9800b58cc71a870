"""A model summary: every parameter's name, shape and count (seed 002's ``named_parameters``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module whose parameter names are the state_dict keys.

    ``torch.compile`` and ``DataParallel`` wrap a model and prefix its names
    (``_orig_mod.``, ``module.``); heads, summaries and checkpoints use the bare names.
    """
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, wrappers):
            inner = model.module
        if not isinstance(inner, nn.Module):
            return model
        model = inner


class ParamRow(NamedTuple):
    name: str
    shape: tuple[int, ...]
    numel: int
    trainable: bool


@dataclass(frozen=True)
class ModelSummary:
    """Parameters of a model, one row each, with totals."""

    rows: tuple[ParamRow, ...]

    @property
    def total(self) -> int:
        return sum(row.numel for row in self.rows)

    @property
    def trainable(self) -> int:
        return sum(row.numel for row in self.rows if row.trainable)

    @property
    def frozen(self) -> int:
        return self.total - self.trainable

    def as_text(self) -> str:
        """A plain-text table, one parameter a line, then the totals."""
        header = ("parameter", "shape", "count", "trainable")
        lines = [
            (
                row.name,
                "x".join(map(str, row.shape)) or "scalar",
                f"{row.numel:,}",
                "yes" if row.trainable else "no",
            )
            for row in self.rows
        ]
        widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(4)]

        def fmt(cells: tuple[str, ...]) -> str:
            name, shape, count, trainable = cells
            return (
                f"{name:<{widths[0]}}  {shape:<{widths[1]}}  {count:>{widths[2]}}  {trainable}"
            ).rstrip()

        out = [fmt(header), fmt(tuple("-" * w for w in widths))]
        out += [fmt(cells) for cells in lines]
        out.append(
            f"total {self.total:,} parameters: {self.trainable:,} trainable, {self.frozen:,} frozen"
        )
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (JSON-able), e.g. for a run record."""
        return {
            "rows": [
                {"name": r.name, "shape": list(r.shape), "numel": r.numel, "trainable": r.trainable}
                for r in self.rows
            ],
            "total": self.total,
            "trainable": self.trainable,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSummary":
        return cls(
            tuple(
                ParamRow(
                    str(r["name"]),
                    tuple(int(s) for s in r["shape"]),
                    int(r["numel"]),
                    bool(r["trainable"]),
                )
                for r in data["rows"]
            )
        )


def summarize(model: nn.Module) -> ModelSummary:
    """Every parameter of ``model`` (by state_dict name), its shape, size and trainability."""
    model = unwrap_model(model)
    return ModelSummary(
        tuple(
            ParamRow(name, tuple(p.shape), p.numel(), p.requires_grad)
            for name, p in model.named_parameters()
        )
    )
