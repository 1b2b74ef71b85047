"""Standard CNNs for the receptive-field table, in plain PyTorch (no torchvision).

Layer shapes follow the papers (and torchvision's layouts where they differ in padding):
AlexNet (Krizhevsky et al. 2012, one-tower form), VGG16 (Simonyan & Zisserman 2015, config D),
ResNet-18/50 (He et al. 2016). `width` scales every channel count: the receptive field does not
depend on it, so tests can walk and measure narrow copies cheaply.

ResNet-50 comes in two forms that differ in the receptive field: the original (stride 2 in the
bottleneck's first 1x1 conv, as in Caffe and TF-slim's resnet_v1: r = 483, Araujo et al. 2019)
and "v1.5" (stride 2 in the 3x3 conv, torchvision's layout: r = 427).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


def _c(ch: int, width: float) -> int:
    return max(1, int(round(ch * width)))


class AlexNet(nn.Module):
    """x: [B, 3, 224, 224] -> logits [B, num_classes]; pool5 is 6x6 at 224."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0):
        super().__init__()
        c = [_c(n, width) for n in (64, 192, 384, 256, 256)]
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, c[0], 11, stride=4, padding=2),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(3, 2),
                conv2=nn.Conv2d(c[0], c[1], 5, padding=2),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(3, 2),
                conv3=nn.Conv2d(c[1], c[2], 3, padding=1),
                relu3=nn.ReLU(),
                conv4=nn.Conv2d(c[2], c[3], 3, padding=1),
                relu4=nn.ReLU(),
                conv5=nn.Conv2d(c[3], c[4], 3, padding=1),
                relu5=nn.ReLU(),
                pool5=nn.MaxPool2d(3, 2),
            )
        )
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c[4] * 36, _c(4096, width)), nn.ReLU(),
            nn.Linear(_c(4096, width), num_classes),
        )  # fmt: skip

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


class VGG16(nn.Module):
    """Config D: 13 3x3 convs (pad 1) in 5 stages, each closed by a 2x2/2 max pool."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        cin = 3
        for stage, (ch, n) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), 1):
            for i in range(1, n + 1):
                layers[f"conv{stage}_{i}"] = nn.Conv2d(cin, _c(ch, width), 3, padding=1)
                layers[f"relu{stage}_{i}"] = nn.ReLU()
                cin = _c(ch, width)
            layers[f"pool{stage}"] = nn.MaxPool2d(2, 2)
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin * 49, num_classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


class BasicBlock(nn.Module):
    """Two 3x3 convs; x: [B, C, H, W] -> [B, C', H/s, W/s]."""

    expansion = 1

    def __init__(self, cin: int, ch: int, stride: int = 1, stride_in_1x1: bool = False):
        super().__init__()
        cout = ch * self.expansion
        self.conv1 = nn.Conv2d(cin, ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels); the stride sits on the 3x3 (v1.5) or the first 1x1."""

    expansion = 4

    def __init__(self, cin: int, ch: int, stride: int = 1, stride_in_1x1: bool = False):
        super().__init__()
        cout = ch * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(cin, ch, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, s3, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.conv3 = nn.Conv2d(ch, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + self.downsample(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """7x7/2 stem, 3x3/2 max pool, four stages (stride 1, 2, 2, 2), global pool, linear."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        depths: tuple[int, int, int, int],
        num_classes: int = 1000,
        width: float = 1.0,
        stride_in_1x1: bool = False,
    ):
        super().__init__()
        cin = _c(64, width)
        self.conv1 = nn.Conv2d(3, cin, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages = []
        for i, (ch, n) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            blocks = []
            for b in range(n):
                stride = 2 if (i > 0 and b == 0) else 1
                blocks.append(block(cin, _c(ch, width), stride, stride_in_1x1))
                cin = _c(ch, width) * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def alexnet(**kw) -> AlexNet:
    return AlexNet(**kw)


def vgg16(**kw) -> VGG16:
    return VGG16(**kw)


def resnet18(**kw) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), **kw)


def resnet50(**kw) -> ResNet:
    """torchvision's layout (v1.5, stride on the 3x3); `stride_in_1x1=True` for the original."""
    return ResNet(Bottleneck, (3, 4, 6, 3), **kw)


# name -> (constructor kwargs-free builder, published or derived r of the last layer, source)
NETWORKS = {
    "alexnet": (alexnet, 195, "Araujo et al. 2019 (alexnet_v2: 195)"),
    "vgg16": (vgg16, 212, "Araujo et al. 2019 (vgg_16: 212)"),
    "resnet18": (resnet18, 435, "formula (no published figure)"),
    "resnet50": (resnet50, 427, "formula, torchvision layout (v1.5)"),
    "resnet50_v1": (
        lambda **kw: resnet50(stride_in_1x1=True, **kw),
        483,
        "Araujo et al. 2019 (resnet_v1_50: 483)",
    ),
}


# ------------------------------------------------------------------------ our own models


class DigitsCNN(nn.Module):
    """A plain stack of 3x3 convs (no pooling, no norm) on upsampled 8x8 digits, the kind of
    network of the effective-receptive-field study (Luo et al. 2016), with a small head: a 4x4
    average pool (coarse position kept), flatten, linear. x: [B, 1, H, W] -> logits [B, 10]."""

    def __init__(self, depth: int = 6, channels: int = 16, num_classes: int = 10):
        super().__init__()
        layers, cin = [], 1
        for _ in range(depth):
            conv = nn.Conv2d(cin, channels, 3, padding=1)
            # He init: with torch's default init the signal fades over 8 plain ReLU layers
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU()]
            cin = channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(cin * 16, num_classes)
        )

    def forward(self, x):
        return self.head(self.features(x))


class SRNet(nn.Module):
    """A small super-resolution decoder, x r on one (luma) channel: ESPCN's trunk (Shi et al.
    2016: 5x5 conv, 3x3 conv, tanh) and an interchangeable upsampling layer:
    - "subpixel": 3x3 conv to r^2 channels + pixel shuffle (ESPCN), ICNR init;
    - "subpixel-noicnr": the same with the default conv init;
    - "transposed": one transposed conv, kernel r + 1 (uneven overlap);
    - "resize": nearest x r, then a 3x3 conv (Odena et al. 2016).
    x: [B, 1, h, w] in [0, 1] -> [B, 1, h r, w r].
    """

    def __init__(self, r: int, up: str = "subpixel", c1: int = 64, c2: int = 32):
        super().__init__()
        from deepnotes.layers.upsample import ResizeConv, SubPixelConv, TransposedConvUp

        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.Tanh(), nn.Conv2d(c1, c2, 3, padding=1), nn.Tanh()
        )
        builders = {
            "subpixel": lambda: SubPixelConv(c2, 1, r, 3, icnr=True),
            "subpixel-noicnr": lambda: SubPixelConv(c2, 1, r, 3, icnr=False),
            "transposed": lambda: TransposedConvUp(c2, 1, r),
            "resize": lambda: ResizeConv(c2, 1, r, 3),
        }
        if up not in builders:
            raise ValueError(f"up must be one of {sorted(builders)}, got {up!r}")
        self.up = builders[up]()

    def forward(self, x):
        return self.up(self.features(x - 0.5)) + 0.5
