"""`imori worker --gpus 0,1`: the plan of one worker process per device (unit tests on
the CPU; the GPUs themselves are measured where a machine lends them)."""

from __future__ import annotations

import pytest

from core.errors import ImoriError
from worker.runner import gpu_worker_plan


def test_one_worker_per_device_each_seeing_only_its_own(monkeypatch):
    import core.devices

    monkeypatch.setattr(core.devices, "usable_cores", lambda: 16)
    plan = gpu_worker_plan("0, 1", name="box")
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in plan] == ["0", "1"]
    assert all(env["IMORI_GPUS"] == "0,1" for _, env in plan)  # a run of several processes spans both
    commands = [command for command, _ in plan]
    assert all(c[c.index("--device") + 1] == "cuda" for c in commands)
    assert [c[c.index("--name") + 1] for c in commands] == ["box-gpu0", "box-gpu1"]
    assert all(c[c.index("--threads") + 1] == "8" for c in commands)  # the cores shared out


def test_uuids_are_devices_too():
    plan = gpu_worker_plan("GPU-6f1c,GPU-77aa", threads=2)
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in plan] == ["GPU-6f1c", "GPU-77aa"]


@pytest.mark.parametrize("gpus, words", [("", "needs device numbers"), (" , ", "needs device numbers"), ("0,0", "twice")])
def test_a_list_of_no_devices_or_a_device_twice_is_refused(gpus, words):
    with pytest.raises(ImoriError, match=words):
        gpu_worker_plan(gpus)


def test_a_worker_given_gpus_counts_them_for_runs_of_several_processes(monkeypatch):
    from core.distributed import visible_gpus

    monkeypatch.setenv("IMORI_GPUS", "0,1,2")
    assert visible_gpus() == 3
