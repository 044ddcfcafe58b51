"""Fisher-determinant metric γ̂ and regularizer (Jia & Su, ICML 2020, "FIM")."""
from flatlib.fisher.jacobian import per_sample_grads
from flatlib.fisher.metrics import (fim_metrics, fisher_frobenius, fisher_log_det, fisher_spectral_radius,
                                    fisher_trace, robustness)
from flatlib.fisher.regularizer import FisherRule, fisher_regularizer

__all__ = ["per_sample_grads", "fisher_log_det", "fim_metrics", "fisher_frobenius", "fisher_spectral_radius",
           "fisher_trace", "robustness", "FisherRule", "fisher_regularizer"]
