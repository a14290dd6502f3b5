"""`infonce`: per-row InfoNCE of anchors against a candidate set, without the [B, M] logits.

Kernels: csrc/cpu/infonce.cpp, csrc/cuda/infonce.cu. Reference: `irllrec_fast.ops.reference.infonce`.
The forward saves only the per-row log-sum-exp; `infonce_backward` recomputes the logits tile by
tile from it and returns the gradients of a, b and c (when c is b, autograd adds the two shares).
"""
from __future__ import annotations

import math
import numbers

import torch

from .._library import available, require
from ._first_order import first_order_only


def _check_matrix(name: str, x, device=None, dtype=None) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [rows, d], got shape {tuple(x.shape)}")
    if dtype is None:
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    elif x.dtype != dtype:
        raise TypeError(f"{name} must have the dtype of a ({dtype}), got {x.dtype}")
    if device is not None and x.device != device:
        raise ValueError(f"{name} is on {x.device} but a is on {device}; move one with .to()")


def check_infonce_args(a, b, c, temperature) -> None:
    """Raises TypeError / ValueError naming the bad argument of `infonce(a, b, c, temperature)`."""
    _check_matrix("a", a)
    _check_matrix("b", b, a.device, a.dtype)
    _check_matrix("c", c, a.device, a.dtype)
    if b.shape != a.shape:
        raise ValueError(f"b must have the shape of a {tuple(a.shape)}, got {tuple(b.shape)}")
    if c.shape[1] != a.shape[1]:
        raise ValueError(f"c must have {a.shape[1]} columns like a, got shape {tuple(c.shape)}")
    if c.shape[0] == 0:
        raise ValueError("c must have at least one row (candidate), got 0")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a real number (a Python float), got "
                        f"{type(temperature).__name__}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")


def infonce(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-row InfoNCE [B]: -<a_k, b_k>/tau + log sum_j exp(<a_k, c_j>/tau).

    Args:
        a: [B, d] anchors; b: [B, d] positives; c: [M, d] candidates, M >= 1 (may be b itself, or
            contain b's rows: the positive then counts in the denominator). float32 or float64,
            all on one device, differentiable. No normalisation is applied.
        temperature: tau > 0 (a Python float).

    Extra memory is O((B + M) d) whatever M is; any finite input gives a finite result (the
    log-sum-exp is taken with a running maximum).

    Precision: float32 on CUDA (sm_80+, d <= 128) runs on the tensor cores with float32 accuracy
    (three TF32 products per product, "3xTF32"), or with one TF32 product, like torch's matmuls,
    when TF32 matmuls are allowed (`torch.backends.cuda.matmul.allow_tf32 = True` or
    `torch.backends.cuda.matmul.fp32_precision = "tf32"`) when the forward or backward runs.
    """
    check_infonce_args(a, b, c, temperature)
    require(a.device)
    loss, _ = torch.ops.irllrec_fast.infonce(a, b, c, float(temperature))
    return loss


def _setup_context(ctx, inputs, output):
    a, b, c, temperature = inputs
    _, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(a, b, c, lse)
    ctx.temperature = temperature


@first_order_only
def _backward(ctx, grad_loss, grad_lse):
    a, b, c, lse = ctx.saved_tensors
    grad_a, grad_b, grad_c = torch.ops.irllrec_fast.infonce_backward(
        grad_loss, a, b, c, lse, ctx.temperature)
    needs = ctx.needs_input_grad
    return (grad_a if needs[0] else None, grad_b if needs[1] else None,
            grad_c if needs[2] else None, None)


if available():

    @torch.library.register_fake("irllrec_fast::infonce")
    def _infonce_fake(a, b, c, temperature):
        return a.new_empty((a.shape[0],)), a.new_empty((a.shape[0],))

    @torch.library.register_fake("irllrec_fast::infonce_backward")
    def _infonce_backward_fake(grad, a, b, c, lse, temperature):
        return (a.new_empty(a.shape), b.new_empty(b.shape), c.new_empty(c.shape))

    torch.library.register_autograd("irllrec_fast::infonce", _backward,
                                    setup_context=_setup_context)
