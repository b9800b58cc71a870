"""IMORI_FAULTS, the reliability tests' switch: which run gets which fault."""

from __future__ import annotations

import time

from core.recorder import Recorders, StepMetrics
from worker.faults import KillAtStep, SlowSteps, fault_injector


def test_faults_are_chosen_by_the_run_name_or_star(monkeypatch):
    monkeypatch.delenv("IMORI_FAULTS", raising=False)
    assert fault_injector("any") is None
    monkeypatch.setenv("IMORI_FAULTS", "kill:crasher:3;slow:long:0.25")
    assert fault_injector("other") is None
    killer = fault_injector("crasher")
    assert isinstance(killer, KillAtStep) and killer.step == 3
    slow = fault_injector("long")
    assert isinstance(slow, SlowSteps) and slow.seconds == 0.25
    monkeypatch.setenv("IMORI_FAULTS", "slow:*:0.01;kill:crasher:2")
    assert isinstance(fault_injector("whatever"), SlowSteps)
    both = fault_injector("crasher")
    assert isinstance(both, Recorders) and [type(r) for r in both.recorders] == [SlowSteps, KillAtStep]


def test_slow_steps_sleep_on_every_step():
    metrics = StepMetrics.__new__(StepMetrics)
    started = time.monotonic()
    for _ in range(3):
        SlowSteps(0.05).on_step(metrics)
    assert time.monotonic() - started >= 0.15
