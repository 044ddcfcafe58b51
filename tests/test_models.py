"""Model registry: parameter counts from the papers, the features/classifier split, layer order, errors."""
import math

import pytest
import torch
from torch import nn

from flatlib.models import MODELS, build_model, count_parameters, model_options, weight_layers
from flatlib.models.cnn import AllCNNHead, _tf_same_conv

# name, in_channels, num_classes, input_size, options, paper's parameter count
PAPER_COUNTS = [
    ("logreg", 1, 10, 28, {}, 7_850),  # FF-F1, MNIST
    ("mlp100", 1, 10, 28, {}, 79_510),  # FF-F2, MNIST
    ("allcnnc", 3, 100, 32, {}, 1_387_108),  # FF-F3, CIFAR-100
    ("preresnet164", 3, 100, 32, {}, 1_726_388),  # FF-F4
    ("wrn28_10", 3, 100, 32, {}, 36_546_980),  # FF-F5 (biased convolutions)
    ("wrn28_10_nobias", 3, 100, 32, {}, 36_536_884),
]

# Small instances of every registered model: name -> (in_channels, input_size, options).
SMALL = {
    "logreg": (1, 8, {}),
    "mlp": (1, (40,), {"widths": (7, 5)}),  # MNIST-1D signals, shape (N, 40)
    "mlp5": (1, 8, {"width": 6}),
    "mlp100": (1, 8, {}),
    "cnn6": (3, 8, {"width": 0.1}),
    "allcnnc": (3, 16, {"width": 0.1}),
    "vgg16bn": (3, 8, {"width": 1 / 16}),
    "resnet20": (3, 8, {"width": 0.25}),
    "preresnet164": (3, 8, {"depth": 11, "width": 0.5}),
    "wrn": (3, 8, {"depth": 10, "width": 1, "dropout": 0.3}),
    "wrn28_10": (3, 8, {"depth": 10, "width": 1}),
    "wrn28_10_nobias": (3, 8, {"depth": 10, "width": 1}),
    "wrn28_2": (3, 8, {"depth": 10}),
    "wrn16_4": (3, 8, {"width": 0.5}),
    "densenet_bc": (3, 8, {"depth": 10, "growth_rate": 4}),
}


def small(name: str, num_classes: int = 5) -> tuple[nn.Module, torch.Tensor]:
    in_channels, input_size, options = SMALL[name]
    model = build_model(name, in_channels=in_channels, num_classes=num_classes, input_size=input_size, **options)
    spatial = (input_size, input_size) if isinstance(input_size, int) else input_size
    shape = (3, *spatial) if name == "mlp" else (3, in_channels, *spatial)
    return model, torch.randn(shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name, in_channels, num_classes, input_size, options, expected", PAPER_COUNTS,
                         ids=[c[0] for c in PAPER_COUNTS])
def test_parameter_count_matches_paper(name, in_channels, num_classes, input_size, options, expected):
    model = build_model(name, in_channels=in_channels, num_classes=num_classes, input_size=input_size, **options)
    assert count_parameters(model) == expected


def test_every_model_has_a_small_case():
    assert set(SMALL) == set(MODELS)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_is_classifier_of_features(name):
    model, x = small(name)
    model.train()  # BN in batch mode and dropout active: same seed -> same masks
    torch.manual_seed(1)
    logits = model(x)
    torch.manual_seed(1)
    feats = model.features(x)
    assert logits.shape == (3, 5)
    assert feats.ndim == 2 and feats.shape[0] == 3
    assert torch.equal(model.classifier(feats), logits)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_classifier_ends_in_the_output_layer(name):
    model, x = small(name)
    head = model.classifier
    if name == "allcnnc":  # no Linear: the last 1x1 conv (+ ReLU, pool) is the classifier
        assert isinstance(head, AllCNNHead) and head.conv.out_channels == 5
    else:
        last = head[-1] if isinstance(head, nn.Sequential) else head
        assert isinstance(last, nn.Linear) and last.out_features == 5
    assert weight_layers(model)[-1][1] is (head.conv if name == "allcnnc" else last)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_weight_layers_are_in_forward_order(name):
    model, x = small(name)
    called: list[nn.Module] = []
    layers = weight_layers(model)
    handles = [m.register_forward_hook(lambda m, i, o: called.append(m)) for _, m in layers]
    model(x)
    for h in handles:
        h.remove()
    assert [id(m) for m in called] == [id(m) for _, m in layers]
    all_weights = {id(m) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))}
    assert {id(m) for _, m in layers} == all_weights


def test_weight_layers_of_mlp5():
    model = build_model("mlp5", in_channels=1, num_classes=3, input_size=(10,), width=4)
    layers = weight_layers(model)
    assert [n for n, _ in layers] == ["features.1", "features.3", "features.5", "features.7", "classifier"]
    assert [m.weight.shape for _, m in layers] == [(4, 10), (4, 4), (4, 4), (4, 4), (3, 4)]


def test_presets_fix_their_options():
    assert count_parameters(build_model("wrn28_2", in_channels=3, num_classes=10)) == count_parameters(
        build_model("wrn", in_channels=3, num_classes=10, depth=28, width=2))
    assert count_parameters(build_model("mlp5", in_channels=1, num_classes=2, input_size=(3,), width=4)) == (
        (3 * 4 + 4) + 3 * (4 * 4 + 4) + (4 * 2 + 2))


def test_conv_models_accept_mnist_and_digits_sizes():
    for name, size in [("cnn6", 28), ("allcnnc", 28), ("vgg16bn", 28), ("resnet20", 28), ("densenet_bc", 28)]:
        in_channels, _, options = SMALL[name]
        model = build_model(name, in_channels=1, num_classes=4, input_size=size, **options)
        assert model(torch.randn(2, 1, size, size)).shape == (2, 4)


def test_tf_same_padding():
    """TF 'same': out = ceil(in / stride), the odd pixel of padding at the bottom/right."""
    (pad, conv), out = _tf_same_conv(2, 2, 3, 2, (32, 32))
    assert out == (16, 16) and pad.padding == (0, 1, 0, 1) and conv.padding == (0, 0)
    (conv,), out = _tf_same_conv(2, 2, 3, 2, (7, 9))
    assert out == (4, 5) and conv.padding == (1, 1)
    (conv,), out = _tf_same_conv(2, 2, 3, 1, (6, 6))
    assert out == (6, 6) and conv.padding == (1, 1)
    # The output pixel (0, 0) of the stride-2 conv sees input rows/cols 0..2, not -1..1.
    (pad, conv), _ = _tf_same_conv(1, 1, 3, 2, (4, 4))
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 2, 2] = 1.0
        conv.bias.zero_()
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert conv(pad(x))[0, 0, 0, 0] == x[0, 0, 2, 2]


def test_init():
    model = build_model("resnet20", in_channels=3, num_classes=10)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any() for m in bns)
    conv = weight_layers(model)[-2][1]  # a 3x3, 64 -> 64 convolution: 36,864 He-normal weights
    assert conv.weight.shape == (64, 64, 3, 3)
    expected = math.sqrt(2 / (9 * 64))
    assert abs(conv.weight.std().item() / expected - 1) < 0.03  # std error of the std ≈ 0.4 %


def test_unknown_model_error():
    with pytest.raises(ValueError, match=r"^unknown model 'resnet21'; choose from: logreg, mlp, .*densenet_bc$") as e:
        build_model("resnet21", in_channels=3, num_classes=10)
    assert "\n" not in str(e.value)


def test_unknown_option_error():
    with pytest.raises(ValueError, match=r"^model 'resnet20' has no option 'depth'; its options: width$"):
        build_model("resnet20", in_channels=3, num_classes=10, depth=32)
    with pytest.raises(ValueError, match="has no option 'width'; its options: none"):
        build_model("logreg", in_channels=1, num_classes=10, width=3)
    assert model_options("wrn28_10") == ["depth", "width", "dropout", "conv_bias"]


def test_invalid_shapes_and_depths():
    with pytest.raises(ValueError, match="2-D input_size"):
        build_model("cnn6", in_channels=1, num_classes=10, input_size=(40,))
    with pytest.raises(ValueError, match="at least 9"):
        build_model("allcnnc", in_channels=1, num_classes=10, input_size=8)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        build_model("wrn", in_channels=3, num_classes=10, depth=27)
    with pytest.raises(ValueError, match="9n \\+ 2"):
        build_model("preresnet164", in_channels=3, num_classes=10, depth=21)


def test_allcnnc_logit_relu_option():
    """DeepOBS' All-CNN-C ReLUs its class maps (logits ≥ 0); ``logit_relu=False`` drops only that ReLU."""
    torch.manual_seed(0)
    kw = dict(width=0.1, init="he")
    deepobs = build_model("allcnnc", in_channels=1, num_classes=10, input_size=14, **kw)
    torch.manual_seed(0)
    plain = build_model("allcnnc", in_channels=1, num_classes=10, input_size=14, logit_relu=False, **kw)
    assert sum(p.numel() for p in deepobs.parameters()) == sum(p.numel() for p in plain.parameters())
    deepobs.eval(), plain.eval()
    x = torch.randn(64, 1, 14, 14)
    with torch.no_grad():
        pre = plain(x)
        assert (deepobs(x) >= 0).all() and (pre < 0).any()
        maps = plain.classifier.conv(plain.classifier.unflatten(plain.features(x)))
        torch.testing.assert_close(pre, maps.mean((2, 3)))
        torch.testing.assert_close(deepobs(x), maps.clamp_min(0).mean((2, 3)))
