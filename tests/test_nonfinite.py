"""NaN and ±inf are rejected at every entry point with one line naming the field and the value."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from flatlib.params import ParameterError
from flatlib.pipeline.registry import notebook_params
from flatlib.train import ConfigError, TrainConfig, build_rule

NAN, INF = float("nan"), float("inf")


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_notebook_params_reject_non_finite(value):
    with pytest.raises(ParameterError) as err:
        notebook_params("ff_gedanken", {"profile": "smoke", "lr": value})
    assert f"invalid lr={value!r} for ff_gedanken: must be a finite number" == _one_line(err)
    with pytest.raises(ParameterError, match=r"invalid weight_decays=\[0.0, " + repr(value)):
        notebook_params("ff_gedanken", {"profile": "smoke", "weight_decays": [0.0, value]})


@pytest.mark.parametrize("changes,field", [
    (dict(lr=NAN), "lr=nan"),
    (dict(weight_decay=INF), "weight_decay=inf"),
    (dict(betas=(0.9, NAN)), "betas=(0.9, nan)"),
    (dict(rule="sam", rule_kwargs={"rho": INF}), "rule_kwargs['rho']=inf"),
    (dict(model_kwargs={"width": -INF}), "model_kwargs['width']=-inf"),
])
def test_train_config_rejects_non_finite(changes, field):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**changes)
    assert _one_line(err) == f"invalid {field}; must be a finite number"


@pytest.mark.parametrize("value", ["inf", "nan", ".inf", "Infinity"])
def test_cli_rejects_non_finite_parameters(value):
    r = subprocess.run([sys.executable, "-m", "flatlib.pipeline.cli", "run", "ff_gedanken", "-p", "lr", value,
                        "--profile", "smoke"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid lr=" in lines[0] and "must be a finite number" in lines[0], r.stderr


def _tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    return model, (torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,)))


def test_public_estimators_reject_non_finite_floats():
    from flatlib.curvature import HessianOperator, landscape_1d, lanczos
    from flatlib.fisher import fim_metrics
    from flatlib.measures import adaptive_sharpness, output_margin

    model, data = _tiny()
    H = HessianOperator(model, data)
    calls = {
        "HessianOperator: invalid weight_decay=nan": lambda: HessianOperator(model, data, weight_decay=NAN),
        "lanczos: invalid tol=inf": lambda: lanczos(H, k=1, tol=INF),
        "landscape_1d: invalid alphas=[0.0, nan]": lambda: landscape_1d(model, data, torch.ones(H.dim), [0.0, NAN]),
        "fim_metrics: invalid logit_norm=inf": lambda: fim_metrics(model, *data, n_prime=4, num_subsets=1,
                                                                  logit_norm=INF),
        "adaptive_sharpness: invalid rho=-inf": lambda: adaptive_sharpness(model, data, rho=-INF),
        "output_margin: invalid quantile=nan": lambda: output_margin(model, data, quantile=NAN),
        "SAMRule: invalid rho=nan": lambda: build_rule("sam", rho=NAN),
    }
    for message, call in calls.items():
        with pytest.raises(ValueError) as err:
            call()
        assert _one_line(err) == f"{message}; must be a finite number"
    assert math.isfinite(lanczos(H, k=1, tol=1e-3).eigenvalues[0].item())  # finite values still pass
