"""The learning-rate finder (fastai's lr_find and its valley), early stopping on the
validation loss, and a time budget."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from core.config import RunConfig
from core.lr_find import lr_find, valley
from core.recipes import recipe_config
from core.train import Trainer, fit


def test_valley_picks_two_thirds_down_the_longest_fall():
    losses = [3.0, 2.9, 2.5, 2.0, 1.5, 1.0, 0.8, 0.7, 1.5, 5.0]
    lrs = [10 ** (i - 7) for i in range(len(losses))]
    # fastai's own arithmetic: the fall spans 0..7, and its start is counted one before it.
    assert valley(lrs, losses) == 2
    assert valley(lrs, [5.0, 1.0, 4.0, 3.0, 2.0, 1.5, 1.2, 9.0]) == 3


def test_lr_find_on_the_seed004_lenet_suggests_a_rate_it_learns_at(tmp_path, capsys):
    """Seed 004's LeNet barely learns at the tutorial's 1e-3 without momentum; at the
    suggested rate, every other setting unchanged, it reaches 90 % on digits."""
    plot = tmp_path / "lr.png"
    code = main(["lr-find", "--recipe", "seed004", "--plot", str(plot), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    found = json.loads(out)
    assert 1e-3 < found["suggestion"] < 5 and plot.stat().st_size > 1000
    assert len(found["lrs"]) == len(found["losses"]) >= 20
    result = fit(recipe_config("seed004", device="cpu").replace(lr=found["suggestion"]), tmp_path / "run")
    assert result.test["accuracy"] >= 0.90, (found["suggestion"], result.test["accuracy"])


def test_early_stopping_ends_when_the_validation_loss_stalls(tmp_path):
    trainer = Trainer(RunConfig(model="tiny_net", dataset="digits", epochs=20, patience=2, threads=1), tmp_path)
    trainer.best_val_loss, trainer.stalled_epochs = None, 0
    verdicts = []
    for epoch, loss in enumerate([1.0, 0.9, 0.95, 0.91, 0.85, 0.86, 0.87], start=1):
        trainer.last_val = {"loss": loss}
        verdicts.append(trainer.stop_early(epoch))
    # 1.0 and 0.9 improve; 0.95 and 0.91 do not: two epochs without improvement, stop.
    assert verdicts[:3] == [None] * 3
    assert "has not improved for 2 epochs" in verdicts[3] and "best 0.9000" in verdicts[3]


@pytest.mark.slow
def test_a_time_budget_stops_cleanly_with_a_checkpoint(tmp_path):
    from core.checkpoint import load_checkpoint
    from core.recorder import Recorder

    logs = []

    class Logs(Recorder):
        def on_log(self, message: str) -> None:
            logs.append(message)

    config = RunConfig(model="tiny_net", dataset="digits", epochs=100000, batch_size=32, threads=1, max_minutes=0.1)
    result = fit(config, tmp_path, Logs())
    assert result.status == "succeeded" and 0 < result.step < 100000 * 41
    assert any("the time budget of 0.1 minutes is spent" in line for line in logs), logs
    assert load_checkpoint(result.last_checkpoint).step == result.step and result.test  # evaluated where it stopped


def test_nonsense_stopping_settings_are_refused():
    from core.errors import ConfigError

    with pytest.raises(ConfigError):
        RunConfig(patience=0).validate()
    with pytest.raises(ConfigError):
        RunConfig(max_minutes=-1).validate()


def test_a_flat_range_test_says_its_suggestion_is_only_a_first_try():
    """seed 004's LeNet (SGD without momentum) hardly moves in 100 steps at any rate: the
    result says so, rather than presenting its valley as a sure thing."""
    from core.lr_find import plot_limit

    result = lr_find(recipe_config("seed004"), num_it=60)
    assert any("barely fell" in note for note in result.notes), result.notes
    assert plot_limit(result) == pytest.approx(1.5 * result.losses[0])
