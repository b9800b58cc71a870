"""The run settings' flags are generated from RunConfig's field descriptions."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from cli.main import main, make_parser
from cli.options import build_config, given_settings
from core import config as run_config
from core.config import RunConfig, setting


@dataclasses.dataclass
class WithExtra(RunConfig):
    """RunConfig with one more setting, added here and nowhere else."""

    settle_epochs: int = setting(0, section="optimisation", label="Settle epochs", minimum=0, step=1, unit="epochs",
                                 help="hold the learning rate at zero for this many epochs")


@pytest.fixture
def extended(monkeypatch):
    monkeypatch.setattr(run_config, "RunConfig", WithExtra)
    return WithExtra


def train_args(*argv: str) -> argparse.Namespace:
    return make_parser().parse_args(["train", *argv])


def train_help() -> str:
    parser = make_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return " ".join(sub.choices["train"].format_help().split())  # unwrapped


def test_a_new_field_is_a_flag_with_its_help(extended):
    text = train_help()
    assert "--settle-epochs SETTLE_EPOCHS" in text and "hold the learning rate at zero" in text
    config = build_config(train_args("--settle-epochs", "4"))
    assert isinstance(config, WithExtra) and config.settle_epochs == 4
    assert build_config(train_args()).settle_epochs == 0


def test_the_settings_of_an_ordinary_run_are_flags():
    text = train_help()
    for flag in ("--warmup-epochs WARMUP_EPOCHS", "--label-smoothing LABEL_SMOOTHING", "--ema", "--no-ema",
                 "--ema-decay EMA_DECAY", "--tta", "--no-tta", "vflip", "rot90"):
        assert flag in text, flag
    config = build_config(train_args("--augment", "flip,vflip,rot90", "--tta", "--warmup-epochs", "0.5",
                                     "--label-smoothing", "0.1", "--ema", "--ema-decay", "0.99"))
    assert config.augment == ("flip", "vflip", "rot90") and config.tta is True and config.warmup_epochs == 0.5
    assert (config.label_smoothing, config.ema, config.ema_decay) == (0.1, True, 0.99)
    plain = build_config(train_args())
    assert (plain.tta, plain.warmup_epochs, plain.label_smoothing, plain.ema) == (False, 0.0, 0.0, False)


def test_every_existing_flag_keeps_its_name_and_meaning():
    config = build_config(train_args(
        "--model", "lenet5", "--kernel", "3", "--image-size", "28x28", "--mean", "0.5", "--std", "0.25",
        "--no-amp", "--augment", "flip,rotate", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
        "--iterations", "7", "--compile", "--threads", "1", "--val-fraction", "0.2",
    ))
    assert config.model_options == {"kernel": 3} and config.image_size == (28, 28)
    assert config.mean == (0.5,) and config.std == (0.25,) and config.precision == "fp32" and config.compile is True
    assert config.augment == ("flip", "rotate") and (config.iterations, config.epochs) == (7, None)
    assert build_config(train_args("--image-size", "64x48", "--model", "mynet")).image_size == (64, 48)
    rgb = build_config(train_args("--model", "mynet", "--mean", "0.4,0.5,0.6"))
    assert rgb.mean == (0.4, 0.5, 0.6)
    # Only what was given is an override: a recipe's numbers stay unless a flag says otherwise.
    assert given_settings(train_args("--lr", "0.1")) == {"lr": 0.1}
    seed000 = build_config(train_args("--recipe", "seed000", "--epochs", "2"))
    assert (seed000.epochs, seed000.iterations, seed000.lr, seed000.recipe) == (2, None, 0.01, "seed000")


def test_every_model_option_has_a_flag():
    from core.models.specs import list_models

    options = {o for spec in list_models() for o in spec.option_choices}
    assert options == set(run_config.MODEL_OPTION_FLAGS)


def test_a_config_file_round_trips_through_show_and_train(tmp_path, capsys):
    code = main(["train", "--recipe", "seed003", "--iterations", "3", "--batch-size", "32", "--lr", "0.002",
                 "--run-dir", str(tmp_path / "a"), "--json", "--quiet"])
    first = json.loads(capsys.readouterr().out)
    assert code == 0
    assert main(["show", str(first["run_id"]), "--config"]) == 0
    saved = tmp_path / "run.yaml"
    saved.write_text(capsys.readouterr().out)
    assert "lr: 0.002" in saved.read_text()
    code = main(["train", "--config", str(saved), "--run-dir", str(tmp_path / "b"), "--json", "--quiet"])
    second = json.loads(capsys.readouterr().out)
    assert code == 0 and second["config"] == first["config"]
    # Flags still win over the file; JSON is read too.
    as_json = tmp_path / "run.json"
    as_json.write_text(json.dumps(first["config"]))
    config = build_config(train_args("--config", str(as_json), "--epochs", "2"))
    assert (config.epochs, config.iterations, config.lr) == (2, None, 0.002)


@pytest.mark.parametrize("text, message", [
    ("lr: [0.1", "not valid YAML"),
    ("- just\n- a list", "name: value pairs"),
    ("learning_rate: 0.1", "unknown setting"),
])
def test_a_bad_config_file_is_a_clear_error(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def test_expand_sweep_labels_the_runs_that_cannot_run():
    configs, problems = run_config.expand_sweep(RunConfig(), {"lr": [0.1, 20.0], "batch_size": [32]})
    assert [c.lr for c in configs] == [0.1, 20.0] and all(c.batch_size == 32 for c in configs)
    assert len(problems) == 1 and problems[0].startswith("lr 20.0, batch size 32:") and "far too large" in problems[0]
    assert run_config.expand_sweep(RunConfig(), {}) == ([RunConfig()], [])


@pytest.mark.parametrize("argv, flag, field", [
    (["--max-minutes", "0"], "--max-minutes must be a positive number", "max_minutes"),
    (["--label-smoothing", "2"], "--label-smoothing", "label_smoothing"),
])
def test_a_problem_names_the_flag_the_user_typed_not_the_field(capsys, argv, flag, field):
    code = main(["train", "--dataset", "digits", *argv])
    err = capsys.readouterr().err
    assert code != 0 and flag in err and field not in err and "Traceback" not in err
