"""Fisher-determinant metric γ̂ and per-sample Jacobians (Jia & Su, ICML 2020, "FIM").

The regularizer that trains with γ̂ is an update rule: ``flatlib.train.rules.fisher``.
"""
from flatlib.fisher.jacobian import per_sample_grads
from flatlib.fisher.metrics import (fim_metrics, fisher_frobenius, fisher_log_det, fisher_spectral_radius,
                                    fisher_trace, robustness)

__all__ = ["per_sample_grads", "fisher_log_det", "fim_metrics", "fisher_frobenius", "fisher_spectral_radius",
           "fisher_trace", "robustness"]
