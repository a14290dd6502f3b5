"""The text MLPs, Linear -> LeakyReLU -> Linear, with their second half in blocks of rows (CPU).

Done whole, the hidden gradient's product, the activation's backward and the teacher's
out-of-place activation each stream a [rows, hidden] buffer (64 MB at Amazon-book) through main
memory, and the hidden gradient is a fresh 64 MB whose pages fault in one by one while the
product writes them. In blocks of a few hundred rows each block is written and re-read while it
is still in cache, the activation's backward runs in place, and the hidden gradient exists one
block at a time in a buffer reused by every block (the first layer's weight gradient is summed
block by block too). Row by row the products are the same; only the weight gradients' sums over
rows are taken block by block.

On a GPU the whole-tensor form stays: there every block would be several more kernel launches.
"""
from __future__ import annotations

from typing import Callable, Optional

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


class _LeakyMlp(torch.autograd.Function):
    """linear(leaky_relu(linear(x, w1, b1), slope), w2, b2).

    The pre-activation is the one [n, hidden] buffer: the activation overwrites it, and it is all
    that autograd saves besides the inputs (the slope is positive, so the activation's sign gives
    the derivative).
    """

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, slope: float, rows: int, on_hidden):
        hidden = x.new_empty((x.shape[0], w1.shape[0]))
        _linear_out(x, w1, b1, hidden)
        if on_hidden is not None:
            on_hidden(hidden)
        out = x.new_empty((x.shape[0], w2.shape[0]))
        for block in _blocks(x.shape[0], rows):
            act = torch.nn.functional.leaky_relu_(hidden[block], slope)
            _linear_out(act, w2, b2, out[block])
        ctx.save_for_backward(x, w1, hidden, w2)
        ctx.slope, ctx.rows = slope, rows
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, w1, act, w2 = ctx.saved_tensors
        need_x, need_w1, need_b1, need_w2, need_b2 = ctx.needs_input_grad[:5]
        grad_out = grad_out.contiguous()
        grad_x = torch.empty_like(x) if need_x else None
        grad_w1 = torch.zeros_like(w1) if need_w1 else None
        grad_b1 = act.new_zeros(act.shape[1]) if need_b1 else None
        grad_w2 = torch.zeros_like(w2) if need_w2 else None
        need_hidden = need_x or need_w1 or need_b1
        hidden_grad = (act.new_empty((min(ctx.rows, act.shape[0]), act.shape[1]))
                       if need_hidden else None)
        for block in _blocks(act.shape[0], ctx.rows):
            grad_block = grad_out[block]
            if need_w2:
                grad_w2.addmm_(grad_block.t(), act[block])
            if not need_hidden:
                continue
            g = hidden_grad[: grad_block.shape[0]]
            torch.mm(grad_block, w2, out=g)
            torch.ops.aten.leaky_relu_backward.grad_input(g, act[block], ctx.slope, True,
                                                          grad_input=g)
            if need_w1:
                grad_w1.addmm_(g.t(), x[block])
            if need_b1:
                grad_b1 += g.sum(0)
            if need_x:
                torch.mm(g, w1, out=grad_x[block])
        grad_b2 = grad_out.sum(0) if need_b2 else None
        return grad_x, grad_w1, grad_b1, grad_w2, grad_b2, None, None, None


def leaky_mlp(x: torch.Tensor, w1: torch.Tensor, b1: Optional[torch.Tensor], w2: torch.Tensor,
              b2: Optional[torch.Tensor], slope: float, rows: Optional[int] = None,
              on_hidden: Optional[Callable[[torch.Tensor], None]] = None) -> torch.Tensor:
    """linear(leaky_relu(linear(x, w1, b1), slope), w2, b2) for x [n, in], w1 [hidden, in],
    w2 [out, hidden], differentiated in blocks of `rows` rows (default BLOCK_ROWS); slope > 0.

    on_hidden, if given, is called once with the pre-activation [n, hidden] before the activation
    overwrites it (the momentum teacher's recurrence reads it there); it must not keep it.
    """
    if not slope > 0:
        raise ValueError(f"the slope must be positive (its sign gives the derivative), got {slope}")
    return _LeakyMlp.apply(x, w1, b1, w2, b2, float(slope), _block_rows(rows, x.shape[0]),
                           on_hidden)


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
