"""Two small pieces of the losses with hand-written backwards: row normalisation and the sum of
squares of many tensors.

Written with autograd's elementwise ops, a row normalisation costs about six kernels forward and
a dozen backward, and `sum ||W||^2` three per parameter each way; on a GPU each kernel is a launch
of a few microseconds whatever its size, and an IRLLRec step normalises fourteen times. These
Functions compute the same values in four to five kernels each way (one foreach kernel per
direction for the sum of squares). The fused losses use them; impl="torch" keeps the literal
formulas.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch.autograd.function import once_differentiable


class _ScaleRows(torch.autograd.Function):
    """y = x * s per row, s = 1 / sqrt(eps + ||x||^2) (clamp False) or 1 / max(||x||, eps).

    With y = s x: dx = s (dy - y <dy, y>), the projection term only where s depends on x (always
    for the first form; where ||x|| >= eps for the second, as torch's clamp_min passes the
    gradient at equality).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float, clamp: bool) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        if clamp:
            free = norm >= eps
            scale = norm.clamp_min_(eps).reciprocal_()
        else:
            free = None
            scale = norm.square_().add_(eps).rsqrt_()
        y = x * scale
        ctx.save_for_backward(y, scale, free)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: torch.Tensor):
        y, scale, free = ctx.saved_tensors
        dot = (grad_y * y).sum(-1, keepdim=True)
        if free is not None:
            dot = dot.mul_(free)
        return torch.addcmul(grad_y, y, dot, value=-1).mul_(scale), None, None


def rlm_normalize(x: torch.Tensor) -> torch.Tensor:
    """x / sqrt(1e-8 + ||x||^2) per row (RLMRec's cal_infonce_loss)."""
    return _ScaleRows.apply(x, 1e-8, False)


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """F.normalize(x, dim=-1): x / max(||x||, 1e-12) per row."""
    return _ScaleRows.apply(x, 1e-12, True)


class _SumOfSquares(torch.autograd.Function):
    """sum over tensors of ||t||^2; the gradient of each is 2 t (only for those that need one)."""

    @staticmethod
    def forward(ctx, *tensors: torch.Tensor) -> torch.Tensor:
        # only those with a gradient: frozen ones (IRLLRec's teacher) may change in place before
        # the backward runs
        ctx.save_for_backward(*(t for t, need in zip(tensors, ctx.needs_input_grad) if need))
        return torch.stack(torch._foreach_norm(tensors)).square_().sum()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        wanted = ctx.saved_tensors
        grads = iter(torch._foreach_mul(wanted, 2 * grad) if wanted else ())
        return tuple(next(grads) if need else None for need in ctx.needs_input_grad)


def sum_of_squares(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum_t ||t||^2 over tensors of one dtype and device, differentiable in each."""
    return _SumOfSquares.apply(*tensors)
