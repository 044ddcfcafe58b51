"""Plain (non-residual) convolutional networks: FIM's 6-layer CNN, All-CNN-C and VGG-16-BN."""
from __future__ import annotations

import math

from torch import Tensor, nn

from .base import FeatureClassifier, image_size, kaiming_init, scaled


def cnn6(
    *, in_channels: int, num_classes: int, input_size: int | tuple[int, ...] = 32,
    width: float = 1.0, batch_norm: bool = False,
) -> FeatureClassifier:
    """FIM's plain CNN (App. E of the ICLR draft): six 3×3 ReLU convolutions with 64, 64, 128, 128,
    192, 192 filters, 2×2 max pooling after the 2nd and 4th, global average pooling, one Linear.

    The paper does not mention normalisation or padding; we use 'same' padding, conv biases and no
    BatchNorm by default ("plain" CNN). ``batch_norm=True`` inserts BN after every convolution
    (bias-free convolutions then). ``width`` scales every filter count. He init as in the paper.
    """
    image_size(input_size)
    layers: list[nn.Module] = []
    c_in = in_channels
    for i, c in enumerate((64, 64, 128, 128, 192, 192)):
        c = scaled(c, width)
        layers.append(nn.Conv2d(c_in, c, 3, padding=1, bias=not batch_norm))
        layers += [nn.BatchNorm2d(c), nn.ReLU()] if batch_norm else [nn.ReLU()]
        if i in (1, 3):
            layers.append(nn.MaxPool2d(2))
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return kaiming_init(FeatureClassifier(nn.Sequential(*layers), nn.Linear(c_in, num_classes)))


def _tf_same_conv(c_in: int, c_out: int, kernel: int, stride: int, size: tuple[int, int]) -> tuple[list[nn.Module], tuple[int, int]]:
    """A convolution with TensorFlow's 'same' padding for a known input ``size``, and its output size.

    TF pads ``(out - 1)·stride + kernel - in`` in total, the extra pixel at the bottom/right; for a
    stride-2 3×3 conv on an even size that is (0, 1), which a symmetric PyTorch padding cannot express.
    """
    out = tuple(math.ceil(s / stride) for s in size)
    pads = [max((o - 1) * stride + kernel - s, 0) for o, s in zip(out, size)]
    (top, bottom), (left, right) = ((p // 2, p - p // 2) for p in pads)
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride)
    if (top, left) == (bottom, right):
        conv.padding = (top, left)
        return [conv], out
    return [nn.ZeroPad2d((left, right, top, bottom)), conv], out


class AllCNNHead(nn.Module):
    """All-CNN-C's last stage as a classifier on flattened features:
    unflatten → 1×1 conv to ``num_classes`` → ReLU (if ``logit_relu``) → global average pool → flatten."""

    def __init__(self, channels: int, size: tuple[int, int], num_classes: int, logit_relu: bool = True) -> None:
        super().__init__()
        self.unflatten = nn.Unflatten(1, (channels, *size))
        self.conv = nn.Conv2d(channels, num_classes, 1)
        self.pool = nn.Sequential(*([nn.ReLU()] if logit_relu else []), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(self.unflatten(x)))


def allcnnc(
    *, in_channels: int, num_classes: int, input_size: int | tuple[int, ...] = 32, width: float = 1.0,
    dropout: float = 1.0, init: str = "xavier", logit_relu: bool = True,
) -> FeatureClassifier:
    """All-CNN-C (Springenberg et al., 2015) as in DeepOBS' ``cifar100_allcnnc``, FF-F3's 9-layer CNN.

    dropout 0.2 → 2× conv3x3(96) → conv3x3(96, stride 2) → dropout 0.5 → 2× conv3x3(192) →
    conv3x3(192, stride 2) → dropout 0.5 → conv3x3(192, valid) → conv1x1(192) → conv1x1(num_classes)
    → 6×6 average pool, ReLU after every convolution (the last one too, as in DeepOBS), TF 'same'
    padding. 1,387,108 parameters on CIFAR-100. Init as DeepOBS: Xavier-normal weights, biases 0.1.

    The network has no Linear layer; its classifier-like layer is the final 1×1 convolution. Here
    ``features`` ends at the ReLU after conv8, flattened to ``(N, C·h·w)`` (6×6 maps on 32×32
    input), and ``classifier`` is :class:`AllCNNHead` (conv9 → ReLU → pool). The 6×6 pool is
    global on 32×32 input; we use adaptive global pooling so other sizes (≥ 9×9) work too.
    ``width`` scales the 96/192 filter counts; ``dropout`` scales the three dropout rates (0.2, 0.5,
    0.5; 0 removes them), for reduced-width stand-ins whose few channels the full rates would starve.
    ``init="he"`` draws the conv weights He-normal (fan-in, ReLU gain) instead of DeepOBS'
    Xavier-normal, which shrinks the signal ~√2 per ReLU layer through nine BN-free layers.
    ``logit_relu=False`` drops DeepOBS' ReLU on the class maps: with it, a seed whose ten class units
    die early outputs all-zero logits for good (loss ln 10 and no gradient), as 2 of 29 stand-in seeds
    did; the parameter count is unchanged.
    """
    size = image_size(input_size)
    c1, c2 = scaled(96, width), scaled(192, width)
    layers: list[nn.Module] = [nn.Dropout(0.2 * dropout)]
    c_in = in_channels
    for c in (c1, c2):
        for stride in (1, 1, 2):
            conv, size = _tf_same_conv(c_in, c, 3, stride, size)
            layers += [*conv, nn.ReLU()]
            c_in = c
        layers.append(nn.Dropout(0.5 * dropout))
    size = (size[0] - 2, size[1] - 2)  # the 'valid' 3×3 conv7
    if min(size) < 1:
        raise ValueError(f"allcnnc needs inputs of at least 9×9, got input_size={input_size!r}")
    layers += [nn.Conv2d(c2, c2, 3), nn.ReLU(), nn.Conv2d(c2, c2, 1), nn.ReLU(), nn.Flatten()]
    model = FeatureClassifier(nn.Sequential(*layers), AllCNNHead(c2, size, num_classes, logit_relu))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if init == "he":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif init == "xavier":
                nn.init.xavier_normal_(m.weight)
            else:
                raise ValueError(f"allcnnc init must be 'xavier' or 'he', got {init!r}")
            nn.init.constant_(m.bias, 0.1)
    return model


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16bn(
    *, in_channels: int, num_classes: int, input_size: int | tuple[int, ...] = 32, width: float = 1.0,
    dropout: float = 0.5, classifier_width: float | None = None,
) -> FeatureClassifier:
    """CIFAR VGG-16 with BatchNorm as in the SWA / Gadam codes used by FF-F6/F7.

    features: 13× [conv3x3 (bias) → BN → ReLU] with 2×2 max pools, flattened to 512 features;
    classifier: Dropout → Linear(512, 512) → ReLU → Dropout → Linear(512, 512) → ReLU →
    Linear(512, num_classes). ``width`` scales all conv and hidden widths. Pools use ``ceil_mode``
    and the last one is global, which changes nothing on 32×32 input and lets 8×8 or 28×28 work.
    ``dropout`` is the classifier's dropout rate; ``classifier_width`` scales the two hidden layers
    (default: ``width``), so a reduced-width stand-in can keep a classifier that still learns.
    """
    image_size(input_size)
    layers: list[nn.Module] = []
    c_in = in_channels
    for i, v in enumerate(_VGG16):
        if v == "M":
            layers.append(nn.AdaptiveMaxPool2d(1) if i == len(_VGG16) - 1 else nn.MaxPool2d(2, ceil_mode=True))
            continue
        c = scaled(v, width)
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
        c_in = c
    layers.append(nn.Flatten())
    hidden = scaled(512, width if classifier_width is None else classifier_width)
    classifier = nn.Sequential(
        nn.Dropout(dropout), nn.Linear(c_in, hidden), nn.ReLU(),
        nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
    return kaiming_init(FeatureClassifier(nn.Sequential(*layers), classifier))
