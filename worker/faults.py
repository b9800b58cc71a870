"""Fault injection for the reliability tests: make a worker die, or go slowly, on cue.

Off unless ``IMORI_FAULTS`` is set in the worker's environment, e.g.
``IMORI_FAULTS=kill:crasher:3`` SIGKILLs the worker process when a run named
``crasher`` reports step 3, as an out-of-memory kill or a power cut would. It lets a
test prove, with real processes, that a run which keeps killing its worker ends
``failed`` after its attempts instead of taking workers down forever.
``IMORI_FAULTS=slow:long:0.1`` makes every step of a run named ``long`` last 0.1 s more
(a sleep, so it costs no core): a run that outlasts a short broker timeout, or stays
"running" while a test kills, stops or freezes its worker, cheaply. Given to one worker
only, it slows the run there and not on the worker that resumes it. The name ``*``
matches every run. Several faults are separated by ``;``; a run gets every one that
names it.
"""

from __future__ import annotations

import os
import signal
import time

from core.recorder import Recorder, Recorders, StepMetrics


class KillAtStep(Recorder):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, metrics: StepMetrics) -> None:
        if metrics.step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SlowSteps(Recorder):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step(self, metrics: StepMetrics) -> None:
        time.sleep(self.seconds)


def fault_injector(run_name: str) -> Recorder | None:
    """The faults ``IMORI_FAULTS`` gives run ``run_name`` (None when it gives none)."""
    faults: list[Recorder] = []
    for fault in filter(None, os.environ.get("IMORI_FAULTS", "").split(";")):
        kind, _, rest = fault.partition(":")
        name, _, arg = rest.partition(":")
        if name not in (run_name, "*"):
            continue
        if kind == "kill":
            faults.append(KillAtStep(int(arg or 1)))
        elif kind == "slow":
            faults.append(SlowSteps(float(arg or 0.1)))
    if len(faults) > 1:
        return Recorders(*faults)
    return faults[0] if faults else None
