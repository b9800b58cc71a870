"""What the training loop asks of a model: its summary, its parameter groups, a frozen backbone."""

import json

import pytest
import torch
from torch import nn

from core.errors import ConfigError, ModelError
from core.models.registry import build_model, param_groups, set_train_mode
from core.models.summary import ModelSummary, summarize


# -- summary ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mynet", "mnist_cnn", "lenet5", "tiny_net", "mobilenet_v3_small"])
def test_summary_counts_every_parameter(name):
    model = build_model(name, 3)
    summary = summarize(model)
    params = dict(model.named_parameters())
    assert [row.name for row in summary.rows] == list(params)
    for row in summary.rows:
        assert row.shape == tuple(params[row.name].shape)
        assert row.numel == params[row.name].numel()
        assert row.trainable
    assert summary.total == sum(p.numel() for p in model.parameters())
    assert summary.trainable == summary.total and summary.frozen == 0


def test_tiny_net_summary_is_seed_002s_listing():
    summary = summarize(build_model("tiny_net", 10))
    assert [tuple(r[:2]) for r in summary.rows] == [
        ("conv1.weight", (6, 1, 3, 3)),
        ("conv1.bias", (6,)),
        ("fc1.weight", (10, 1350)),
        ("fc1.bias", (10,)),
    ]
    assert summary.total == 54 + 6 + 13500 + 10
    text = summary.as_text()
    assert "fc1.weight" in text and "10x1350" in text and "13,500" in text
    assert "total 13,570 parameters: 13,570 trainable, 0 frozen" in text


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_freeze_backbone_drops_the_trainable_count_to_the_head(name):
    full = summarize(build_model(name, 7))
    frozen_model = build_model(name, 7, freeze_backbone=True)
    frozen = summarize(frozen_model)
    assert frozen.total == full.total
    head_size = 7 * frozen_model.get_submodule("fc" if name == "resnet18" else "classifier.3").in_features + 7
    assert frozen.trainable == head_size < full.trainable
    assert frozen.frozen == full.total - head_size
    assert "no" in frozen.as_text().split("\n")[2]  # the first parameter row is frozen


def test_freeze_backbone_on_a_seed_net_keeps_its_head():
    model = build_model("mnist_cnn", 10, freeze_backbone=True)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["classfier.2.weight", "classfier.2.bias"]


def test_summary_to_dict_is_plain_and_round_trips():
    summary = summarize(build_model("lenet5", 10, freeze_backbone=True))
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["total"] == summary.total and data["trainable"] == summary.trainable == 84 * 10 + 10
    assert data["rows"][0] == {"name": "conv1.weight", "shape": [6, 1, 5, 5], "numel": 150, "trainable": False}
    assert ModelSummary.from_dict(data) == summary


def test_summary_uses_the_bare_names_of_a_wrapped_model():
    model = build_model("tiny_net", 10)
    assert summarize(nn.DataParallel(model)) == summarize(model)


# -- parameter groups ---------------------------------------------------------------------


def test_seed_net_trains_as_one_group():
    model = build_model("mynet", 2)
    groups = param_groups(model, "mynet", lr=0.01, backbone_lr_mult=0.1)
    assert len(groups) == 1
    assert groups[0]["name"] == "all" and groups[0]["lr"] == 0.01
    assert len(groups[0]["params"]) == len(list(model.parameters()))


def test_torchvision_groups_give_the_backbone_a_smaller_rate():
    model = build_model("resnet18", 3)
    groups = {g["name"]: g for g in param_groups(model, "resnet18", lr=1e-3, backbone_lr_mult=0.1)}
    assert set(groups) == {"head", "backbone"}
    assert groups["head"]["lr"] == 1e-3
    assert groups["backbone"]["lr"] == pytest.approx(1e-4)
    assert {id(p) for p in groups["head"]["params"]} == {id(model.fc.weight), id(model.fc.bias)}
    assert len(groups["head"]["params"]) + len(groups["backbone"]["params"]) == len(list(model.parameters()))

    # torch accepts them as they are, with the group's own rate.
    optimizer = torch.optim.SGD(list(groups.values()), lr=1.0, momentum=0.9)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, pytest.approx(1e-4)]
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()


def test_only_trainable_parameters_are_grouped():
    model = build_model("mobilenet_v3_small", 3, freeze_backbone=True)
    groups = param_groups(model, "mobilenet_v3_small", lr=0.01, backbone_lr_mult=0.1)
    assert [g["name"] for g in groups] == ["head"]
    assert all(p.requires_grad for p in groups[0]["params"])

    model = build_model("lenet5", 10, freeze_backbone=True)
    (group,) = param_groups(model, "lenet5", lr=0.01)
    assert [p.shape for p in group["params"]] == [(10, 84), (10,)]


def test_nothing_to_train_and_bad_rates_are_refused():
    model = build_model("tiny_net", 2)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ModelError, match="no trainable parameters"):
        param_groups(model, "tiny_net", lr=0.1)
    with pytest.raises(ConfigError, match="learning rate must be positive"):
        param_groups(build_model("tiny_net", 2), "tiny_net", lr=0)
    with pytest.raises(ConfigError, match="learning rate must be positive"):
        param_groups(build_model("tiny_net", 2), "tiny_net", lr=float("nan"))
    with pytest.raises(ConfigError, match="multiplier must be positive"):
        param_groups(build_model("resnet18", 2), "resnet18", lr=0.1, backbone_lr_mult=-1)


def test_set_train_mode_keeps_a_frozen_backbones_batchnorm_in_eval():
    frozen = set_train_mode(build_model("resnet18", 3, freeze_backbone=True))
    assert frozen.training and frozen.fc.training
    batchnorms = [m for m in frozen.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batchnorms and not any(m.training for m in batchnorms)
    before = frozen.bn1.running_mean.clone()
    frozen(torch.randn(4, 3, 32, 32))
    assert torch.equal(frozen.bn1.running_mean, before)  # ImageNet statistics kept

    trainable = set_train_mode(build_model("resnet18", 3))
    assert all(m.training for m in trainable.modules())
