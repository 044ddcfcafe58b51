"""Count host synchronisations: the ops that make the CPU wait for a device result.

On a GPU, ``.item()``, ``bool(t)``, indexing with a 0-dim tensor and ops whose output shape depends
on the data (``nonzero``, boolean-mask indexing, ``unique``) block the host until the device has
caught up, which stalls the launch queue and breaks CUDA-graph capture. The same ops dispatch the
same aten calls on the CPU, so a ``TorchDispatchMode`` that counts them proves on the CPU that a
training step never syncs (``tests/test_host_syncs.py``).
"""
from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# ops that read a device value on the host, or whose output size depends on device data
SYNC_OPS = {
    aten._local_scalar_dense.default: "_local_scalar_dense",  # .item(), float(t), int(t), t[0-dim index]
    aten.is_nonzero.default: "is_nonzero",                    # bool(t), `if t:`
    aten.nonzero.default: "nonzero",                          # boolean-mask indexing, torch.where(cond)
    aten.masked_select.default: "masked_select",
    aten._unique2.default: "unique",
    aten.equal.default: "equal",                              # torch.equal returns a Python bool
    aten.allclose.default: "allclose",
}


_INDEX_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}


def _has_mask(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(torch.is_tensor(i) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


class HostSyncCounter(TorchDispatchMode):
    """``with HostSyncCounter() as c: ...`` then ``c.count`` (total) and ``c.ops`` (per op).

    Ops reached only inside a Python-side torch.func transform are still dispatched through here,
    so a ``.item()`` inside ``vmap`` or ``grad`` is counted too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    @property
    def count(self) -> int:
        return sum(self.ops.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = SYNC_OPS.get(func)
        if name is None and func in _INDEX_OPS and _has_mask(args):
            name = "boolean-mask index"  # output size = number of True entries: read on the host on CUDA
        if name is not None:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))
