"""CIFAR ResNet-18 (3x3 stem, stride 1, no max-pool) with a width multiplier.

The top-level children are conv1, bn1, layer1-4 and fc: the seven groups the diagnostic names.
At width 64 it has 11,173,962 parameters, as in kuangliu/pytorch-cifar.
"""
from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import nn

from ..core.errors import CheckpointError
from .checkpoint import load_recorded, require_keys

GROUPS = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, width: int = 64, num_classes: int = 10):
        super().__init__()
        if width < 1:
            raise ValueError(f"width={width} must be >= 1")
        self.width = width
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes = [width, 2 * width, 4 * width, 8 * width]
        strides = [1, 2, 2, 2]
        in_planes = width
        for i, (p, s) in enumerate(zip(planes, strides), start=1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(in_planes, p, s), BasicBlock(p, p, 1)))
            in_planes = p
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_model(path: str | Path, device="cpu", rerun: str = "dvc repro train") -> ResNet18:
    """A trained model file ({state_dict, width, num_classes}), in eval mode on ``device``, after
    checking it against the sha256 in its run's record.json."""
    blob = require_keys(load_recorded(path, rerun), ("state_dict", "width"), path, rerun)
    try:
        model = ResNet18(blob["width"], blob.get("num_classes", 10))
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path} does not match the CIFAR ResNet-18 ({str(exc).splitlines()[0][:100]}): re-run `{rerun}`"
        ) from exc
    return model.to(device).eval()


class CifarClassifier(nn.Module):
    """A trained network with its input pipeline: uint8 CIFAR images in, logits out."""

    def __init__(self, net: nn.Module, channels_last: bool = False):
        super().__init__()
        self.net, self.channels_last = net, channels_last

    def forward(self, x):
        from .augment import normalize

        return self.net(normalize(x, self.channels_last))
