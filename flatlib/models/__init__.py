"""Model registry: every network as ``logits = classifier(features(x))``.

Entry point
    build_model(name, *, in_channels, num_classes, input_size=32, **options)
    MODELS                  name -> builder
    model_options(name)     the options a model accepts

Families (one module each)
    mlp       logreg, mlp (``widths``), mlp5 (PoF toy, ``width``), mlp100 (FF-F2)
    cnn       cnn6 (FIM plain CNN), allcnnc (FF-F3, DeepOBS), vgg16bn (FF-F6/F7)
    resnet    resnet20 (FIM), preresnet164 (FF-F4)
    wrn       wrn (``depth``, ``width``, ``dropout``, ``conv_bias``) and presets wrn28_10, wrn28_10_nobias,
              wrn28_2, wrn16_4
    densenet  densenet_bc (FIM, k = 12, depth 100)

Helpers
    FeatureClassifier   the features/classifier split every model uses
    weight_layers       Linear/Conv modules in forward order (per-layer curvature blocks)
    count_parameters    number of scalar parameters
"""
from .base import FeatureClassifier, count_parameters, weight_layers
from .registry import MODELS, build_model, model_options

__all__ = ["MODELS", "FeatureClassifier", "build_model", "count_parameters", "model_options", "weight_layers"]
