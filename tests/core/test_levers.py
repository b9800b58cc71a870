"""The settings of an ordinary run (issue 25): vflip and rot90, warm-up, label smoothing,
an EMA of the weights and test-time augmentation. Each changes what it should and nothing
else, and a run with them all resumes exactly."""

import json

import pytest
import torch

from core.checkpoint import load_checkpoint, preprocess_path
from core.config import RunConfig
from core.data.augment import apply_view, augment_batch, tta_views
from core.recorder import MemoryRecorder
from core.train import Trainer, fit, lr_factor

FAST = dict(model="mnist_cnn", dataset="digits", optimizer="adam", lr=2e-3, batch_size=64)


def _steps(recorder, after=0):
    return [(s.step, s.epoch, s.loss, s.accuracy, s.lr) for s in recorder.steps if s.step > after]


# -- nonsense is refused ------------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    (dict(ema=True, ema_decay=1.0), "ema_decay must be in (0, 1)"),
    (dict(ema_decay=0.0), "ema_decay must be in (0, 1)"),
    (dict(ema_decay=float("nan")), "ema_decay must be in (0, 1)"),
    (dict(warmup_epochs=-1.0), "warmup_epochs must be a number of epochs >= 0"),
    (dict(warmup_epochs=3.0, epochs=3), "leaves no step for the schedule"),
    (dict(label_smoothing=1.0), "label_smoothing must be in [0, 1)"),
    (dict(label_smoothing=-0.1), "label_smoothing must be in [0, 1)"),
    (dict(tta=True), "add flip, vflip or rot90 to augment"),
    (dict(tta=True, augment=("crop", "rotate")), "add flip, vflip or rot90 to augment"),
    (dict(model="mynet", image_size=(64, 48), augment=("rot90",)), "rot90 turns images a quarter"),
    (dict(augment=("upside",)), "unknown augmentation upside"),
])
def test_nonsense_values_are_refused_with_a_reason(changes, message):
    problems = RunConfig(**{**FAST, **changes}).problems()
    assert any(message in p for p in problems), problems


def test_sensible_values_pass_and_round_trip():
    config = RunConfig(**FAST, augment=("flip", "vflip", "rot90"), tta=True, warmup_epochs=0.5, label_smoothing=0.1,
                       ema=True, ema_decay=0.99)
    assert config.problems() == []
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # A config recorded before these settings existed still reads, with them off.
    old = {k: v for k, v in RunConfig(**FAST).to_dict().items()
           if k not in ("tta", "warmup_epochs", "label_smoothing", "ema", "ema_decay")}
    back = RunConfig.from_dict(old)
    assert (back.tta, back.warmup_epochs, back.label_smoothing, back.ema) == (False, 0.0, 0.0, False)


# -- vflip and rot90: the images change, their labels do not ------------------------------------


def _first_batch(config, tmp_path, seed=5):
    """The images the network sees and the labels the loss sees in one training step."""
    trainer = Trainer(config, tmp_path)
    seen = {}
    forward, criterion = trainer.images.forward, trainer.criterion

    def look(x):
        seen["x"] = x.detach().float().clone()
        return forward(x)

    def score(out, y):
        seen["y"] = y.clone()
        return criterion(out, y)

    trainer.images.forward, trainer.criterion = look, score
    torch.manual_seed(seed)
    trainer.train_step(trainer.images, torch.arange(32))
    return seen["x"], seen["y"]


@pytest.mark.parametrize("kind, views", [
    ("vflip", [lambda x: x, lambda x: x.flip(1)]),
    ("rot90", [lambda x, k=k: x.rot90(k, dims=(1, 2)) for k in range(4)]),
])
def test_vflip_and_rot90_change_the_images_seen_but_not_their_labels(tmp_path, kind, views):
    plain_x, plain_y = _first_batch(RunConfig(**FAST, precision="fp32"), tmp_path / "plain")
    x, y = _first_batch(RunConfig(**FAST, precision="fp32", augment=(kind,)), tmp_path / kind)
    assert torch.equal(y, plain_y)
    which = [next(i for i, view in enumerate(views) if torch.equal(a, view(b))) for a, b in zip(x, plain_x)]
    assert len(set(which)) == len(views)  # every view drawn in a batch of 32, so the images did change


def test_augment_batch_draws_only_for_the_kinds_asked():
    x = torch.randn(16, 1, 8, 8)
    torch.manual_seed(0)
    flip_then = augment_batch(x, ("flip",)), torch.rand(1)
    torch.manual_seed(0)
    flip_alone = augment_batch(x, ("flip",))
    assert torch.equal(flip_then[0], flip_alone)
    # vflip and rot90 draw after flip: adding them leaves a run's flips as they were.
    torch.manual_seed(0)
    both = augment_batch(x, ("flip", "vflip"))
    flipped = (flip_alone != x).flatten(1).any(1)
    assert all(torch.equal(b, f) or torch.equal(b, f.flip(1)) for b, f in zip(both, flip_alone)), flipped


def test_tta_views_are_the_runs_exact_symmetries():
    assert tta_views(("flip",)) == ["identity", "hflip"]
    assert tta_views(("vflip", "crop")) == ["identity", "rot180+hflip"]
    assert len(tta_views(("flip", "vflip"))) == 4 and len(tta_views(("rot90",))) == 4
    assert len(tta_views(("flip", "rot90"))) == len(tta_views(("vflip", "rot90", "flip"))) == 8
    assert tta_views(("crop", "rotate")) == ["identity"]
    x = torch.randn(2, 1, 5, 5)
    assert torch.equal(apply_view(x, "rot180+hflip"), x.flip(2))  # upside down


# -- warm-up: the first steps' learning rate, nothing else ----------------------------------------


def test_warmup_is_linear_then_the_schedule_runs_over_the_rest():
    assert [lr_factor("none", s, 100, 10, 1, 0.1, warmup_steps=4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    for step in (4, 30, 100):
        assert lr_factor("cosine", step, 100, 10, 1, 0.1, 4) == lr_factor("cosine", step - 4, 96, 10, 1, 0.1)
    assert lr_factor("cosine", 4, 100, 10, 1, 0.1, 4) == 1.0
    assert lr_factor("cosine", 100, 100, 10, 1, 0.1, 4) == pytest.approx(0.0)


def test_warmup_changes_the_first_steps_learning_rate_only(tmp_path):
    plain, warm = MemoryRecorder(), MemoryRecorder()
    config = RunConfig(**FAST, epochs=None, iterations=6, precision="fp32")
    fit(config, tmp_path / "plain", plain)
    fit(config.replace(warmup_epochs=3 / 21), tmp_path / "warm", warm)  # 21 steps an epoch: 3 steps
    assert [s.lr for s in plain.steps] == pytest.approx([2e-3] * 6)
    assert [s.lr for s in warm.steps] == pytest.approx([2e-3 / 3, 4e-3 / 3, 2e-3, 2e-3, 2e-3, 2e-3])
    # The same first batch and weights: its loss and accuracy come before any step.
    assert _steps(warm)[0][:4] == _steps(plain)[0][:4]


# -- label smoothing: the loss, not the data -------------------------------------------------------


@pytest.mark.parametrize("model, size", [("mnist_cnn", None), ("lenet5", (32, 32))])
def test_label_smoothing_is_the_smoothed_loss_for_log_probabilities_and_logits(tmp_path, model, size):
    config = RunConfig(**{**FAST, "model": model}, image_size=size, label_smoothing=0.2, precision="fp32")
    trainer = Trainer(config, tmp_path)
    x = trainer._prepare_images(trainer.train_x[:16])
    y = trainer.train_y[:16]
    out = trainer.model(x)
    logp = out if trainer.output == "log_probs" else out.log_softmax(1)
    expected = 0.8 * torch.nn.functional.nll_loss(logp, y) + 0.2 * (-logp.mean(1)).mean()
    assert trainer.criterion(out, y).item() == pytest.approx(expected.item(), rel=1e-5)


def test_label_smoothing_changes_the_loss_but_not_the_data_order(tmp_path):
    plain, smooth = MemoryRecorder(), MemoryRecorder()
    config = RunConfig(**FAST, epochs=None, iterations=3, precision="fp32")
    fit(config, tmp_path / "plain", plain)
    fit(config.replace(label_smoothing=0.1), tmp_path / "smooth", smooth)
    # Step 1: the same batch through the same weights (same accuracy), another loss.
    assert smooth.steps[0].accuracy == plain.steps[0].accuracy
    assert smooth.steps[0].loss != plain.steps[0].loss
    assert [s.lr for s in smooth.steps] == [s.lr for s in plain.steps]


# -- EMA: evaluated and checkpointed as the model, and exact resume ---------------------------------


def test_a_run_with_every_lever_resumes_exactly(tmp_path):
    # 24 steps: past the end of epoch 1 (21 steps), so an evaluation and a new epoch's order too.
    config = RunConfig(**FAST, epochs=None, iterations=24, augment=("flip", "vflip", "rot90"), tta=True, ema=True,
                       ema_decay=0.99, warmup_epochs=0.5, label_smoothing=0.1, schedule="cosine", precision="fp32")
    whole = MemoryRecorder()
    done = fit(config, tmp_path / "whole", whole)

    first = MemoryRecorder(stop_after_step=7)  # mid epoch 1 (21 steps per epoch)
    part = fit(config, tmp_path / "part", first)
    assert part.status == "cancelled" and part.step == 7
    rest = MemoryRecorder()
    resumed = fit(config, tmp_path / "part", rest, resume_from=part.last_checkpoint)
    assert resumed.status == "succeeded"
    assert _steps(first) == _steps(whole)[:7]
    assert _steps(rest) == _steps(whole, after=7)
    assert [(e.split, e.loss, e.accuracy) for e in rest.evals] == [(e.split, e.loss, e.accuracy) for e in whole.evals]
    assert torch.equal(torch.tensor([s.lr for s in whole.steps[:10]]).argsort(), torch.arange(10))  # warming up

    # The checkpoint's model is the average; the trained weights travel beside it.
    ckpt = load_checkpoint(done.last_checkpoint)
    raw = ckpt.training["raw_state_dict"]
    assert set(raw) == set(ckpt.state_dict)
    assert any(not torch.equal(raw[k], ckpt.state_dict[k]) for k in raw)
    assert ckpt.tta == tta_views(config.augment) and len(ckpt.tta) == 8


def test_the_ema_is_what_evaluation_and_prediction_use(tmp_path):
    from core.predict import Predictor, evaluate

    config = RunConfig(**FAST, epochs=None, iterations=12, ema=True, ema_decay=0.9, precision="fp32")
    result = fit(config, tmp_path / "ema", MemoryRecorder())
    plain = fit(config.replace(ema=False), tmp_path / "plain", MemoryRecorder())
    ckpt = load_checkpoint(result.last_checkpoint)
    # The same training (the EMA only watches it): the raw weights are the plain run's.
    raw = ckpt.training["raw_state_dict"]
    assert all(torch.equal(raw[k], v) for k, v in load_checkpoint(plain.last_checkpoint).state_dict.items())
    # What the run reported is what predicting with its checkpoint gives.
    evaluation = evaluate(Predictor(ckpt), "digits")
    assert abs(evaluation.accuracy - result.test["accuracy"]) <= 1 / evaluation.count
    assert result.test["loss"] != plain.test["loss"]


# -- TTA: evaluation changes, training does not; predict, calibrate and export know of it -----------


def test_tta_changes_evaluation_only_and_travels_with_the_checkpoint(tmp_path):
    from core.calibration import calibrate
    from core.export import export
    from core.predict import Predictor, evaluate

    config = RunConfig(**FAST, epochs=None, iterations=8, augment=("flip",), precision="fp32")
    single, averaged = MemoryRecorder(), MemoryRecorder()
    fit(config, tmp_path / "single", single)
    result = fit(config.replace(tta=True), tmp_path / "tta", averaged)
    assert _steps(averaged) == _steps(single)  # the same training
    assert [e.loss for e in averaged.evals] != [e.loss for e in single.evals]

    ckpt = load_checkpoint(result.last_checkpoint)
    assert ckpt.tta == ["identity", "hflip"]
    assert load_checkpoint(tmp_path / "single" / "checkpoints" / "best.pt").tta == []
    predictor, one = Predictor(ckpt), Predictor(ckpt, tta=False)
    x = predictor.preprocessing.normalize(ckpt_images := torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8))
    assert ckpt_images.shape[0] == 4
    with torch.no_grad():
        expected = (one.model(x).exp() + one.model(x.flip(3)).exp()) / 2
    assert torch.allclose(predictor.probabilities(x), expected, atol=1e-6)
    assert not torch.allclose(one.probabilities(x), expected, atol=1e-6)
    assert torch.allclose(predictor.scores(x).softmax(1), expected, atol=1e-6)  # what calibrate fits on
    evaluation = evaluate(predictor, "digits")
    assert abs(evaluation.accuracy - result.test["accuracy"]) <= 1 / evaluation.count
    assert calibrate(predictor).temperature > 0

    exported = export(ckpt, tmp_path / "model.pt")
    assert "single model" in exported.note
    sidecar = json.loads(preprocess_path(tmp_path / "model.pt").read_text())
    assert sidecar["test_time_augmentation"]["views"] == ["identity", "hflip"]
    assert "single model" in sidecar["test_time_augmentation"]["exported"]

    # ONNX: the views go inside the file, so ONNX Runtime answers as predict does.
    import onnxruntime

    onnx = export(ckpt, tmp_path / "model.onnx", "onnx")
    assert "inside the file" in onnx.note and onnx.parity.passed
    sidecar = json.loads(preprocess_path(tmp_path / "model.onnx").read_text())
    assert sidecar["output"] == "log_probs" and "inside the file" in sidecar["test_time_augmentation"]["exported"]
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    scores = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    assert torch.allclose(scores.softmax(1), expected, atol=1e-5)
