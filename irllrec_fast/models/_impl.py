"""Which operators a model runs: the fused kernels (`impl="fused"`) or their pure-PyTorch
references (`impl="torch"`).

The table is built when a model is constructed and looks the fused functions up by name on
`irllrec_fast.ops` at that moment, so operators that arrive in a later build are picked up without
touching the models.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Iterable, Optional

import torch

from .. import _library, ops
from ..ops import reference

IMPLS = ("fused", "torch")


def _missing(names: Iterable[str]) -> list[str]:
    return [name for name in names if not callable(getattr(ops, name, None))]


def resolve(impl: Optional[str], names: Iterable[str],
            device: Optional[torch.device] = None) -> str:
    """'fused' or 'torch'. None picks 'fused' when the compiled kernels (for `device`, when given)
    and every operator in `names` are present, else 'torch'. An explicit 'fused' that cannot be
    honoured raises."""
    names = tuple(names)
    if impl is None:
        return "fused" if _library.kernels_for(device) and not _missing(names) else "torch"
    if impl not in IMPLS:
        raise ValueError(f"impl must be 'fused' or 'torch', got {impl!r}")
    if impl == "fused":
        _library.require()
        missing = _missing(names)
        if missing:
            raise RuntimeError(
                f"impl='fused' needs the operators {', '.join(missing)}, which this build of "
                f"irllrec_fast does not provide; use impl='torch'")
    return impl


def operator_table(impl: str, names: Iterable[str]) -> SimpleNamespace:
    """A namespace with one callable per name: `ops.<name>` for 'fused', `ops.reference.<name>`
    for 'torch' (same signatures)."""
    source = ops if impl == "fused" else reference
    return SimpleNamespace(**{name: getattr(source, name) for name in names})
