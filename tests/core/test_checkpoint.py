"""Checkpoints: weights_only loading, clear refusals, bare state_dicts, atomic writes."""

import os
import pickle

import pytest
import torch
import torch.nn as nn

from core.checkpoint import export_state_dict, load_checkpoint, read_file, save_atomic
from core.errors import CheckpointError


class TutorialLeNet(nn.Module):
    """Seed 004's LeNet as its tutorial writes it (3x3 kernels), for whole-model pickles."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)


class Payload:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_whole_pickled_model_is_refused_with_how_to_resave(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(TutorialLeNet(), path)  # seed 004's habit
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, model="lenet5")
    message = str(err.value)
    assert "whole pickled model" in message and "state_dict()" in message


def test_pickle_with_a_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weights": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="run code"):
        load_checkpoint(path, model="mnist_cnn")
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain, model="mnist_cnn")
    assert not marker.exists()


@pytest.mark.parametrize("content, says", [
    (b"", "not a PyTorch checkpoint \\(an empty file\\)"),
    (b"id,label\n1,cat\n", "not a PyTorch checkpoint \\(neither torch.save's ZIP format nor a pickle\\)"),  # a CSV
    (b"\xff\xd8\xff\xe0 a JPEG", "neither torch.save's ZIP format nor a pickle"),
    (b"PK\x03\x04garbage", "x.pt"),
])
def test_garbage_files_are_refused(tmp_path, content, says):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=says) as refused:
        load_checkpoint(path, model="mnist_cnn")
    assert "Python objects" not in str(refused.value) and "KeyError" not in str(refused.value)


def test_missing_file_and_non_state_dicts(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(path, model="mnist_cnn")


def test_checkpoint_of_another_architecture_is_refused(tmp_path, digits_checkpoint):
    path = tmp_path / "lenet.pt"
    torch.save(TutorialLeNet().state_dict(), path)
    with pytest.raises(CheckpointError, match="not a mnist_cnn"):
        load_checkpoint(path, model="mnist_cnn")
    with pytest.raises(CheckpointError, match="is a mnist_cnn, not a mynet"):
        load_checkpoint(digits_checkpoint, model="mynet")


def test_bare_state_dict_needs_a_model_name_and_a_fitting_class_count(tmp_path):
    path = tmp_path / "lenet.pt"
    torch.save(TutorialLeNet().state_dict(), path)
    with pytest.raises(CheckpointError, match="give the model name"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="10 classes, but 2 class names"):
        load_checkpoint(path, model="lenet5", options={"kernel": 3}, classes=["a", "b"])
    ckpt = load_checkpoint(path, model="lenet5", options={"kernel": 3})
    assert ckpt.kind == "state_dict" and ckpt.classes == [str(i) for i in range(10)]
    assert ckpt.preprocessing["height"] == 28  # kernel 3 takes MNIST-sized input


def test_export_gives_a_state_dict_the_tutorial_class_loads(tmp_path, digits_checkpoint):
    out = export_state_dict(digits_checkpoint, tmp_path / "mnist_cnn.pt")
    state = torch.load(out, weights_only=True)
    assert set(state) == set(load_checkpoint(digits_checkpoint).state_dict)
    again = load_checkpoint(out, model="mnist_cnn")
    for key, value in state.items():
        assert torch.equal(again.state_dict[key], value)


def test_atomic_save_leaves_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_atomic({"a": torch.ones(2)}, path)

    def broken_save(obj, fh):
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_atomic({"a": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_unwritable_checkpoint_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        save_atomic({"a": torch.ones(1)}, blocker / "sub" / "c.pt")


def _mnist_state():
    from core.models.registry import build_model

    torch.manual_seed(0)
    return build_model("mnist_cnn", 10).state_dict()


@pytest.mark.parametrize("prefix", ["module.", "module._orig_mod.", "_orig_mod.module.", "_fsdp_wrapped_module."])
def test_wrapper_prefixes_are_stripped_wherever_a_checkpoint_is_read(tmp_path, prefix):
    from core.predict import Predictor

    state = _mnist_state()
    path = tmp_path / "cnn.pt"
    torch.save({prefix + k: v for k, v in state.items()}, path)
    ckpt = load_checkpoint(path, model="mnist_cnn")
    assert set(ckpt.state_dict) == set(state)
    assert Predictor(str(path), model="mnist_cnn").classes == [str(i) for i in range(10)]
    # An averaged model (torch.optim.swa_utils.AveragedModel) adds a counter too.
    torch.save({"n_averaged": torch.tensor(3), **{"module." + k: v for k, v in state.items()}}, path)
    assert set(load_checkpoint(path, model="mnist_cnn").state_dict) == set(state)


def test_a_training_scripts_checkpoint_with_numpy_numbers_loads(tmp_path):
    import numpy as np

    path = tmp_path / "ckpt.pt"
    torch.save({"model_state_dict": _mnist_state(), "epoch": 7, "best_acc": np.float64(0.94),
                "history": np.arange(3, dtype=np.float32)}, path)
    data = read_file(path)
    assert data["best_acc"] == pytest.approx(0.94) and data["history"].tolist() == [0.0, 1.0, 2.0]
    assert load_checkpoint(path, model="mnist_cnn").model_name == "mnist_cnn"
    torch.save({"model_state_dict": _mnist_state(), "notes": np.array([1, "x"], dtype=object)}, path)
    with pytest.raises(CheckpointError, match="numpy array of Python objects"):
        read_file(path)


def test_a_checkpoint_holding_an_argparse_namespace_names_it_and_says_how_to_resave(tmp_path):
    import argparse

    path = tmp_path / "ckpt.pt"
    torch.save({"model_state_dict": _mnist_state(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError) as err:
        read_file(path)
    text = str(err.value)
    assert "argparse.Namespace" in text and "'args'" in text and "vars(args)" in text
    assert "OrderedDict" not in text


def test_a_zip_that_torch_did_not_write_is_named_as_such(tmp_path):
    import zipfile

    from core.checkpoint import load_checkpoint
    from core.errors import CheckpointError

    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/1.png", b"not really")
    with pytest.raises(CheckpointError, match="a ZIP file, but not one torch.save wrote") as caught:
        load_checkpoint(path)
    assert "hasRecord" not in str(caught.value) and "PyTorch" in str(caught.value)
