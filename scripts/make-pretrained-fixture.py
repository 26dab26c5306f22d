#!/usr/bin/env python3
"""Rebuilds trainer/tests/fixtures/pretrained: small torchvision-layout checkpoints written by
torch itself, and torch's own outputs for them, for trainer/tests/pretrained_backbone.rs.

The modules below copy torchvision's ResNet (BasicBlock, `downsample` as a Sequential of conv
and BatchNorm) and VGG (`features` / `classifier` Sequentials) module layout, so their
state_dict() keys are exactly torchvision's; torchvision itself is not needed (only torch
and safetensors: `pip install torch safetensors`). The widths are tiny so the files stay
small: a ResNet-18 at base width 4 (~180 KB; at width 8 it would be ~700 KB) and a VGG11 at
base width 2, stored in half precision as some published checkpoints are.

Written:
  resnet18-w4.pt            torch.save(model.state_dict()) (zip format), float32
  resnet18-w4.safetensors   the same tensors with safetensors.torch.save_file
  vgg11-w2-half.pt          torch.save of a VGG11's state dict in float16
  expected.safetensors      fixed inputs and torch's outputs in eval mode (float32):
    resnet.input_rgb [1,3,32,32]; resnet.stem (conv1-bn1-relu), resnet.layer1..layer4
    resnet.input_gray [1,1,32,32]; resnet.gray.layer4: the RGB network on the gray image
      repeated over three channels, which is what a 1-channel network whose first
      convolution sums the RGB filters computes
    vgg.input_rgb [1,3,32,32]; vgg.stage1..stage5: each stage's output before pooling,
      computed by the network holding the float16 weights converted back to float32

Run from anywhere: python3 scripts/make-pretrained-fixture.py. Tests only read the
committed files.
"""

from pathlib import Path

import torch
from torch import nn
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "trainer/tests/fixtures/pretrained"


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision.models.resnet.ResNet with BasicBlocks and a base width parameter."""

    def __init__(self, layers, width=64, num_classes=10):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], 2)
        self.layer3 = self._make_layer(4 * width, layers[2], 2)
        self.layer4 = self._make_layer(8 * width, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x):
        stem = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(stem)
        outs = {"stem": stem}
        for name in ["layer1", "layer2", "layer3", "layer4"]:
            x = getattr(self, name)(x)
            outs[name] = x
        return outs


# torchvision's cfgs["A"] (VGG11), widths as multiples of the base width.
VGG11 = [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"]


class VGG(nn.Module):
    """torchvision.models.vgg.VGG (make_layers without BatchNorm) at a base width."""

    def __init__(self, width, num_classes=10):
        super().__init__()
        layers, c = [], 3
        for v in VGG11:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v * width, 3, padding=1), nn.ReLU(inplace=True)]
                c = v * width
        self.features = nn.Sequential(*layers)
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                # torchvision's VGG initialisation (PyTorch's default shrinks the signal ~6x a
                # layer), with a non-zero bias so that loading the biases is tested too.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.normal_(m.bias, 0.0, 0.1)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(c * 49, num_classes))

    def stages(self, x):
        outs = []
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                outs.append(x)
            x = layer(x)
        return outs


def randomise_batch_norms(model, g):
    """Statistics and affine parameters away from their defaults (1, 0, 0, 1), so a test
    that loaded none of them, or mixed up weight and running_var, would see it."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g) * 0.1
            m.running_mean = torch.randn(n, generator=g) * 0.1
            m.running_var = torch.rand(n, generator=g) + 0.5
            m.num_batches_tracked = torch.tensor(7)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(2024)
    g = torch.Generator().manual_seed(2024)
    expected = {}

    resnet = ResNet([2, 2, 2, 2], width=4)
    randomise_batch_norms(resnet, g)
    resnet.eval()
    state = resnet.state_dict()
    torch.save(state, OUT / "resnet18-w4.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, OUT / "resnet18-w4.safetensors")
    with torch.no_grad():
        x = torch.randn(1, 3, 32, 32, generator=g)
        expected["resnet.input_rgb"] = x
        for name, y in resnet.features(x).items():
            expected[f"resnet.{name}"] = y
        gray = torch.randn(1, 1, 32, 32, generator=g)
        expected["resnet.input_gray"] = gray
        expected["resnet.gray.layer4"] = resnet.features(gray.repeat(1, 3, 1, 1))["layer4"]

    vgg = VGG(width=2)
    vgg.eval()
    half = {k: v.half() for k, v in vgg.state_dict().items()}
    torch.save(half, OUT / "vgg11-w2-half.pt")
    vgg.load_state_dict({k: v.float() for k, v in half.items()})
    with torch.no_grad():
        x = torch.randn(1, 3, 32, 32, generator=g)
        expected["vgg.input_rgb"] = x
        for i, y in enumerate(vgg.stages(x)):
            expected[f"vgg.stage{i + 1}"] = y

    save_file({k: v.contiguous() for k, v in expected.items()}, OUT / "expected.safetensors")
    for f in sorted(OUT.iterdir()):
        print(f"{f.name}: {f.stat().st_size} bytes")
    print(f"torch {torch.__version__}")


if __name__ == "__main__":
    main()
