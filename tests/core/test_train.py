"""The training loop: it learns, it checkpoints, it resumes exactly, it stops when asked."""

import math

import pytest
import torch

from core.checkpoint import load_checkpoint, read_file
from core.config import RunConfig
from core.errors import ConfigError, DatasetError
from core.recorder import MemoryRecorder, Recorder
from core.train import augment_batch, epoch_order, fit, lr_factor

# One small, fast configuration shared by most tests: the seed 003 CNN on digits.
FAST = dict(model="mnist_cnn", dataset="digits", optimizer="adam", lr=2e-3, batch_size=64)


def test_a_short_run_learns_far_above_chance(tmp_path):
    recorder = MemoryRecorder()
    result = fit(RunConfig(**FAST, epochs=2), tmp_path / "run", recorder)
    assert result.status == "succeeded"
    # Chance is 10 %; two epochs of ~1,300 images reach well over 80 % here.
    assert result.test["accuracy"] >= 0.8, result.test
    assert [s.step for s in recorder.steps] == list(range(1, result.step + 1))
    assert recorder.steps[-1].loss < recorder.steps[0].loss
    splits = [(e.epoch, e.split) for e in recorder.evals]
    assert splits == [(1, "val"), (1, "test"), (2, "val"), (2, "test")]
    start = recorder.starts[0]
    assert start.train_size + start.val_size + start.test_size == 1797  # every digit, once
    assert abs(start.test_size - 0.2 * 1797) < 10 and abs(start.val_size - 0.1 * (1797 - start.test_size)) < 10
    assert start.model_summary["total"] > 0
    assert recorder.ends[-1].status == "succeeded"
    # The best checkpoint is the best validation accuracy, and is a loadable imori checkpoint.
    best = load_checkpoint(result.best_checkpoint)
    assert best.metrics["val_accuracy"] == pytest.approx(result.best_val_accuracy)
    assert best.classes == [str(i) for i in range(10)]


def test_iterations_mode_runs_exactly_that_many_steps_and_evaluates(tmp_path):
    recorder = MemoryRecorder()
    result = fit(RunConfig(**FAST, epochs=None, iterations=7), tmp_path / "run", recorder)
    assert result.step == 7 and len(recorder.steps) == 7
    assert {e.split for e in recorder.evals} == {"val", "test"}
    assert result.last_checkpoint and load_checkpoint(result.last_checkpoint).step == 7


def _losses(recorder, after=0):
    return [(s.step, s.epoch, s.loss, s.accuracy, s.lr) for s in recorder.steps if s.step > after]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_mid_epoch_equals_an_uninterrupted_run(tmp_path, precision):
    from core.precision import cpu_supports_bf16

    if precision == "bf16" and not cpu_supports_bf16():
        pytest.skip("this processor has no native bf16: the fast path is not taken here")
    # Augmentation draws random numbers every step, so this also proves the RNG state
    # travels with the checkpoint; the cosine schedule proves the lr does.
    config = RunConfig(**FAST, epochs=2, augment=("flip", "rotate", "crop"), schedule="cosine", precision=precision)
    whole = MemoryRecorder()
    fit(config, tmp_path / "whole", whole)

    first = MemoryRecorder(stop_after_step=7)  # mid epoch 1 (21 steps per epoch)
    part = fit(config, tmp_path / "part", first)
    assert part.status == "cancelled" and part.step == 7
    ckpt = load_checkpoint(part.last_checkpoint)
    assert ckpt.training["next_epoch"] == 1 and ckpt.training["next_batch"] == 7

    rest = MemoryRecorder()
    resumed = fit(config, tmp_path / "part", rest, resume_from=part.last_checkpoint)
    assert resumed.status == "succeeded" and resumed.precision == precision
    assert whole.starts[0].environment["precision"] == precision
    assert _losses(first) == _losses(whole)[:7]
    assert _losses(rest) == _losses(whole, after=7)
    assert [(e.split, e.loss, e.accuracy) for e in rest.evals] == [(e.split, e.loss, e.accuracy) for e in whole.evals]


def test_a_finished_run_continues_for_more_epochs(tmp_path):
    config = RunConfig(**FAST, epochs=1)
    done = fit(config, tmp_path / "run", MemoryRecorder())
    more = MemoryRecorder()
    result = fit(config.replace(epochs=2), tmp_path / "run", more, resume_from=done.last_checkpoint)
    assert more.steps[0].step == done.step + 1 and more.steps[0].epoch == 2
    assert result.step == 2 * done.step and result.epoch == 2


def test_time_based_checkpoints_land_mid_epoch_and_old_ones_are_pruned(tmp_path):
    recorder = MemoryRecorder()
    config = RunConfig(**FAST, epochs=1, checkpoint_every_minutes=1e-6, keep_checkpoints=2)
    fit(config, tmp_path / "run", recorder)
    periodic = [c for c in recorder.checkpoints if not c.is_best]
    assert len(periodic) >= 10  # one per iteration at this interval
    assert recorder.removed  # pruned to keep_checkpoints
    left = sorted((tmp_path / "run" / "checkpoints").glob("ckpt-s*.pt"))
    assert len(left) == 2
    mid = read_file(left[0])["training"]  # the one before the end-of-epoch checkpoint
    assert mid["next_epoch"] == 1 and 0 < mid["next_batch"] < 21
    assert not list((tmp_path / "run" / "checkpoints").glob(".*tmp"))  # no half-written files


def test_checkpoint_holds_only_plain_values(tmp_path):
    result = fit(RunConfig(**FAST, epochs=None, iterations=3), tmp_path / "run", None)
    data = read_file(result.last_checkpoint)  # weights_only=True inside

    def check(value, where="checkpoint"):
        if isinstance(value, dict):
            for k, v in value.items():
                assert isinstance(k, (str, int)), where
                check(v, f"{where}.{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                check(v, f"{where}[{i}]")
        else:
            assert value is None or isinstance(value, (str, int, float, bool, torch.Tensor)), (where, type(value))

    check(data)
    assert data["preprocessing"]["mean"] == [0.1307] and data["model"]["name"] == "mnist_cnn"
    assert isinstance(data["training"]["rng"]["torch"], torch.Tensor)


def test_should_stop_cancels_within_one_iteration_and_keeps_a_checkpoint(tmp_path):
    class StopAtOnce(Recorder):
        steps = 0

        def on_step(self, metrics):
            self.steps += 1

        def should_stop(self):
            return self.steps >= 1

    recorder = StopAtOnce()
    result = fit(RunConfig(**FAST, epochs=3), tmp_path / "run", recorder)
    assert result.status == "cancelled" and result.step == 1 and recorder.steps == 1
    assert load_checkpoint(result.last_checkpoint).step == 1


def test_a_crash_inside_training_reports_failed_with_the_error(tmp_path):
    class Boom(MemoryRecorder):
        def on_step(self, metrics):
            super().on_step(metrics)
            if metrics.step == 3:
                raise RuntimeError("disk on fire")

    recorder = Boom()
    with pytest.raises(RuntimeError, match="disk on fire"):
        fit(RunConfig(**FAST, epochs=1), tmp_path / "run", recorder)
    assert recorder.ends[-1].status == "failed" and "disk on fire" in recorder.ends[-1].error
    assert [s.step for s in recorder.steps] == [1, 2, 3]


def test_setup_failures_are_reported_too(tmp_path):
    recorder = MemoryRecorder()
    with pytest.raises(DatasetError):
        fit(RunConfig(**{**FAST, "dataset": str(tmp_path / "missing")}, epochs=1), tmp_path / "run", recorder)
    assert recorder.ends[-1].status == "failed" and "missing" in recorder.ends[-1].error


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a usable CUDA GPU: nothing to refuse")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no usable CUDA GPU"):
        fit(RunConfig(**{**FAST, "device": "cuda"}, epochs=1), tmp_path / "run")


def test_every_seed_net_trains_a_few_steps(tmp_path):
    for model, options in (("mynet", {}), ("lenet5", {"kernel": 5}), ("lenet5", {"kernel": 3}), ("tiny_net", {})):
        recorder = MemoryRecorder()
        config = RunConfig(model=model, model_options=options, dataset="shapes2" if model == "mynet" else "digits",
                           optimizer="sgd", lr=0.01, momentum=0.9, batch_size=16, epochs=None, iterations=2,
                           image_size=(32, 32) if model == "mynet" else None, eval_batch_size=256)
        result = fit(config, tmp_path / f"{model}{options}", recorder)
        assert result.step == 2 and all(math.isfinite(s.loss) for s in recorder.steps), model


def test_pure_helpers():
    assert torch.equal(epoch_order(50, 3, 2), epoch_order(50, 3, 2))
    assert not torch.equal(epoch_order(50, 3, 2), epoch_order(50, 3, 3))
    assert lr_factor("none", 99, 100, 10, 1, 0.1) == 1.0
    assert lr_factor("step", 25, 100, 10, 2, 0.1) == pytest.approx(0.1)
    assert lr_factor("cosine", 0, 100, 10, 1, 0.1) == 1.0
    assert lr_factor("cosine", 100, 100, 10, 1, 0.1) == pytest.approx(0.0)
    x = torch.randn(8, 3, 16, 16)
    y = augment_batch(x, ("flip", "crop", "rotate"))
    assert y.shape == x.shape and not torch.equal(x, y)


def test_balanced_class_weights_and_balanced_accuracy(tmp_path):
    from core.setup import class_weights

    labels = torch.tensor([0, 0, 0, 1])
    assert class_weights(labels, 3).tolist() == pytest.approx([4 / 6, 2.0, 0.0])  # n / (classes present * count)
    recorder = MemoryRecorder()
    result = fit(RunConfig(**FAST, epochs=None, iterations=5, class_weights="balanced"), tmp_path / "run", recorder)
    test = [e for e in recorder.evals if e.split == "test"][-1]
    assert 0 <= test.balanced_accuracy <= 1 and result.test["balanced_accuracy"] == test.balanced_accuracy
    # digits is nearly balanced: the mean per-class recall is close to plain accuracy.
    assert abs(test.balanced_accuracy - test.accuracy) < 0.1
    # Every evaluation carries its per-class precision, recall, F1 and support, and they
    # agree with the split's figures: supports add up to the split, recalls to balanced.
    assert all(e.per_class for e in recorder.evals)
    per_class = test.per_class
    assert sum(m["support"] for m in per_class.values()) == test.count
    recalls = [m["recall"] for m in per_class.values() if m["support"]]
    assert sum(recalls) / len(recalls) == pytest.approx(test.balanced_accuracy)
    hits = sum(m["recall"] * m["support"] for m in per_class.values())
    assert hits / test.count == pytest.approx(test.accuracy)
    assert result.test["per_class"] == per_class
    assert "class_weights must be one of" in " ".join(RunConfig(class_weights="heavy").problems())


def test_precision_is_one_setting_for_both_devices(tmp_path):
    from cli.main import make_parser
    from cli.options import build_config

    def parsed(*argv):
        return build_config(make_parser().parse_args(["train", *argv]))

    assert parsed().precision == "auto" and parsed("--no-amp").precision == "fp32"
    assert parsed("--precision", "bf16").precision == "bf16"
    assert RunConfig.from_dict({"amp": False}).precision == "fp32"  # a config recorded before precision
    assert "precision must be one of" in " ".join(RunConfig(precision="fp16").problems())
    result = fit(RunConfig(**FAST, epochs=None, iterations=3, precision="fp32"), tmp_path / "fp32")
    assert result.precision == "fp32"


def test_a_run_resumed_over_a_new_class_order_keeps_its_own(tmp_path):
    from PIL import Image
    import numpy as np

    from core.checkpoint import save_atomic
    from core.train import Trainer

    data = tmp_path / "numbers"
    rng = np.random.default_rng(0)
    for label in ("0", "1", "2", "10"):
        (data / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(data / label / f"{i}.png")
    config = RunConfig(model="tiny_net", dataset=str(data), epochs=None, iterations=2, batch_size=4)
    first = fit(config, tmp_path / "run")
    # As an older imori recorded it: string order, 0, 1, 10, 2.
    payload = read_file(first.last_checkpoint)
    payload["classes"] = ["0", "1", "10", "2"]
    save_atomic(payload, first.last_checkpoint)
    trainer = Trainer(config.replace(iterations=4), tmp_path / "run")
    labels_before = trainer.test_y.clone()
    trainer.resume(first.last_checkpoint)
    assert trainer.classes == ["0", "1", "10", "2"]
    # The same images keep the same class names: "10" (index 3 numerically) is now index 2.
    assert [trainer.classes[int(v)] for v in trainer.test_y] == [["0", "1", "2", "10"][int(v)] for v in labels_before]
