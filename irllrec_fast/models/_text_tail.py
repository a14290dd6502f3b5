"""The text MLPs' second half, LeakyReLU then Linear, in blocks of rows (used on the CPU).

Done whole, the hidden gradient's product, the activation's backward and the teacher's
out-of-place activation each stream a [rows, hidden] buffer (64 MB at Amazon-book) through main
memory. In blocks of a few hundred rows, each block is written and re-read while it is still in
cache, and the activation's backward runs in place on the hidden gradient. Row by row the products are the same; only the weight gradient's sum over
rows is taken block by block.

On a GPU the whole-tensor form stays: there every block would be several more kernel launches.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch.autograd.function import once_differentiable

# Rows per block (512 x 784 floats = 1.6 MB). None: the model uses the whole-tensor form on the
# CPU too, as on a GPU (scripts/count_step_ops.py and the model tests set it).
BLOCK_ROWS: Optional[int] = 512


def _block_rows(rows: Optional[int], n: int) -> int:
    """rows, else BLOCK_ROWS, else all n rows in one block."""
    rows = int(rows) if rows is not None else BLOCK_ROWS if BLOCK_ROWS is not None else max(n, 1)
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    return rows


def _blocks(n: int, rows: int):
    for start in range(0, n, rows):
        yield slice(start, min(start + rows, n))


def _linear_out(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                out: torch.Tensor) -> None:
    if bias is None:
        torch.mm(x, weight.t(), out=out)
    else:
        torch.addmm(bias, x, weight.t(), out=out)


class _LeakyLinearInPlace(torch.autograd.Function):
    """out = leaky_relu(hidden) @ weight^T + bias, the activation written into `hidden`.

    Saves the activation alone: the slope is positive, so its sign gives the derivative.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, slope: float, rows: int):
        out = hidden.new_empty((hidden.shape[0], weight.shape[0]))
        for block in _blocks(hidden.shape[0], rows):
            act = torch.nn.functional.leaky_relu_(hidden[block], slope)
            _linear_out(act, weight, bias, out[block])
        ctx.mark_dirty(hidden)
        ctx.mark_non_differentiable(hidden)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(hidden, weight)
        ctx.slope, ctx.rows, ctx.has_bias = slope, rows, bias is not None
        return out, hidden

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, _grad_act):
        act, weight = ctx.saved_tensors
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        if grad_out is None:
            return None, None, None, None, None
        grad_out = grad_out.contiguous()
        grad_hidden = torch.empty_like(act) if need_hidden else None
        grad_weight = torch.zeros_like(weight) if need_weight else None
        for block in _blocks(act.shape[0], ctx.rows):
            if need_hidden:
                g = grad_hidden[block]
                torch.mm(grad_out[block], weight, out=g)
                torch.ops.aten.leaky_relu_backward.grad_input(g, act[block], ctx.slope, True,
                                                              grad_input=g)
            if need_weight:
                grad_weight.addmm_(grad_out[block].t(), act[block])
        grad_bias = grad_out.sum(0) if need_bias and ctx.has_bias else None
        return grad_hidden, grad_weight, grad_bias, None, None


def leaky_linear_in_place(hidden: torch.Tensor, weight: torch.Tensor,
                          bias: Optional[torch.Tensor], slope: float,
                          rows: Optional[int] = None) -> torch.Tensor:
    """linear(leaky_relu(hidden, slope), weight, bias) for hidden [n, h], weight [out, h], computed
    and differentiated in blocks of `rows` rows. `hidden` is overwritten by its activation (it
    must not be needed afterwards, as with `leaky_relu(..., inplace=True)`); slope > 0; rows
    defaults to BLOCK_ROWS."""
    if not slope > 0:
        raise ValueError(f"the slope must be positive (its sign gives the derivative), got {slope}")
    return _LeakyLinearInPlace.apply(hidden, weight, bias, float(slope), _block_rows(rows, hidden.shape[0]))[0]


@torch.no_grad()
def blend_leaky_linear(hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                       slope: float, blend: Optional[torch.Tensor] = None, momentum: float = 0.0,
                       rows: Optional[int] = None) -> torch.Tensor:
    """linear(leaky_relu(hidden, slope), weight, bias) without gradients, `hidden` kept as it is
    except that, with `blend`, it first becomes momentum * hidden + (1 - momentum) * blend (in
    place), block by block: the momentum teacher's cached pre-activation and its recurrence."""
    rows = _block_rows(rows, hidden.shape[0])
    out = hidden.new_empty((hidden.shape[0], weight.shape[0]))
    act = hidden.new_empty((min(rows, hidden.shape[0]), hidden.shape[1]))
    for block in _blocks(hidden.shape[0], rows):
        h = hidden[block]
        if blend is not None:
            h.mul_(momentum).add_(blend[block], alpha=1.0 - momentum)
        a = act[: h.shape[0]]
        torch.ops.aten.leaky_relu.out(h, slope, out=a)
        _linear_out(a, weight, bias, out[block])
    return out
