"""Datasets over IMORI_MAX_DATASET_RAM: decoded in chunks into an on-disk uint8 file beside
the cache payload, read back by index, with the same pixels as in memory."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch

from core.data import cache, memory
from core.data.cache import DiskImages, ImageSink
from core.data.memory import max_dataset_ram, parse_bytes
from core.data.registry import load_dataset
from core.data.preprocess import Preprocessing
from core.errors import ConfigError, DatasetError

PREP = Preprocessing(16, 16)  # 768 bytes an image


@pytest.mark.parametrize("text, size", [
    ("512kB", 512_000), ("200MB", 200_000_000), ("2GB", 2_000_000_000), ("1.5GiB", 3 * 2**29),
    ("1000000", 1_000_000), (" 64 mb ", 64_000_000), ("10KiB", 10_240), ("7b", 7),
])
def test_sizes_are_read_with_their_suffix(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["lots", "-5MB", "0", "12XB", "", "1e9", "MB"])
def test_a_nonsense_cap_is_a_clear_error(text, monkeypatch):
    with pytest.raises(ConfigError, match="IMORI_MAX_DATASET_RAM must be"):
        parse_bytes(text)
    if text.strip():
        monkeypatch.setenv("IMORI_MAX_DATASET_RAM", text)
        with pytest.raises(ConfigError, match="IMORI_MAX_DATASET_RAM"):
            max_dataset_ram()


def test_the_default_cap_is_half_the_memory(monkeypatch):
    monkeypatch.delenv("IMORI_MAX_DATASET_RAM", raising=False)
    monkeypatch.setattr(memory, "physical_memory", lambda: 8_000_000_000)
    assert max_dataset_ram() == 4_000_000_000
    monkeypatch.setenv("IMORI_MAX_DATASET_RAM", "3MB")
    assert max_dataset_ram() == 3_000_000


def _folder(tmp_path, helpers):
    root = helpers.make_class_folders(tmp_path / "set", {"a": 23, "b": 19})
    (root / "b" / "broken.png").write_bytes(b"\x89PNG not really")  # skipped: rows compacted over it
    return root


def _pixels(part) -> torch.Tensor:
    return part.images[torch.arange(len(part))]


def test_a_folder_over_the_cap_streams_with_the_same_pixels(tmp_path, helpers, monkeypatch, data_home):
    root = _folder(tmp_path, helpers)
    monkeypatch.delenv("IMORI_MAX_DATASET_RAM", raising=False)
    memory = load_dataset(str(root), PREP, test_fraction=0.25)
    assert isinstance(memory.train.images, torch.Tensor) and len(memory.report.skipped) == 1
    decoded = 42 * 3 * 16 * 16
    monkeypatch.setenv("IMORI_MAX_DATASET_RAM", str(decoded // 4))  # a quarter: must stream
    streamed = load_dataset(str(root), PREP, test_fraction=0.25)
    assert isinstance(streamed.train.images, DiskImages)
    assert streamed.train.images.path.suffix == ".u8" and streamed.train.images.path.stat().st_size == decoded
    for a, b in ((memory.train, streamed.train), (memory.test, streamed.test)):
        assert torch.equal(a.labels, b.labels) and a.names == b.names
        assert torch.equal(_pixels(a), _pixels(b))
    assert streamed.image_shape == (3, 16, 16) and streamed.report.to_dict() == memory.report.to_dict()
    # Read by index, slice or position, in the order asked, and a subset of a subset.
    images, idx = streamed.train.images, torch.tensor([5, 0, 5, 17])
    assert torch.equal(images[idx], memory.train.images[idx])
    assert torch.equal(images[3:9], memory.train.images[3:9]) and torch.equal(images[2], memory.train.images[2])
    assert torch.equal(images.subset(torch.tensor([9, 4, 1])).subset([2, 0])[:], memory.train.images[[1, 9]])
    assert torch.equal(torch.cat(list(images.split(7))), memory.train.images)
    # Listed (and cleared) with the decoded datasets, beside the payload that indexes it.
    listed = {e.path: e for e in cache.entries("data")}
    assert str(images.path) in listed and "on disk" in listed[str(images.path)].name

    # The next load reads the file without decoding anything.
    monkeypatch.setattr("core.data.decode.open_image", lambda *a, **k: pytest.fail("decoded again"))
    again = load_dataset(str(root), PREP, test_fraction=0.25)
    assert isinstance(again.train.images, DiskImages) and torch.equal(_pixels(again.train), _pixels(memory.train))
    # Under a cap it fits again, the same file is read into memory.
    monkeypatch.setenv("IMORI_MAX_DATASET_RAM", "1GB")
    back = load_dataset(str(root), PREP, test_fraction=0.25)
    assert isinstance(back.train.images, torch.Tensor) and torch.equal(back.train.images, memory.train.images)
    assert cache.clear("data") >= 2 and cache.entries("data") == []


def test_a_half_written_image_file_is_never_used(tmp_path, helpers, monkeypatch):
    root = _folder(tmp_path, helpers)
    monkeypatch.setenv("IMORI_MAX_DATASET_RAM", "5kB")
    first = load_dataset(str(root), PREP, test_fraction=0.0)
    path = first.train.images.path
    truth = _pixels(first.train)
    del first
    with open(path, "r+b") as f:  # cut short, as a crash mid-write would leave a file in place
        f.truncate(path.stat().st_size // 2)
    stray = path.parent / f".{path.stem}.pt.abc.tmp"  # what a killed decode leaves: never read
    stray.write_bytes(b"\0" * 100)
    rebuilt = load_dataset(str(root), PREP, test_fraction=0.0)
    assert torch.equal(_pixels(rebuilt.train), truth) and path.stat().st_size == len(truth) * 768
    assert str(stray) not in {e.path for e in cache.entries()}


def test_built_in_digits_stream_identically(monkeypatch):
    prep = Preprocessing(28, 28, channels=1)
    monkeypatch.delenv("IMORI_MAX_DATASET_RAM", raising=False)
    memory = load_dataset("digits", prep)
    monkeypatch.setenv("IMORI_MAX_DATASET_RAM", "300kB")  # digits take 1.4 MB decoded
    streamed = load_dataset("digits", prep)
    assert isinstance(streamed.test.images, DiskImages)
    assert torch.equal(_pixels(streamed.train), memory.train.images)
    assert torch.equal(_pixels(streamed.test), memory.test.images)


def test_no_room_on_disk_is_a_clear_error(tmp_path, helpers, monkeypatch):
    root = _folder(tmp_path, helpers)
    monkeypatch.setenv("IMORI_MAX_DATASET_RAM", "5kB")

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(DatasetError, match="has no room for them .*free disk space"):
        load_dataset(str(root), PREP, test_fraction=0.0)
    assert not [p for p in (cache.paths.cache_dir()).iterdir() if p.name.endswith(".tmp")]


def test_an_anonymous_sink_keeps_its_file_only_while_mapped(monkeypatch):
    monkeypatch.setenv("IMORI_MAX_DATASET_RAM", "500")  # the images take 768 bytes
    rows = np.arange(4 * 3 * 8 * 8, dtype=np.int64).astype(np.uint8).reshape(4, 3, 8, 8)
    with ImageSink(4, (3, 8, 8)) as sink:
        sink.write(2, rows[2:])
        sink.write(0, rows[:2])
        images = sink.finish(np.array([0, 2, 3]))
    assert isinstance(images, DiskImages) and not images.path.exists()  # unlinked, still mapped
    assert torch.equal(images[:], torch.from_numpy(rows[[0, 2, 3]]))


def test_reading_by_index_leaves_nothing_resident(tmp_path):
    """A pass over a file in random batches keeps none of it resident in this process (a
    memory map would: on ext4 with large folios each row touched maps up to 2 MB)."""
    path = tmp_path / "big.u8"
    n = 2048  # 2048 x 12 KB = 24 MB
    truth = np.random.default_rng(0).integers(0, 256, (n, 3, 64, 64), dtype=np.uint8)
    truth.tofile(path)
    images = DiskImages(path, (n, 3, 64, 64))

    def mapped() -> int:  # pages of this file mapped into this process
        total, mine = 0, False
        with open("/proc/self/smaps") as f:
            for line in f:
                head = line.split()
                if head and "-" in head[0] and len(head) >= 5:  # a mapping's first line
                    mine = line.rstrip().endswith(str(path))
                elif mine and head and head[0] == "Rss:":
                    total += int(head[1]) * 1024
        return total

    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    for b in range(0, n, 64):
        batch = images[order[b : b + 64]]
        assert mapped() == 0
        assert torch.equal(batch, torch.from_numpy(truth[order[b : b + 64].numpy()]))
    with pytest.raises(IndexError):
        images[torch.tensor([n])]
    assert torch.equal(images[-1], torch.from_numpy(truth[-1]))
    view = images.subset(order[:10])
    path.unlink()  # cleared meanwhile: what is open stays readable
    assert torch.equal(view[:], torch.from_numpy(truth[order[:10].numpy()]))
