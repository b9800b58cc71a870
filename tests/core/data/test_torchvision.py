"""torchvision MNIST / FashionMNIST / CIFAR10 from files in torchvision's own on-disk format."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from core.data import torchvision_sets
from core.data.catalog import TORCHVISION_DATASETS
from core.data.preprocess import Preprocessing
from core.data.registry import list_datasets, load_dataset, sample_images
from core.errors import DatasetError


def test_the_catalogs_names_are_the_sets_described_here():
    assert tuple(torchvision_sets.SPECS) == TORCHVISION_DATASETS


def write_idx(root: Path, folder: str, n_train: int = 30, n_test: int = 10, seed: int = 0):
    """MNIST's raw idx files (uint8 magic 0x0803 images, 0x0801 labels, big-endian)."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x0803, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, n) + labels.tobytes())
        data[prefix] = (images, labels)
    return data


def write_cifar(root: Path, per_batch: int = 4, seed: int = 0):
    """CIFAR-10's python pickles; returns the checksums torchvision must accept."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    counter = 0
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        labels = [(counter + k) % 10 for k in range(per_batch)]  # every class appears in train
        counter += per_batch
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels, "filenames": []}, f)
        batches[name] = (data, labels)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    return batches, md5


@pytest.fixture
def cifar_checksums(monkeypatch):
    """torchvision verifies CIFAR files by md5: make it expect the test-written files'."""

    def accept(md5: dict[str, str]) -> None:
        monkeypatch.setattr(tvd.CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
        monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
        monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": md5["batches.meta"]})

    return accept


def test_mnist_from_idx_files(tmp_path, monkeypatch):
    data = write_idx(tmp_path, "MNIST")
    splits = load_dataset("MNIST", Preprocessing(28, 28, channels=1), data_root=str(tmp_path))
    assert splits.name == "mnist"
    assert splits.classes[0] == "0 - zero" and len(splits.classes) == 10
    assert torch.equal(splits.train.images[:, 0], torch.from_numpy(data["train"][0]))
    assert torch.equal(splits.test.labels, torch.from_numpy(data["t10k"][1].astype(np.int64)))
    rgb = load_dataset("mnist", Preprocessing(32, 32, channels=3), data_root=str(tmp_path))
    assert rgb.train.images.shape == (30, 3, 32, 32)
    assert torch.equal(rgb.train.images[:, 0], rgb.train.images[:, 2])
    # cached: a second load does not open torchvision at all
    monkeypatch.setattr(tvd, "MNIST", None)
    cached = load_dataset("mnist", Preprocessing(32, 32, channels=3), data_root=str(tmp_path))
    assert torch.equal(cached.train.images, rgb.train.images)


def test_mnist_from_gz_copies(tmp_path):
    data = write_idx(tmp_path, "MNIST")
    for file in (tmp_path / "MNIST" / "raw").iterdir():
        file.with_name(file.name + ".gz").write_bytes(gzip.compress(file.read_bytes()))
        file.unlink()
    splits = load_dataset("mnist", Preprocessing(28, 28, channels=1), data_root=str(tmp_path))
    assert torch.equal(splits.test.images[:, 0], torch.from_numpy(data["t10k"][0]))


def test_fashionmnist_and_env_root(tmp_path, monkeypatch):
    write_idx(tmp_path, "FashionMNIST", seed=3)
    monkeypatch.setenv("IMORI_DATA_ROOT", str(tmp_path))
    splits = load_dataset("Fashion-MNIST", Preprocessing(28, 28, channels=1))
    assert splits.classes[-1] == "Ankle boot" and len(splits.test) == 10
    present = {d.name: d.present for d in list_datasets()}
    assert present == {**present, "fashionmnist": True, "mnist": False, "cifar10": False}
    grid = sample_images("fashionmnist", per_class=1)
    assert sum(len(v) for v in grid.values()) == 10


def test_cifar10_from_pickles(tmp_path, cifar_checksums):
    batches, md5 = write_cifar(tmp_path)
    cifar_checksums(md5)
    splits = load_dataset("CIFAR10", Preprocessing(32, 32), data_root=str(tmp_path))
    assert splits.classes[:2] == ["airplane", "automobile"]
    assert len(splits.train) == 20 and len(splits.test) == 4
    first = torch.from_numpy(batches["data_batch_1"][0][0].reshape(3, 32, 32))
    assert torch.equal(splits.train.images[0], first)  # CHW in RGB order
    assert splits.train.labels[:4].tolist() == batches["data_batch_1"][1]
    bgr = load_dataset("cifar10", Preprocessing(32, 32, channel_order="BGR"), data_root=str(tmp_path))
    assert torch.equal(bgr.train.images, splits.train.images.flip(1))
    gray = load_dataset("cifar10", Preprocessing(28, 28, channels=1), data_root=str(tmp_path))
    assert gray.train.images.shape == (20, 1, 28, 28)


def test_cifar10_failing_checksums_is_a_clear_error(tmp_path):
    write_cifar(tmp_path)  # torchvision's real checksums do not match these files
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", Preprocessing(32, 32), data_root=str(tmp_path))
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)
    assert "checks" in str(err.value)


@pytest.mark.parametrize("name", TORCHVISION_DATASETS)
def test_missing_dataset_names_the_path(tmp_path, name):
    with pytest.raises(DatasetError) as err:
        load_dataset(name, Preprocessing(28, 28, channels=1), data_root=str(tmp_path / "root"))
    message = str(err.value)
    assert str(tmp_path / "root") in message and "--download" in message


def test_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    def offline(self):
        raise URLError("no network")

    monkeypatch.setattr(tvd.MNIST, "download", offline)
    with pytest.raises(DatasetError, match="could not download MNIST") as err:
        load_dataset("mnist", Preprocessing(28, 28, channels=1), data_root=str(tmp_path), download=True)
    assert str(tmp_path) in str(err.value)


def test_malformed_idx_file(tmp_path):
    write_idx(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(DatasetError, match="MNIST"):
        load_dataset("mnist", Preprocessing(28, 28, channels=1), data_root=str(tmp_path))


def test_present_flag(tmp_path):
    assert not torchvision_sets.present("mnist", tmp_path)
    write_idx(tmp_path, "MNIST")
    assert torchvision_sets.present("mnist", tmp_path)
    info = {d.name: d for d in list_datasets(data_root=str(tmp_path))}["mnist"]
    assert info.present and info.location == str(tmp_path / "MNIST" / "raw")
