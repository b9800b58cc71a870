"""core.auto's parts: the linear head, the folds, the soup's average, and a search that is
cancelled keeping its best model so far."""

from __future__ import annotations

import pytest
import torch

from core.auto import Candidate, average_states, without_dropout, cross_validated, fit_linear_head, head_scores, stratified_folds, Search
from core.checkpoint import load_checkpoint
from core.predict import Predictor
from core.recipes import auto_refusal, recipe_config
from core.recorder import MemoryRecorder
from core.status import CANCELLED


def blobs(n_per_class: int = 40, dims: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, dims, generator=generator) * 4 + 10  # far from zero: the fit must standardise
    x = torch.cat([c + torch.randn(n_per_class, dims, generator=generator) for c in centres])
    y = torch.arange(3).repeat_interleave(n_per_class)
    return x, y


def test_a_linear_head_fits_separable_features_and_loads_into_a_linear_layer():
    x, y = blobs()
    weight, bias = fit_linear_head(x, y, 3, l2=1e-3)
    assert weight.shape == (3, 16) and bias.shape == (3,)
    layer = torch.nn.Linear(16, 3)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
        assert (layer(x).argmax(1) == y).float().mean() == 1.0  # on the raw features: standardisation folded in
    scores = head_scores(x, y, (weight, bias))
    assert scores["accuracy"] == 1.0 and scores["balanced_accuracy"] == 1.0 and scores["loss"] < 0.2
    # A strong penalty shrinks the weights: the L2 strength does something.
    assert fit_linear_head(x, y, 3, l2=10.0)[0].norm() < weight.norm() / 5


def test_folds_are_disjoint_stratified_and_cover_every_index():
    y = torch.tensor([0] * 12 + [1] * 7 + [2] * 5)
    folds = stratified_folds(y, 5)
    joined = torch.cat(folds)
    assert sorted(joined.tolist()) == list(range(len(y)))
    for fold in folds:
        assert len(set(y[fold].tolist())) >= 2  # each fold sees more than one class
    accuracy, loss = cross_validated(*blobs(10), 3, 1e-2)
    assert accuracy > 0.9 and loss > 0


def test_the_soups_average_is_elementwise_and_keeps_integer_buffers():
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)}
    out = average_states([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and int(out["n"]) == 5


def test_settings_the_search_chooses_are_refused_with_the_reason():
    assert auto_refusal({"dataset": "x", "max_minutes": 3, "threads": 2}) is None
    why = auto_refusal({"model": "resnet18", "epochs": 3, "dataset": "x"})
    assert "--model" in why and "--epochs" in why and "validation" in why


@pytest.mark.slow
def test_a_cancelled_search_keeps_its_best_model_so_far_usable(tmp_path, imori_home):
    """Cancelled in its training phase: the run ends cancelled, with a best.pt that
    predicts, and the leaderboard says what was tried."""
    config = recipe_config("auto", dataset="digits", max_minutes=0.4)
    recorder = MemoryRecorder(stop_after_step=5)
    result = Search(config, tmp_path / "run", recorder).run()
    assert result.status == CANCELLED
    assert recorder.ends[-1].status == CANCELLED and len(recorder.ends) == 1  # one end, the search's
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.classes == [str(d) for d in range(10)]
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    probabilities = Predictor(ckpt).probabilities(Predictor(ckpt).preprocessing.normalize(images))
    assert probabilities.shape == (3, 10)
    search = recorder.searches[-1]
    names = [c["name"] for c in search["candidates"]]
    assert "from scratch: mnist_cnn" in names and any(n.startswith("train: ") for n in names)
    assert search["candidates"][-1]["status"] == CANCELLED
    assert not result.test  # the test split is for the finished winner only


@pytest.mark.slow
def test_the_training_phase_soup_and_tta_run_and_the_winner_is_tested_once(tmp_path, imori_home, monkeypatch):
    """Photos with a budget to spare: every phase runs (probes, the fine-tune from the
    probe's head, the soup, the TTA check), the test split is evaluated once, and best.pt
    is the winner that predict uses, with its TTA views when they were kept."""
    from tests.photos import photo_like_folder

    import core.auto as auto

    monkeypatch.setattr(auto, "BACKBONES", ("efficientnet_lite0",))
    monkeypatch.setattr(auto, "MAX_EPOCHS", 3)
    photos = photo_like_folder(tmp_path / "photos", per_class=30, size=48)
    config = recipe_config("auto", dataset=str(photos), max_minutes=5)
    recorder = MemoryRecorder()
    result = Search(config, tmp_path / "run", recorder).run()
    assert result.status == "succeeded"
    search = result.search
    names = [c["name"] for c in search["candidates"]]
    assert names[0] == "linear probe: efficientnet_lite0"
    tune = next(c for c in search["candidates"] if c["name"] == "fine-tune: efficientnet_lite0")
    assert tune["status"] == "done" and tune["settings"]["epochs"] == 3 and "crop" in tune["settings"]["augment"]
    assert tune["settings"]["dropout"].startswith("off")  # the probe's head was fitted without it
    # The probe refitted on the training photos' turns, exactly those the orientation check allowed.
    turns = [view for kind, view in auto.ORIENTATIONS if kind in tune["settings"]["augment"]]
    refits = [c for c in search["candidates"] if c["name"] == "linear probe: efficientnet_lite0, with turned copies"]
    assert len(refits) == (1 if turns else 0)
    assert names.index("fine-tune: efficientnet_lite0") == 1 + len(refits)  # then the training phase
    if refits:
        assert refits[0]["settings"]["training views"] == ["identity", *turns]
        assert refits[0]["val_accuracy"] is not None and refits[0]["status"] in (
            "done", "not kept: no better than the probe on its own")
        assert "turned copies" in search["phases"]
    assert any(n.startswith("orientation check") for n in search["notes"])
    assert search["progress"] == 1.0 and set(search["phases"]) >= {"data", "features", "probes", "training", "test"}
    tests = [e for e in recorder.evals if e.split == "test"]
    assert len(tests) == 1 and tests[0].accuracy == result.test["accuracy"]  # once, at the end
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.config["recipe"] == "auto" and ckpt.model_name == "efficientnet_lite0"
    kept = next((c for c in search["candidates"] if c["name"].startswith("test-time")), None)
    assert ckpt.tta == (kept["settings"]["views"] if kept and kept["status"] == "kept" else [])
    assert ckpt.metrics["test_accuracy"] == result.test["accuracy"]
    # The checkpoint rebuilds the network it holds (the probe's multi-level head, fine-tuned
    # or restored), and predict answers with it.
    assert ckpt.config["model_options"] == {"pooling": "multilevel"}
    image = sorted(photos.glob("*/*.jpg"))[0]
    [answer] = Predictor(result.best_checkpoint).predict([image])
    assert answer.label in ("round", "long")


def test_a_winner_measured_again_differently_says_so_in_the_notes(tmp_path):
    """The leaderboard's figure for a probe comes from its cached features; the run's own,
    from the model as predict runs it. Where they differ, the notes say which is which."""
    search = Search(recipe_config("auto", dataset="digits"), tmp_path)
    search.candidates = [Candidate("linear probe: efficientnet_lite0", "efficientnet_lite0", {}, val_accuracy=0.7917)]
    search.winner = "linear probe: efficientnet_lite0"
    search.note_remeasured({"accuracy": 0.7917})
    search.note_remeasured({"accuracy": float(torch.tensor(0.7917, dtype=torch.float32))})
    assert search.notes == []  # the same figure (in either precision): nothing to say
    search.note_remeasured({"accuracy": 0.8333})
    [note] = search.notes
    assert "83.33 %" in note and "79.17 %" in note and note.startswith("linear probe: efficientnet_lite0")


def test_dropout_is_turned_off_for_a_fine_tune_from_a_probe():
    """Both kinds of dropout the backbones have: timm's and MultiLevelNet's ``drop_rate``,
    and ``nn.Dropout`` modules; a model with none says so."""
    from core.models.registry import build_model

    model = build_model("efficientnet_lite0", 2, options={"pooling": "multilevel"})
    assert model.drop_rate > 0 and without_dropout(model) and model.drop_rate == 0.0
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    assert without_dropout(net) and net[1].p == 0.0
    assert not without_dropout(net)  # nothing left to turn off
