"""Pretrained torchvision weights: a local file, the hub cache, and a clear error otherwise.

No test here touches the network: downloads are replaced by stand-ins.
"""

import os
import socket
import sys
import time
import urllib.error

import pytest
import torch
import torchvision

from core.errors import ModelError
from core.models import sources
from core.models.registry import build_model
from core.models.specs import pretrained_available
from core.models.summary import summarize


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache; any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case someone called set_dir

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download without download=True")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    return tmp_path / "torch"


@pytest.fixture(scope="module")
def imagenet_resnet18():
    """Stands in for ImageNet weights: a 1000-class resnet18 with recognisable values."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        model.bn1.running_mean.fill_(0.25)  # a buffer too, not only parameters
    return model.state_dict()


def _assert_backbone_is(model, state):
    own = model.state_dict()
    backbone = [k for k in state if not k.startswith("fc.")]
    assert len(backbone) > 100
    for key in backbone:
        assert torch.equal(own[key], state[key]), key


def test_pretrained_from_a_local_file(tmp_path, torch_home, imagenet_resnet18):
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(imagenet_resnet18, path)
    model = build_model("resnet18", 5, pretrained=True, pretrained_path=str(path))
    _assert_backbone_is(model, imagenet_resnet18)
    assert model.fc.weight.shape == (5, 512) and model.fc.bias.shape == (5,)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_a_path_alone_means_pretrained_and_wrapped_files_are_accepted(tmp_path, torch_home, imagenet_resnet18):
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in imagenet_resnet18.items()}, "epoch": 3}, path)
    model = build_model("resnet18", 3, pretrained_path=str(path))
    _assert_backbone_is(model, imagenet_resnet18)


def test_pretrained_from_the_hub_cache(torch_home, imagenet_resnet18):
    # The file name torchvision itself downloads to, written by hand here.
    cached = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert sources.expected_cache_path("resnet18") == str(cached)
    cached.parent.mkdir(parents=True)
    torch.save(imagenet_resnet18, cached)
    model = build_model("resnet18", 4, pretrained=True)
    _assert_backbone_is(model, imagenet_resnet18)
    assert model.fc.out_features == 4


def test_expected_cache_names_are_torchvisions():
    names = {n: os.path.basename(sources.expected_cache_path(n)) for n in sources.TORCHVISION_ARCHS}
    assert names == {
        "resnet18": "resnet18-f37072fd.pth",
        "mobilenet_v3_small": "mobilenet_v3_small-047dcff4.pth",
        "vgg16": "vgg16-397923af.pth",
    }


def test_the_catalogs_weight_urls_are_torchvisions():
    # core.models.sources names them without importing torchvision; torchvision says the same.
    for name, arch in sources.TORCHVISION_ARCHS.items():
        assert arch.url == getattr(torchvision.models, arch.weights).IMAGENET1K_V1.url, name


def test_the_hub_folder_is_found_as_torch_finds_it(monkeypatch, tmp_path):
    # Without torch loaded, $TORCH_HOME, else $XDG_CACHE_HOME/torch, as torch.hub.get_dir().
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert sources.torch_hub_dir() == str(tmp_path / "th" / "hub")
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.torch_hub_dir() == str(tmp_path / "xdg" / "torch" / "hub")


def test_missing_weights_fail_at_once_with_a_clear_message(torch_home):
    start = time.monotonic()
    with pytest.raises(ModelError) as err:
        build_model("resnet18", 2, pretrained=True)
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert str(torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "--pretrained-path" in message
    assert "not on this machine" in message


def test_failed_download_is_a_model_error_with_a_timeout(torch_home, monkeypatch):
    seen = {}

    def offline(url, **kwargs):
        seen["url"], seen["timeout"], seen["kwargs"] = url, socket.getdefaulttimeout(), kwargs
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    before = socket.getdefaulttimeout()
    with pytest.raises(ModelError) as err:
        build_model("mobilenet_v3_small", 2, pretrained=True, download=True)
    assert seen["url"].endswith("mobilenet_v3_small-047dcff4.pth")
    assert seen["timeout"] is not None and seen["timeout"] <= 30  # bounded, never a hang
    assert seen["kwargs"]["weights_only"] is True
    assert socket.getdefaulttimeout() == before  # restored
    message = str(err.value)
    assert "could not download" in message and "name resolution" in message
    assert "--pretrained-path" in message and "mobilenet_v3_small-047dcff4.pth" in message


def test_download_when_allowed(torch_home, monkeypatch):
    donor = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kw: donor)
    model = build_model("mobilenet_v3_small", 3, pretrained=True, download=True)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in donor.items() if not k.startswith("classifier.3."))
    assert model.classifier[3].out_features == 3


def test_weights_of_another_architecture_are_refused(tmp_path, torch_home):
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), path)
    with pytest.raises(ModelError, match="not a resnet18 state_dict.*missing key"):
        build_model("resnet18", 2, pretrained_path=str(path))


def test_weights_with_other_shapes_are_refused(tmp_path, torch_home, imagenet_resnet18):
    state = dict(imagenet_resnet18)
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)  # a one-channel variant
    torch.save(state, tmp_path / "gray.pth")
    with pytest.raises(ModelError, match=r"shape mismatch.*conv1\.weight"):
        build_model("resnet18", 2, pretrained_path=str(tmp_path / "gray.pth"))


def test_files_that_are_not_state_dicts_are_refused(tmp_path, torch_home):
    whole = tmp_path / "whole.pth"
    torch.save(torchvision.models.resnet18(weights=None), whole)  # seed 004's habit
    with pytest.raises(ModelError, match=r"whole pickled model.*model\.state_dict\(\)"):
        build_model("resnet18", 2, pretrained_path=str(whole))

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="not a PyTorch weights file"):
        build_model("resnet18", 2, pretrained_path=str(junk))

    torch.save({"lr": 0.1, "epochs": 3}, tmp_path / "config.pt")
    with pytest.raises(ModelError, match="not a state_dict"):
        build_model("resnet18", 2, pretrained_path=str(tmp_path / "config.pt"))

    with pytest.raises(ModelError, match="not found"):
        build_model("resnet18", 2, pretrained_path=str(tmp_path / "missing.pth"))


def test_freeze_backbone_leaves_only_the_head_trainable(tmp_path, torch_home, imagenet_resnet18):
    torch.save(imagenet_resnet18, tmp_path / "r18.pth")
    model = build_model("resnet18", 3, pretrained_path=str(tmp_path / "r18.pth"), freeze_backbone=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    assert summarize(model).trainable == 512 * 3 + 3


def test_pretrained_available_follows_the_hub_cache(torch_home, imagenet_resnet18):
    found, why = pretrained_available("resnet18")
    cached = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert not found and str(cached) in why and "download.pytorch.org" in why
    cached.parent.mkdir(parents=True)
    torch.save(imagenet_resnet18, cached)
    assert pretrained_available("resnet18") == (True, str(cached))
    assert pretrained_available("mynet") == (False, "mynet has no pretrained weights")
