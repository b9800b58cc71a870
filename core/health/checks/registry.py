"""The registry of dataset checks: each family registers its function by name and by the
stage it runs in, and ``core.health.check`` runs a stage's checks in the order they
registered.

A stage is what a report's ``checks`` lists once it ran: ``images`` (the cheap checks, run
at import) and ``features`` (the pretrained-feature checks, asked for). A new check is one
module of ``core.health.checks`` with ``@register("name")`` on a function
``(images, progress) -> (findings, notes)``, imported by ``core.health.check``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.health.report import Finding, Progress

if TYPE_CHECKING:
    from core.health.dataset import Images

#: The stages, in the order they run.
STAGES = ("images", "features")

CheckFunction = Callable[["Images", "Progress | None"], tuple[list[Finding], list[str]]]


@dataclass(frozen=True)
class Check:
    """A registered check: its name, its stage, and the function that runs it."""

    name: str
    stage: str
    run: CheckFunction


CHECKS: dict[str, Check] = {}


def register(name: str, *, stage: str | None = None) -> Callable[[CheckFunction], CheckFunction]:
    """Register the decorated function as check ``name`` of ``stage`` (by default the
    stage of the same name)."""
    stage = stage or name
    if stage not in STAGES:
        raise ValueError(f"check {name!r}: no stage {stage!r} (the stages: {', '.join(STAGES)})")

    def add(function: CheckFunction) -> CheckFunction:
        if name in CHECKS:
            raise ValueError(f"a check named {name!r} is registered already")
        CHECKS[name] = Check(name, stage, function)
        return function

    return add


def get_check(name: str) -> Check:
    """The check registered as ``name``; ValueError for an unknown one."""
    try:
        return CHECKS[name]
    except KeyError:
        raise ValueError(f"no dataset check {name!r} (the checks: {', '.join(CHECKS)})") from None


def checks_of(stage: str) -> list[Check]:
    """The checks of ``stage``, in the order they registered."""
    return [check for check in CHECKS.values() if check.stage == stage]


def run_stage(stage: str, images: "Images", progress: Progress | None = None) -> tuple[list[Finding], list[str]]:
    """Every check of ``stage`` over ``images``: their findings and notes, one after another."""
    findings: list[Finding] = []
    notes: list[str] = []
    for check in checks_of(stage):
        found, said = check.run(images, progress)
        findings += found
        notes += said
    return findings, notes
