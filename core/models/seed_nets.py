"""The tutorials' own networks, rebuilt so their state_dicts load both ways.

Attribute names, layer order and shapes follow the seeds exactly (``classfier`` keeps
seed 003's spelling) because a state_dict's keys are those names: a ``cnn.pt`` saved by
a tutorial script loads here with ``strict=True``, and imori's weights load back into
the tutorial's class. Parameter-free steps (ReLU, pooling) may be written either way;
they leave no keys.

One deliberate difference: ``torch.flatten(x, 1)`` instead of the seeds'
``x.view(-1, N)``. For the sizes a model accepts the result is identical, but a wrong
input size then fails with a shape error instead of being silently folded into a
different batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Mynet(nn.Module):
    """Seed 000: a VGG-style CNN with BatchNorm; four conv blocks of two convs, then 3 fc."""

    def __init__(self, num_classes: int, height: int = 64, width: int = 64) -> None:
        super().__init__()
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
        # Four 2x2 pools: the feature map is H/16 x W/16 with 256 channels.
        self.fc1 = nn.Linear((height // 16) * (width // 16) * 256, 512)
        self.fc2 = nn.Linear(512, 512)
        self.fc_out = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = (
            ((self.conv1_1, self.bn1_1), (self.conv1_2, self.bn1_2)),
            ((self.conv2_1, self.bn2_1), (self.conv2_2, self.bn2_2)),
            ((self.conv3_1, self.bn3_1), (self.conv3_2, self.bn3_2)),
            ((self.conv4_1, self.bn4_1), (self.conv4_2, self.bn4_2)),
        )
        for block in blocks:
            for conv, bn in block:
                x = F.relu(bn(conv(x)))
            x = F.max_pool2d(x, 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc_out(x)  # logits: the seed applies log_softmax in its loss


class MnistCNN(nn.Module):
    """Seed 003: two 5x5 convs, then fc 2560 -> 100 -> classes; outputs log-probabilities."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.base_net = nn.Sequential(
            nn.Conv2d(1, 20, 5, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 40, 5, 1),
            nn.ReLU(),
        )
        # "classfier" is the seed's spelling; the state_dict keys depend on it.
        self.classfier = nn.Sequential(
            nn.Linear(40 * 8 * 8, 100),
            nn.ReLU(),
            nn.Linear(100, num_classes),
            # dim=1 made explicit: the seed's bare LogSoftmax() guesses it with a warning.
            nn.LogSoftmax(dim=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.base_net(x)
        x = torch.flatten(x, 1)
        return self.classfier(x)


class LeNet5(nn.Module):
    """Seed 004: LeNet-5. ``kernel=5`` is the classic (32x32 input); 3 is the seed's code (28x28)."""

    def __init__(self, num_classes: int = 10, kernel: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel)
        self.conv2 = nn.Conv2d(6, 16, kernel)
        # Both readings end in a 16 x 5 x 5 map: 32-28-14-10-5 or 28-26-13-11-5.
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class TinyNet(nn.Module):
    """Seed 002: one 3x3 conv (6 maps) and one fc layer; 1x32x32 input."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.fc1 = nn.Linear(6 * 15 * 15, num_classes)  # 32 -> conv 30 -> pool 15

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(x, 2)
        x = F.relu(x)  # the seed applies ReLU twice; harmless, kept for identical outputs
        x = torch.flatten(x, 1)
        return self.fc1(x)


# -- builders, as core.models.specs names them: (num_classes, (height, width), options) -> model


def build_mynet(num_classes: int, size: tuple[int, int], options: dict) -> Mynet:
    return Mynet(num_classes, *size)


def build_mnist_cnn(num_classes: int, size: tuple[int, int], options: dict) -> MnistCNN:  # noqa: ARG001
    return MnistCNN(num_classes)


def build_lenet5(num_classes: int, size: tuple[int, int], options: dict) -> LeNet5:  # noqa: ARG001
    return LeNet5(num_classes, kernel=options["kernel"])


def build_tiny_net(num_classes: int, size: tuple[int, int], options: dict) -> TinyNet:  # noqa: ARG001
    return TinyNet(num_classes)
