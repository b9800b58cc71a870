"""Starting a run from an earlier run's checkpoint of the same model (seed 002's 'start from')."""

import pytest
import torch

from core.errors import ModelError
from core.models.registry import build_model, load_init_weights


def _equal_except(model, state, skipped_prefix=None):
    own = model.state_dict()
    for key, value in state.items():
        if skipped_prefix and key.startswith(skipped_prefix):
            continue
        assert torch.equal(own[key], value), key


def test_same_class_count_loads_everything():
    earlier = build_model("mynet", 2)
    with torch.no_grad():
        earlier.bn1_1.running_mean.fill_(0.5)
    model = build_model("mynet", 2)
    assert load_init_weights(model, "mynet", earlier.state_dict()) == []
    _equal_except(model, earlier.state_dict())


@pytest.mark.parametrize(
    "name, head",
    [("mynet", "fc_out"), ("mnist_cnn", "classfier.2"), ("lenet5", "fc3"), ("tiny_net", "fc1"), ("resnet18", "fc")],
)
def test_other_class_count_skips_only_the_head(name, head):
    earlier = build_model(name, 10)
    model = build_model(name, 3)
    fresh_head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(head + ".")}
    skipped = load_init_weights(model, name, earlier.state_dict())
    assert skipped == sorted([f"{head}.weight", f"{head}.bias"])
    _equal_except(model, earlier.state_dict(), skipped_prefix=head + ".")
    own = model.state_dict()
    for key, value in fresh_head.items():  # the new head keeps its new size and values
        assert torch.equal(own[key], value)
    assert model.get_submodule(head).out_features == 3


def test_checkpoint_wrappers_and_prefixes_are_accepted():
    earlier = build_model("lenet5", 10)
    model = build_model("lenet5", 10)
    wrapped = {"model": {f"_orig_mod.{k}": v for k, v in earlier.state_dict().items()}}
    assert load_init_weights(model, "lenet5", wrapped) == []
    _equal_except(model, earlier.state_dict())


@pytest.mark.parametrize(
    "source, target",
    [
        (("lenet5", {}, None), ("mynet", {}, None)),  # another model altogether
        (("tiny_net", {}, None), ("lenet5", {}, None)),  # same key names, other shapes
        (("lenet5", {"kernel": 3}, None), ("lenet5", {"kernel": 5}, None)),  # the other kernel
        (("mynet", {}, (64, 64)), ("mynet", {}, (32, 32))),  # another input size: fc1 differs
        (("mobilenet_v3_small", {}, None), ("resnet18", {}, None)),
    ],
)
def test_another_architecture_is_refused(source, target):
    name, options, size = source
    state = build_model(name, 10, options=options, image_size=size).state_dict()
    name, options, size = target
    model = build_model(name, 10, options=options, image_size=size)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ModelError, match=f"another architecture than {name}"):
        load_init_weights(model, name, state)
    # Nothing was half-loaded.
    _equal_except(model, before)


def test_missing_and_unexpected_keys_are_named():
    state = build_model("tiny_net", 10).state_dict()
    state.pop("conv1.bias")
    state["conv2.weight"] = torch.zeros(1)
    with pytest.raises(ModelError, match=r"1 missing key, e\.g\. conv1\.bias; 1 unexpected key, e\.g\. conv2\.weight"):
        load_init_weights(build_model("tiny_net", 10), "tiny_net", state)


def test_not_a_state_dict_is_refused():
    with pytest.raises(ModelError, match="not a state_dict"):
        load_init_weights(build_model("tiny_net", 10), "tiny_net", {"epoch": 3})
