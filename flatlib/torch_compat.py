"""Quieting what PyTorch says about its own internals, so that notebooks print only our messages."""
from __future__ import annotations

import warnings


def load_jvp_decompositions_quietly() -> None:
    """Load the decompositions forward-mode AD uses, once, without their FutureWarning.

    Recent torch warns ("torch.jit.script is deprecated") the first time ``torch.func.jvp`` loads
    them; the warning is about torch's code, not the caller's, and it would land in the stderr of
    a notebook cell (a from-scratch book build treats that as an error).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            import torch._decomp.decompositions_for_jvp  # noqa: F401
        except ImportError:  # a torch without this module has nothing to quiet
            pass
