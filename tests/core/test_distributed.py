"""core.distributed's pieces on their own: the shares of a global batch, the settings'
problems, torchrun's command line and environment, the machine checks, the relay's
answers. (Real runs on two processes: tests/cli/test_distributed.py, tests/worker/test_distributed.py.)"""

from __future__ import annotations

import pytest
import torch

from core import distributed
from core.config import RunConfig
from core.distributed import shortfall, torchrun_command
from core.ranks import ProcessRanks, Ranks
from core.errors import ImoriError
from core.recorder import MemoryRecorder, Recorder, RunEnd, StepMetrics
from core.records.errors import StaleAttemptError


def ranks_of(world: int, weight: torch.Tensor | None = None) -> list[ProcessRanks]:
    """Each rank of a world of ``world``, without a process group (shard needs none)."""
    out = []
    for rank in range(world):
        r = ProcessRanks.__new__(ProcessRanks)
        r.rank, r.world, r.local_world, r.class_weight = rank, world, world, weight
        out.append(r)
    return out


@pytest.mark.parametrize("size", [2, 7, 64, 100])
def test_the_ranks_parts_are_the_global_batch_and_their_shares_sum_to_one(size):
    idx = torch.randperm(200)[:size]
    labels = torch.randint(0, 10, (200,))
    for weight in (None, torch.rand(10) + 0.1):
        parts = [r.shard(idx, labels) for r in ranks_of(2, weight)]
        assert torch.equal(torch.cat([p for p, _ in parts]), idx)  # the same global order, split
        assert sum(share for _, share in parts) == pytest.approx(1.0)
        assert all(abs(len(p) - size / 2) <= 0.5 for p, _ in parts)


def test_a_ranks_scaled_loss_gives_the_global_batchs_gradient():
    """Each rank's mean loss x its share x world, averaged as DDP does, is the global mean
    loss (here with class weights: a weighted mean, normalised by the batch's weights)."""
    torch.manual_seed(0)
    logits, labels = torch.randn(9, 4), torch.randint(0, 4, (9,))
    weight = torch.tensor([1.0, 2.0, 0.5, 3.0])
    criterion = torch.nn.CrossEntropyLoss(weight=weight)
    whole = criterion(logits, labels)
    idx = torch.arange(9)
    averaged = 0.0
    for r in ranks_of(2, weight):
        part, share = r.shard(idx, labels)
        averaged += criterion(logits[part], labels[part]) * share * r.world / r.world
    assert float(averaged) == pytest.approx(float(whole), abs=1e-6)


def test_one_process_is_left_exactly_as_it_was():
    r = Ranks()
    idx = torch.arange(5)
    assert r.shard(idx, idx) == (idx, 1.0) and r.wrap(m := torch.nn.Linear(2, 2)) is m
    assert r.agree(True) and list(r.eval_starts(10, 4)) == [0, 4, 8] and r.threads(2) == 2


def test_evaluation_batches_are_split_between_the_ranks():
    a, b = ranks_of(2)
    assert list(a.eval_starts(10, 3)) == [0, 6] and list(b.eval_starts(10, 3)) == [3, 9]
    assert a.threads(2) == 1 and a.threads(1) == 1


@pytest.mark.parametrize("changes, words", [
    ({"nnodes": 2}, "needs rdzv_endpoint"),
    ({"nnodes": 2, "rdzv_endpoint": "nohost"}, "HOST:PORT"),
    ({"rdzv_endpoint": "h:29500"}, "give nnodes > 1"),
    ({"nproc_per_node": 2, "batch_size": 3}, "at least 4"),
    ({"nproc_per_node": 0}, "nproc_per_node must be"),
])
def test_settings_of_several_processes_that_cannot_work_are_refused(changes, words):
    problems = RunConfig(**changes).problems()
    assert any(words in p for p in problems), problems


def test_a_valid_run_on_several_processes_has_no_problems():
    assert RunConfig(nproc_per_node=2).problems() == []
    assert RunConfig(nproc_per_node=2, nnodes=3, rdzv_endpoint="10.0.0.1:29500").problems() == []


def test_torchrun_runs_standalone_on_one_machine_and_meets_at_the_endpoint_on_several():
    one = torchrun_command(RunConfig(nproc_per_node=2))
    assert one[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in one and "--nproc-per-node=2" in one
    assert one[-3:] == ["-m", "core.distributed", "--backend=gloo"]
    several = torchrun_command(RunConfig(nproc_per_node=4, nnodes=2, rdzv_endpoint="h:29500"), node_rank=1, backend="nccl")
    assert "--standalone" not in several
    assert {"--nnodes=2", "--node-rank=1", "--rdzv-backend=static", "--rdzv-endpoint=h:29500"} <= set(several)
    assert several[-1] == "--backend=nccl"


def test_each_rank_gets_its_share_of_the_cores(monkeypatch):
    monkeypatch.setenv("IMORI_TORCH_THREADS", "8")
    env = distributed.rank_environment(RunConfig(nproc_per_node=2), "/tmp/x.sock", "t", gpus="2,3")
    assert env["OMP_NUM_THREADS"] == "4" and env["IMORI_TORCH_THREADS"] == "8"
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env[distributed.RELAY_ENV] == "/tmp/x.sock"
    assert distributed.rank_environment(RunConfig(nproc_per_node=3, threads=2))["OMP_NUM_THREADS"] == "1"


def test_more_processes_than_cores_or_gpus_is_a_shortfall(monkeypatch):
    import core.devices

    monkeypatch.setattr(core.devices, "usable_cores", lambda: 2)
    assert shortfall(RunConfig(nproc_per_node=2, device="cpu")) is None
    assert "2 CPU core" in shortfall(RunConfig(nproc_per_node=3, device="cpu"))
    assert shortfall(RunConfig(device="cpu")) is None  # one process: nothing to check
    monkeypatch.setattr(core.devices, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setenv("IMORI_GPUS", "0,1")
    assert shortfall(RunConfig(nproc_per_node=2, device="cuda")) is None
    assert "2 GPUs" in shortfall(RunConfig(nproc_per_node=4, device="cuda"))


class _Proc:
    returncode = 1


def test_the_relay_replays_events_and_answers_questions():
    memory = MemoryRecorder(stop_after_step=2)
    relay = distributed._Relay(_Proc(), memory, {"config": {}}, "t")
    assert relay.handle("job", None) == {"config": {}}
    relay.handle("on_step", {"step": 1, "epoch": 1, "loss": 0.5, "accuracy": 0.25, "lr": 1e-3})
    assert relay.handle("should_stop", None) == {"stop": False, "raise": None}
    relay.handle("on_step", {"step": 2, "epoch": 1, "loss": 0.4, "accuracy": 0.5, "lr": 1e-3})
    assert relay.handle("should_stop", None)["stop"] is True
    relay.handle("on_log", "hello")
    assert [m.step for m in memory.steps] == [1, 2] and memory.logs == ["hello"]
    assert isinstance(memory.steps[0], StepMetrics)


class _Superseded(Recorder):
    def on_step(self, metrics):
        raise StaleAttemptError(1, 1, 2, "running")


def test_an_error_of_the_launchers_recorder_stops_the_ranks_and_is_raised_as_itself():
    relay = distributed._Relay(_Proc(), _Superseded(), {}, "t")
    relay.handle("on_step", {"step": 1, "epoch": 1, "loss": 0.5, "accuracy": 0.25, "lr": 1e-3})
    answer = relay.handle("should_stop", None)
    assert answer["stop"] is True and answer["raise"]  # rank 0 raises at once: no checkpoint, no more steps
    assert relay.handle("before_checkpoint", None)["raise"]
    with pytest.raises(StaleAttemptError):
        relay.outcome()


def test_ranks_that_die_without_a_word_end_the_run_failed():
    memory = MemoryRecorder()
    relay = distributed._Relay(_Proc(), memory, {}, "t")
    relay.handle("on_step", {"step": 3, "epoch": 1, "loss": 0.5, "accuracy": 0.25, "lr": 1e-3})
    with pytest.raises(distributed.RankFailed, match="without a result"):
        relay.outcome()
    assert memory.ends == [RunEnd(status="failed", step=3, epoch=1, error=memory.ends[0].error)]


def test_a_users_error_in_a_rank_stays_a_users_error():
    relay = distributed._Relay(_Proc(), Recorder(), {}, "t")
    relay.handle("error", {"user": True, "text": "digits has too few images"})
    with pytest.raises(ImoriError, match="too few"):
        relay.outcome()
