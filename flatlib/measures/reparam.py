"""Function-preserving reparameterisations (layer rescaling under ReLU, weight scaling before BatchNorm),
for checking which measures are invariant (Dinh et al. 2017)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from flatlib._checks import finite_floats
from flatlib.models.base import weight_layers


@finite_floats
def rescale_layers(model: nn.Module, layer: int, alpha: float) -> nn.Module:
    """A copy computing the same function: weight layer ``layer`` (index into ``weight_layers``) and its bias
    are multiplied by α > 0 and the next weight layer's weight divided by α.

    Exact when only positively homogeneous maps (ReLU, max/average pooling, flatten) lie between
    the two layers, since relu(αz) = α relu(z) for α > 0 (Dinh et al. 2017, "Sharp minima can
    generalize for deep nets").
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    out = copy.deepcopy(model)
    layers = weight_layers(out)
    if not 0 <= layer < len(layers) - 1:
        raise ValueError(f"layer must be in [0, {len(layers) - 2}] for a model with {len(layers)} weight layers")
    first, second = layers[layer][1], layers[layer + 1][1]
    with torch.no_grad():
        first.weight.mul_(alpha)
        if first.bias is not None:
            first.bias.mul_(alpha)
        second.weight.div_(alpha)
    return out


@finite_floats
def scale_before_batchnorm(model: nn.Module, alpha: float) -> nn.Module:
    """A copy computing the same function in eval mode: every weight layer that feeds a BatchNorm is scaled by α > 0.

    BN(αz) = BN(z) in train mode; in eval mode the running mean is scaled by α, the running
    variance by α² and ε by α², so (αz − αμ)/√(α²σ² + α²ε) is exactly the old normalised value.
    The weights then differ in norm while the function does not (the scale invariance behind
    "sharpness" changes under BN, e.g. van Laarhoven 2017).
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    out = copy.deepcopy(model)
    modules = [m for m in out.modules() if not list(m.children())]
    scaled = 0
    with torch.no_grad():
        for prev, bn in zip(modules, modules[1:]):
            if isinstance(bn, nn.modules.batchnorm._BatchNorm) and isinstance(prev, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                prev.weight.mul_(alpha)
                if prev.bias is not None:
                    prev.bias.mul_(alpha)
                bn.running_mean.mul_(alpha)
                bn.running_var.mul_(alpha ** 2)
                bn.eps *= alpha ** 2
                scaled += 1
    if not scaled:
        raise ValueError("the model has no weight layer directly followed by a BatchNorm layer")
    return out
