"""`intent_assign`: softmax(e w) w^T, each row's soft assignment to K intent prototypes mapped back
to embedding space (IRLLREC_SPEC.md section 2).

Kernels: csrc/cpu/intent_assign.cpp, csrc/cuda/intent_assign.cu. Reference:
`irllrec_fast.ops.reference.intent_assign`. The forward keeps only the per-row log-sum-exp of the
logits e w (never the [n, K] probabilities); the backward recomputes the probabilities from it and
returns gradients for e and w (`intent_assign_backward`).
"""
from __future__ import annotations

import torch

from .._library import available, require
from ._first_order import first_order_only


def _check(e: torch.Tensor, w: torch.Tensor) -> None:
    for name, t in (("e", e), ("w", w)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    if e.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"e must be float32 or float64, got {e.dtype}")
    if w.dtype != e.dtype:
        raise TypeError(f"w must have the dtype of e ({e.dtype}), got {w.dtype}")
    if w.shape[0] != e.shape[1]:
        raise ValueError(f"w must have shape ({e.shape[1]}, K) for e of shape {tuple(e.shape)}, "
                         f"got {tuple(w.shape)}")
    if w.shape[1] < 1:
        raise ValueError("w must have at least one column (K >= 1 prototypes), got shape "
                         f"{tuple(w.shape)}")
    if w.device != e.device:
        raise ValueError(f"w is on {w.device} but e is on {e.device}; move one with .to()")


def intent_assign(e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """out [n, d] = softmax(e w, dim=1) w^T.

    Args:
        e: [n, d] embeddings, float32 or float64, differentiable.
        w: [d, K] prototypes (K columns, any K >= 1; at most 512 on CUDA), same dtype and
            device, differentiable.

    On CUDA the backward's kernels hold a [d, 32] slice of w and its gradient in shared memory;
    above about d = 700 in float32 (350 in float64) on an H100 the backward runs as dense
    products with [n, K] temporaries instead. The CUDA forward holds a row's d features and K
    logits per warp in shared memory and refuses, with an error, d + K above about 7,000 in
    float32 (3,600 in float64) on an H100. The CPU kernels take any shape.
    """
    _check(e, w)
    require(e.device)
    out, _ = torch.ops.irllrec_fast.intent_assign(e, w)
    return out


def _setup_context(ctx, inputs, output):
    e, w = inputs
    _, lse = output
    ctx.save_for_backward(e, w, lse)
    ctx.mark_non_differentiable(lse)
    ctx.set_materialize_grads(False)  # no zeros for lse's gradient, which is never used


@first_order_only
def _backward(ctx, grad_out, grad_lse):
    e, w, lse = ctx.saved_tensors
    if grad_out is None:
        return None, None
    grad_e, grad_w = torch.ops.irllrec_fast.intent_assign_backward(grad_out.contiguous(), e, w, lse)
    return (grad_e if ctx.needs_input_grad[0] else None,
            grad_w if ctx.needs_input_grad[1] else None)


if available():

    @torch.library.register_fake("irllrec_fast::intent_assign")
    def _intent_assign_fake(e, w):
        return e.new_empty(e.shape), e.new_empty((e.shape[0],))

    @torch.library.register_fake("irllrec_fast::intent_assign_backward")
    def _intent_assign_backward_fake(grad, e, w, lse):
        return e.new_empty(e.shape), w.new_empty(w.shape)

    torch.library.register_autograd("irllrec_fast::intent_assign", _backward,
                                    setup_context=_setup_context)
