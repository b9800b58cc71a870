"""The recorder interface: how the training loop talks to the outside world.

The loop announces events (an iteration done, an evaluation done, a checkpoint
written) and asks one question (should I stop?). Listeners implement only the hooks
they care about: the CLI draws progress bars, the worker writes to the database, a
test collects into lists. Every hook of the base class does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunStart:
    """Announced once, before the first iteration (and again when a run resumes)."""

    total_steps: int
    steps_per_epoch: int
    epochs: int
    start_step: int  # 0, or the step a resumed run continues after
    device: str
    classes: list[str]
    train_size: int
    val_size: int
    test_size: int
    model_summary: dict[str, Any]
    environment: dict[str, str]


@dataclass
class StepMetrics:
    step: int  # 1-based, counts optimizer steps over the whole run
    epoch: int  # 1-based
    loss: float
    accuracy: float  # fraction of the batch classified right
    lr: float
    time: float = field(default_factory=time.time)  # wall clock (seconds since the epoch)
    batch_size: int = 0


@dataclass
class EvalMetrics:
    epoch: int
    step: int
    split: str  # "val" or "test"
    loss: float
    accuracy: float
    count: int
    time: float = field(default_factory=time.time)
    balanced_accuracy: float | None = None  # mean per-class recall (classes present in the split)
    # class name -> {"precision", "recall", "f1", "support"} (core.metrics.class_metrics)
    per_class: dict[str, dict[str, float]] | None = None


@dataclass
class CheckpointInfo:
    path: str
    epoch: int
    step: int
    metrics: dict[str, float]
    is_best: bool = False  # the best validation accuracy so far (file best.pt)


@dataclass
class StageProgress:
    """How far a long stage outside the iterations is: decoding a dataset, the frozen
    backbone's features, a health check's features. ``done`` of ``total`` ``unit``
    (``total`` 0: unknown), ``started`` and ``time`` wall clock (seconds since the epoch);
    ``finished`` on the stage's last event."""

    name: str  # what it does, as a sentence's start: "computing the frozen backbone's features"
    done: int
    total: int
    unit: str = "images"
    started: float = field(default_factory=time.time)
    time: float = field(default_factory=time.time)
    finished: bool = False

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the speed measured so far (None until something is done)."""
        elapsed = self.time - self.started
        if self.finished or not self.total or self.done <= 0 or self.done >= self.total or elapsed <= 0:
            return None
        return max(0.0, (self.total - self.done) * elapsed / self.done)

    def describe(self) -> str:
        """One line: "Computing the frozen backbone's features: 1,200 / 2,100 images, about 3 min left"."""
        counts = f"{self.done:,} / {self.total:,} {self.unit}" if self.total else f"{self.done:,} {self.unit}"
        eta = self.eta_seconds
        done = self.finished or (self.total and self.done >= self.total)
        left = "" if done else ", measuring the speed" if eta is None else f", about {about(eta)} left"
        # A sentence's capital, unless it starts with a name (a backbone's: "efficientnet_lite0: ...").
        name = self.name if "_" in self.name.split(" ", 1)[0] else f"{self.name[:1].upper()}{self.name[1:]}"
        return f"{name}: {counts}{left}"


def about(seconds: float) -> str:
    """A rough duration for a person: "40 s", "3 min", "1 h 20 min"."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


@dataclass
class RunEnd:
    status: str  # "succeeded", "cancelled" or "failed"
    step: int
    epoch: int
    error: str | None = None
    # The iterations the run came to plan in all, where that changed after its start (the
    # automatic search fits its schedule to the time left): None keeps RunStart's.
    total_steps: int | None = None


class Recorder:
    """Base listener: every hook does nothing. Subclass and override what you need."""

    def on_start(self, start: RunStart) -> None:
        """Training is about to begin (or resume)."""

    def on_step(self, metrics: StepMetrics) -> None:
        """One optimizer step finished (delivered in order, possibly a few at a time)."""

    def on_eval(self, metrics: EvalMetrics) -> None:
        """An evaluation on the validation or test split finished."""

    def before_checkpoint(self) -> None:
        """A checkpoint is about to be written: raise to prevent it (a run taken over by
        another worker must not write into the folder that worker now uses)."""

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        """A checkpoint file was written (atomically: it is complete)."""

    def on_checkpoint_removed(self, path: str) -> None:
        """An old periodic checkpoint was deleted to respect ``keep_checkpoints``."""

    def on_log(self, message: str) -> None:
        """A line worth showing the user (data report, warnings, resume notes)."""

    def on_stage(self, stage: StageProgress) -> None:
        """A long stage outside the iterations moved (``Stage`` sends these: at its start,
        at most every second or so, and at its end with ``finished``)."""

    def on_search(self, search: dict[str, Any]) -> None:
        """An automatic run's search so far (``core.auto``): its candidates, the winner once
        chosen, and ``progress`` (0 to 1) and ``deadline`` (seconds since the epoch) of the
        whole search. Sent again, whole, each time it changes."""

    def should_stop(self) -> bool:
        """Asked after every iteration: True stops the run, with a checkpoint, as cancelled."""
        return False

    def on_end(self, end: RunEnd) -> None:
        """The run is over, whatever the outcome; flush everything now."""


# The notifications a loop sends (each with one value); ``before_checkpoint`` and
# ``should_stop`` are questions, answered by each recorder in its own way.
EVENTS = ("on_start", "on_step", "on_eval", "on_checkpoint", "on_checkpoint_removed", "on_log", "on_stage", "on_search",
          "on_end")


class Forwarder(Recorder):
    """A recorder that passes every notification on through one method,
    ``forward(event, value)``: the fan-out to several recorders and rank 0's relay to
    its launcher are one loop each, not a method per event written out again."""

    def forward(self, event: str, value: Any) -> None:
        raise NotImplementedError


def _forwarding(event: str):
    def method(self: Forwarder, value: Any) -> None:
        self.forward(event, value)

    method.__name__ = method.__qualname__ = event
    method.__doc__ = getattr(Recorder, event).__doc__
    return method


for _event in EVENTS:
    setattr(Forwarder, _event, _forwarding(_event))


class Recorders(Forwarder):
    """Fan one loop's events out to several recorders."""

    def __init__(self, *recorders: Recorder | None) -> None:
        self.recorders = [r for r in recorders if r is not None]

    def forward(self, event: str, value: Any) -> None:
        for r in self.recorders:
            getattr(r, event)(value)

    def before_checkpoint(self) -> None:
        for r in self.recorders:
            r.before_checkpoint()

    def should_stop(self) -> bool:
        return any(r.should_stop() for r in self.recorders)


class MemoryRecorder(Forwarder):
    """Keeps every event in lists: for tests and for callers that want the history."""

    LISTS = {"on_start": "starts", "on_step": "steps", "on_eval": "evals", "on_checkpoint": "checkpoints",
             "on_checkpoint_removed": "removed", "on_log": "logs", "on_stage": "stages", "on_search": "searches", "on_end": "ends"}

    def __init__(self, stop_after_step: int | None = None) -> None:
        self.starts: list[RunStart] = []
        self.steps: list[StepMetrics] = []
        self.evals: list[EvalMetrics] = []
        self.checkpoints: list[CheckpointInfo] = []
        self.removed: list[str] = []
        self.logs: list[str] = []
        self.stages: list[StageProgress] = []
        self.searches: list[dict[str, Any]] = []
        self.ends: list[RunEnd] = []
        self.stop_after_step = stop_after_step

    def forward(self, event: str, value: Any) -> None:
        getattr(self, self.LISTS[event]).append(value)

    def should_stop(self) -> bool:
        return self.stop_after_step is not None and bool(self.steps) and self.steps[-1].step >= self.stop_after_step


class Stage:
    """Reports one long stage through ``recorder``: a log line when it starts and one when
    it ends (with its duration), and ``on_stage`` events between, at most every ``every``
    seconds. Use it as a context manager and call it as a ``progress(done, total)``
    callback (``core.features.extract_features`` takes one); ``part(offset)`` is the
    callback for a piece of the stage that starts ``offset`` units in. ``total`` may be 0
    (unknown); the events carry the ETA at the speed measured so far::

        with Stage(recorder, "computing the frozen backbone's features", total) as stage:
            extract_features(..., progress=stage)

    A stage that ends by an exception logs how far it got instead of its duration.
    """

    EVERY = 1.0  # seconds between progress events: a page redraws every few seconds at most

    def __init__(self, recorder: Recorder, name: str, total: int, unit: str = "images", *,
                 every: float | None = None) -> None:
        self.recorder, self.name, self.total, self.unit = recorder, name, int(total), unit
        self.every = self.EVERY if every is None else every
        self.done = 0
        self.started = time.time()
        self._sent = 0.0

    def __enter__(self) -> Stage:
        self.started = time.time()
        self.recorder.on_log(f"{self.name}: {self.total:,} {self.unit}" if self.total else f"{self.name}…")
        self._send(time.time())
        return self

    def __call__(self, done: int, total: int | None = None) -> None:
        """``done`` units of the stage are done (``total``, when given, may correct it)."""
        self.done = int(done)
        if total is not None and total > self.total:
            self.total = int(total)
        now = time.time()
        if now - self._sent >= self.every:
            self._send(now)

    def part(self, offset: int) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` callback for a piece that starts ``offset`` units in."""
        return lambda done, total: self(offset + done)

    def _send(self, now: float, finished: bool = False) -> None:
        self._sent = now
        self.recorder.on_stage(StageProgress(self.name, self.done, self.total, self.unit, self.started, now, finished))

    def __exit__(self, kind, error, trace) -> None:
        now = time.time()
        took = about(now - self.started)
        if kind is None:
            self.done = max(self.done, self.total)
            self.recorder.on_log(f"{self.name}: done in {took}")
        else:
            self.recorder.on_log(f"{self.name}: stopped after {took} at {self.done:,} of {self.total:,} {self.unit}")
        self._send(now, finished=True)  # last: a recorder may write both at once
