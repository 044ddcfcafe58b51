"""Curvature of the loss landscape: Hessian operators, eigenvalues, traces, spectra, slices.

All estimators are free functions that take a dense symmetric tensor or a
:class:`LinearOperator`, and none of them modifies the model (parameters, ``.grad``,
``requires_grad``, training flags and BN buffers are left bit-identical).
"""
# linear operators: a small base class with @, sums, scaling and the shift A + λI
from flatlib.curvature.operator import DenseOperator, IdentityOperator, LinearOperator, as_operator

# the dataset Hessian H = Σ_b (n_b/N) ∇²ℓ_b by Pearlmutter HVPs, and its exact dense reference
from flatlib.curvature.hessian import HessianOperator
from flatlib.curvature.exact import exact_hessian

# extreme eigenpairs: Lanczos with full re-orthogonalisation, power iteration
from flatlib.curvature.lanczos import LanczosResult, lanczos, lanczos_tridiagonal, power_iteration

# trace and Frobenius norm (tr H²) estimation: Hutchinson, Hutch++
from flatlib.curvature.trace import frobenius_norm_sq, hutchinson_trace, hutchpp_trace

# spectral density by stochastic Lanczos quadrature
from flatlib.curvature.density import SpectralDensity, slq

# 1-D / 2-D loss slices and filter-normalised random directions
from flatlib.curvature.landscape import filter_normalized_direction, landscape_1d, landscape_2d

# parameter selection and flat-vector helpers shared by all of the above
from flatlib.curvature.functional import flatten, select_parameters, unflatten

__all__ = [
    # operators
    "LinearOperator", "DenseOperator", "IdentityOperator", "as_operator",
    "HessianOperator", "exact_hessian",
    # eigenvalues
    "lanczos", "lanczos_tridiagonal", "LanczosResult", "power_iteration",
    # traces
    "hutchinson_trace", "hutchpp_trace", "frobenius_norm_sq",
    # spectra
    "slq", "SpectralDensity",
    # landscapes
    "landscape_1d", "landscape_2d", "filter_normalized_direction",
    # helpers
    "select_parameters", "flatten", "unflatten",
]
