"""Built-in datasets: digits and the generated shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core import paths
from core.data import builtin
from core.data.catalog import BUILTIN_DATASETS
from core.data.preprocess import Preprocessing
from core.data.registry import load_dataset, sample_images

GRAY28 = Preprocessing(28, 28, channels=1)
RGB64 = Preprocessing(64, 64, channels=3)


def test_digits_asset_is_small_and_complete():
    assert builtin.DIGITS_ASSET.stat().st_size < 60_000
    with np.load(builtin.DIGITS_ASSET) as data:
        assert data["images"].shape == (1797, 8, 8) and data["images"].dtype == np.uint8
        assert data["images"].max() == 16
        assert sorted(set(data["labels"].tolist())) == list(range(10))


def test_digits_counts_and_stratified_split():
    splits = load_dataset("digits", GRAY28)
    assert splits.name == "digits"
    assert splits.classes == [str(d) for d in range(10)]
    assert len(splits.train) + len(splits.test) == 1797
    assert splits.train.images.shape[1:] == (1, 28, 28) and splits.train.images.dtype == torch.uint8
    assert splits.train.labels.dtype == torch.int64
    train = torch.bincount(splits.train.labels, minlength=10)
    test = torch.bincount(splits.test.labels, minlength=10)
    for n_train, n_test in zip(train.tolist(), test.tolist()):
        assert n_test == int(np.floor((n_train + n_test) * 0.2 + 0.5))
    assert splits.report.counts["test"]["0"] == test[0].item()
    # The test split is fixed: a different run seed or fraction does not change it.
    other = load_dataset("Digits", GRAY28, seed=5, test_fraction=0.5)
    assert torch.equal(other.test.images, splits.test.images)
    assert torch.equal(other.test.labels, splits.test.labels)


def test_digits_look_like_mnist():
    native, labels = builtin.digits_native()
    assert native.shape == (1797, 28, 28)
    assert native[:, :4].max() == 0 and native[:, 24:].max() == 0  # black border
    assert native[:, :, :4].max() == 0 and native[:, :, 24:].max() == 0
    assert native.max() == 255
    images = load_dataset("digits", GRAY28)
    first = images.train.images[0, 0].numpy()
    # the cached tensors are the native images (28x28 gray needs no conversion)
    assert any(np.array_equal(first, n) for n in native[:20])


def test_shapes_deterministic():
    a, la = builtin.shapes_native("shapes2", "test")
    b, lb = builtin.shapes_native("shapes2", "test")
    assert a.tobytes() == b.tobytes() and np.array_equal(la, lb)
    c, _ = builtin.shapes_native("shapes", "test")
    assert c.shape == (500, 64, 64, 3)
    assert not np.array_equal(a[:10], c[:10])  # shapes2 has its own images
    assert len({img.tobytes() for img in a}) == len(a)  # every image differs


def test_shapes_balance_and_layout():
    splits = load_dataset("shapes", RGB64)
    assert splits.classes == ["circle", "square", "triangle", "star"]
    assert splits.train.images.shape == (2000, 3, 64, 64)
    assert torch.bincount(splits.train.labels).tolist() == [500] * 4
    assert torch.bincount(splits.test.labels).tolist() == [125] * 4
    two = load_dataset("shapes2", RGB64)
    assert len(two.classes) == 2 and torch.bincount(two.train.labels).tolist() == [500, 500]
    assert set(BUILTIN_DATASETS) == {"digits", "shapes", "shapes2"}


def _colour_features(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.array(images)).float()
    return torch.cat([x.mean((1, 2)), x.std((1, 2))], dim=1)


def test_colour_does_not_give_the_class_away():
    train_x, train_y = builtin.shapes_native("shapes", "train")
    test_x, test_y = builtin.shapes_native("shapes", "test")
    # Mean colour per class is the same within sampling noise.
    means = torch.from_numpy(np.array(train_x)).float().mean((1, 2))
    labels = torch.from_numpy(np.array(train_y))
    overall = means.mean(0)
    for c in range(4):
        assert (means[labels == c].mean(0) - overall).abs().max() < 8.0
    # A logistic regression on each image's mean and spread of colour is near chance.
    ftr, fte = _colour_features(train_x), _colour_features(test_x)
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    ftr, fte = (ftr - mu) / sd, (fte - mu) / sd
    torch.manual_seed(0)
    linear = torch.nn.Linear(ftr.shape[1], 4)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=100)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(ftr), labels)
        loss.backward()
        return loss

    opt.step(closure)
    accuracy = (linear(fte).argmax(1) == torch.from_numpy(np.array(test_y))).float().mean().item()
    assert accuracy < 0.25 + 0.08


def test_shapes_have_contrast():
    images, _ = builtin.shapes_native("shapes2", "test")
    # each image has a shape that stands out: a wide spread of luminance
    luma = images.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    spread = np.percentile(luma, 95, axis=(1, 2)) - np.percentile(luma, 5, axis=(1, 2))
    assert spread.min() > 40


def test_bgr_flips_channels():
    rgb = load_dataset("shapes2", RGB64)
    bgr = load_dataset("shapes2", Preprocessing(64, 64, channel_order="BGR"))
    assert torch.equal(bgr.train.images, rgb.train.images.flip(1))
    assert not torch.equal(bgr.train.images, rgb.train.images)


def test_conversion_matches_to_uint8():
    prep = Preprocessing(32, 32, channels=3, channel_order="BGR")
    splits = load_dataset("digits", prep)
    native, _ = builtin.digits_native()
    from PIL import Image

    expected = [prep.to_uint8(Image.fromarray(n)) for n in native[:50]]
    got = splits.train.images
    assert got.shape[1:] == (3, 32, 32)
    assert any(torch.equal(got[0], e) for e in expected)
    gray = load_dataset("shapes2", Preprocessing(28, 28, channels=1))
    assert gray.train.images.shape == (1000, 1, 28, 28)
    img, _ = builtin.shape_image("shapes2", "train", 0)
    assert torch.equal(gray.train.images[0], Preprocessing(28, 28, channels=1).to_uint8(Image.fromarray(img)))


def test_cache_hit_returns_equal_tensors(monkeypatch):
    first = load_dataset("shapes2", RGB64)
    files = list(paths.cache_dir().glob("shapes2-*.pt"))
    assert len(files) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(builtin, "_decode", no_decoding)
    second = load_dataset("shapes2", RGB64)
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.test.labels, second.test.labels)
    assert second.report.counts == first.report.counts


def test_unreadable_cache_is_rebuilt():
    first = load_dataset("digits", GRAY28)
    (cached,) = paths.cache_dir().glob("digits-*.pt")
    cached.write_bytes(b"not a torch file")
    again = load_dataset("digits", GRAY28)
    assert torch.equal(first.train.images, again.train.images)
    assert cached.stat().st_size > 1000  # rewritten


def test_samples():
    grid = sample_images("digits", per_class=3)
    assert list(grid) == [str(d) for d in range(10)]
    assert all(len(v) == 3 and v[0].size == (28, 28) for v in grid.values())
    shapes = sample_images("shapes", per_class=2)
    assert list(shapes) == ["circle", "square", "triangle", "star"]
    assert all(len(v) == 2 and v[0].mode == "RGB" for v in shapes.values())
    with pytest.raises(Exception):
        sample_images("digits", per_class=0)
