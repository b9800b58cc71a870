"""The seed nets against the tutorials' own classes, written here the tutorials' way.

A state_dict saved by a tutorial script must load into imori's model with strict=True,
imori's must load back into the tutorial's class, and both must compute the same thing.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.models.registry import build_model
from core.models.specs import get_spec


# -- the tutorials' classes ---------------------------------------------------------------


class Seed000Mynet(nn.Module):
    """Seed 000's Mynet: F.relu calls, the seed's own fc1 size expression and view."""

    def __init__(self, num_classes=2, img_height=64, img_width=64):
        super().__init__()
        self.h, self.w = img_height, img_width
        self.conv1_1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
        self.bn1_1 = nn.BatchNorm2d(32)
        self.conv1_2 = nn.Conv2d(32, 32, kernel_size=3, padding=1)
        self.bn1_2 = nn.BatchNorm2d(32)
        self.conv2_1 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.bn2_1 = nn.BatchNorm2d(64)
        self.conv2_2 = nn.Conv2d(64, 64, kernel_size=3, padding=1)
        self.bn2_2 = nn.BatchNorm2d(64)
        self.conv3_1 = nn.Conv2d(64, 128, kernel_size=3, padding=1)
        self.bn3_1 = nn.BatchNorm2d(128)
        self.conv3_2 = nn.Conv2d(128, 128, kernel_size=3, padding=1)
        self.bn3_2 = nn.BatchNorm2d(128)
        self.conv4_1 = nn.Conv2d(128, 256, kernel_size=3, padding=1)
        self.bn4_1 = nn.BatchNorm2d(256)
        self.conv4_2 = nn.Conv2d(256, 256, kernel_size=3, padding=1)
        self.bn4_2 = nn.BatchNorm2d(256)
        self.fc1 = nn.Linear(img_height // 16 * img_width // 16 * 256, 512)
        self.fc2 = nn.Linear(512, 512)
        self.fc_out = nn.Linear(512, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1_1(self.conv1_1(x)))
        x = F.relu(self.bn1_2(self.conv1_2(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn2_1(self.conv2_1(x)))
        x = F.relu(self.bn2_2(self.conv2_2(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn3_1(self.conv3_1(x)))
        x = F.relu(self.bn3_2(self.conv3_2(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn4_1(self.conv4_1(x)))
        x = F.relu(self.bn4_2(self.conv4_2(x)))
        x = F.max_pool2d(x, 2)
        x = x.view(-1, self.h // 16 * self.w // 16 * 256)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc_out(x)
        return x


class Seed003Net(nn.Module):
    """Seed 003's MNIST net: base_net and (sic) classfier Sequentials, bare LogSoftmax()."""

    def __init__(self):
        super().__init__()
        self.base_net = nn.Sequential(
            nn.Conv2d(1, 20, 5, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 40, 5, 1),
            nn.ReLU(),
        )
        self.classfier = nn.Sequential(
            nn.Linear(40 * 8 * 8, 100),
            nn.ReLU(),
            nn.Linear(100, 10),
            nn.LogSoftmax(),
        )

    def forward(self, x):
        x = self.base_net(x)
        x = x.view(-1, 40 * 8 * 8)
        x = self.classfier(x)
        return x


class Seed004LeNet(nn.Module):
    """Seed 004's LeNet as written (3x3 kernels), or the classic 5x5 its text describes."""

    def __init__(self, kernel=3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel)
        self.conv2 = nn.Conv2d(6, 16, kernel)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, self.num_flat_features(x))
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x

    def num_flat_features(self, x):
        num_features = 1
        for s in x.size()[1:]:
            num_features *= s
        return num_features


class Seed002Net(nn.Module):
    """Seed 002's tiny net: conv 6@3x3, pool, fc 1350 -> 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.fc1 = nn.Linear(1350, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = F.max_pool2d(x, (2, 2))
        x = F.relu(x)
        x = x.view(x.size()[0], -1)
        x = self.fc1(x)
        return x


# -- the checks ---------------------------------------------------------------------------

CASES = {
    # id: (tutorial factory, imori name, num_classes, options, input shape)
    "seed000-mynet-64": (lambda: Seed000Mynet(2), "mynet", 2, {}, (3, 64, 64)),
    "seed000-mynet-32x48": (lambda: Seed000Mynet(2, 32, 48), "mynet", 2, {}, (3, 32, 48)),
    "seed003-mnist": (Seed003Net, "mnist_cnn", 10, {}, (1, 28, 28)),
    "seed004-lenet-k3": (lambda: Seed004LeNet(kernel=3), "lenet5", 10, {"kernel": 3}, (1, 28, 28)),
    "seed004-lenet-k5": (lambda: Seed004LeNet(kernel=5), "lenet5", 10, {"kernel": 5}, (1, 32, 32)),
    "seed002-tiny": (Seed002Net, "tiny_net", 10, {}, (1, 32, 32)),
}


def _randomise(model: nn.Module, seed: int) -> None:
    """Give BatchNorm non-default statistics and affine values, so that eval mode matters.

    Other weights keep their (random) default initialisation, which differs per instance.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.1)


def _build(name, classes, options, shape):
    return build_model(name, classes, image_size=shape[1:], options=options)


@pytest.mark.filterwarnings("ignore:Implicit dimension choice")
@pytest.mark.parametrize("case", list(CASES))
def test_same_parameter_names_and_shapes(case):
    factory, name, classes, options, shape = CASES[case]
    theirs, ours = factory(), _build(name, classes, options, shape)
    assert [(n, p.shape) for n, p in theirs.named_parameters()] == [
        (n, p.shape) for n, p in ours.named_parameters()
    ]
    assert {k: v.shape for k, v in theirs.state_dict().items()} == {
        k: v.shape for k, v in ours.state_dict().items()
    }


@pytest.mark.filterwarnings("ignore:Implicit dimension choice")
@pytest.mark.parametrize("case", list(CASES))
def test_tutorial_state_dict_loads_strictly_and_computes_the_same(case, tmp_path):
    factory, name, classes, options, shape = CASES[case]
    theirs = factory()
    _randomise(theirs, seed=1)
    # Through a file, as the tutorial's torch.save(model.state_dict(), "cnn.pt") leaves it.
    torch.save(theirs.state_dict(), tmp_path / "cnn.pt")
    ours = _build(name, classes, options, shape)
    ours.load_state_dict(torch.load(tmp_path / "cnn.pt", weights_only=True), strict=True)

    theirs.eval(), ours.eval()
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert got.shape == (3, classes)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # A meaningful comparison: the output is not the same for every input.
    assert not torch.allclose(got[0], got[1])


@pytest.mark.filterwarnings("ignore:Implicit dimension choice")
@pytest.mark.parametrize("case", list(CASES))
def test_imori_state_dict_loads_into_the_tutorial_class(case):
    factory, name, classes, options, shape = CASES[case]
    ours = _build(name, classes, options, shape)
    _randomise(ours, seed=3)
    theirs = factory()
    theirs.load_state_dict(ours.state_dict(), strict=True)

    theirs.eval(), ours.eval()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x), rtol=1e-5, atol=1e-6)


def test_the_seed_lenet_with_3x3_kernels_does_not_fit_the_classic_variant():
    """kernel 3 and kernel 5 are different architectures: the option matters for loading."""
    seed_weights = Seed004LeNet(kernel=3).state_dict()
    classic = build_model("lenet5", 10)  # kernel 5 by default
    with pytest.raises(RuntimeError, match="size mismatch"):
        classic.load_state_dict(seed_weights, strict=True)


def test_mnist_cnn_outputs_log_probabilities():
    model = build_model("mnist_cnn", 10).eval()
    with torch.no_grad():
        out = model(torch.randn(4, 1, 28, 28))
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(4))
    assert get_spec("mnist_cnn").default_loss() == "nll"
