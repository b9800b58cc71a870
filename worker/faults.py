"""Fault injection for the reliability tests: make a worker die on cue.

Off unless ``IMORI_FAULTS`` is set in the worker's environment, e.g.
``IMORI_FAULTS=kill:crasher:3`` SIGKILLs the worker process when a run named
``crasher`` reports step 3, as an out-of-memory kill or a power cut would. It lets a
test prove, with real processes, that a run which keeps killing its worker ends
``failed`` after its attempts instead of taking workers down forever.
``IMORI_FAULTS=slow:long:0.1`` makes every step of a run named ``long`` last 0.1 s more
(a sleep, so it costs no core): a run that outlasts a short broker timeout, cheaply.
Several faults are separated by ``;``.
"""

from __future__ import annotations

import os
import signal
import time

from core.recorder import Recorder, StepMetrics


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
    spec = os.environ.get("IMORI_FAULTS", "")
    for fault in filter(None, spec.split(";")):
        kind, _, rest = fault.partition(":")
        name, _, arg = rest.partition(":")
        if kind == "kill" and name == run_name:
            return KillAtStep(int(arg or 1))
        if kind == "slow" and name == run_name:
            return SlowSteps(float(arg or 0.1))
    return None
