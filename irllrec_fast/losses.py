"""Drop-in losses for IRLLRec / RLMRec trainers (`loss_utils` names, argument order, reductions).

Replace `from models.loss_utils import ...` (or `import loss_utils`) with
`from irllrec_fast import losses` / `from irllrec_fast.losses import ...`: every function keeps its
original semantics. Each takes `impl="fused" | "torch"`:

- "torch" is the literal formula of the original code (it materialises the B x M similarity
  matrix, and like the original its plain exp-sum can overflow for very small temperatures);
- "fused" (the default when the compiled operators are loaded with kernels for the inputs'
  device) runs `ops.infonce`, which never materialises B x M and computes the log-sum-exp
  stably; its row normalisations and `reg_params` have hand-written backwards
  (`_lean_autograd`: the same values in fewer kernels).

Shapes: B rows of anchors/positives, M candidates, d features.

Mixed precision: the fused kernels compute in float32 or float64. Half-precision inputs
(bfloat16, float16, as autocast makes them) enter the fused InfoNCE losses as float32, the way
autocast itself runs exp, log and sum in float32: the loss comes out float32 and the gradients
flow back in the inputs' own dtypes.

A temperature may be a float or a one-element tensor; one that requires grad (learnable) gets its
gradient on both paths.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from . import _lean_autograd, _library, ops

_IMPLS = ("fused", "torch")


def _fused_available() -> bool:
    return _library.available() and hasattr(ops, "infonce")


def resolve_impl(impl: Optional[str], device: Optional[torch.device] = None) -> str:
    """'fused' or 'torch' for inputs on `device`. None picks fused when the compiled operators are
    loaded with kernels for that device (a build without the CUDA toolkit has none for a GPU);
    an explicit 'fused' that cannot run there raises, saying why."""
    if impl is None:
        return "fused" if _fused_available() and _library.kernels_for(device) else "torch"
    if impl not in _IMPLS:
        raise ValueError(f"impl must be 'fused' or 'torch', got {impl!r}")
    if impl == "fused":
        _library.require(device)
    return impl


_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _kernel_precision(*tensors):
    """The tensors, half-precision ones taken to float32 for the fused kernels (module docstring).
    A tensor passed twice stays one tensor, so that `c is b` still holds for the kernel."""
    cast = {}
    out = []
    for t in tensors:
        if t is not None and t.dtype in _HALF_DTYPES:
            if id(t) not in cast:
                cast[id(t)] = t.float()
            t = cast[id(t)]
        out.append(t)
    return out


def _scaled_for_kernel(anchors: torch.Tensor, temperature, value: float):
    """(anchors, tau) for ops.infonce, which takes tau as a plain float (`value`, the checked
    temperature). A learnable temperature (a tensor that requires grad) divides the anchors
    instead, with tau = 1: the logits <a / t, c> are the same, and autograd then reaches it."""
    learnable = isinstance(temperature, torch.Tensor) and temperature.requires_grad
    if learnable:
        return anchors / temperature.to(anchors.dtype), 1.0
    return anchors, value


def _check_temperature(temperature, read_tensor: bool) -> Optional[float]:
    """The temperature as a float after checking it is a finite number > 0; read once per loss.
    A tensor's value is read (which waits for its device) only when `read_tensor`: the kernel
    needs the float anyway; the torch paths leave a tensor temperature on the device, its value
    unchecked (None)."""
    if isinstance(temperature, torch.Tensor):
        if temperature.numel() != 1 or not temperature.is_floating_point():
            raise ValueError("a temperature tensor must hold one floating-point number, got "
                             f"shape {tuple(temperature.shape)}, {temperature.dtype}")
        if not read_tensor:
            return None
        value = float(temperature.detach())
    elif isinstance(temperature, numbers.Real) and not isinstance(temperature, bool):
        value = float(temperature)
    else:
        raise TypeError(f"temperature must be a number or a one-element tensor, got "
                        f"{temperature!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {value}")
    return value


def _rlm_normalize(x: torch.Tensor) -> torch.Tensor:
    """x / sqrt(1e-8 + ||x||^2) per row, as RLMRec's cal_infonce_loss normalises."""
    return x / torch.sqrt(1e-8 + x.square().sum(-1, keepdim=True))


def _check_rows(name: str, x: torch.Tensor, like: Optional[Tuple[str, torch.Tensor]] = None,
                same_rows: bool = False) -> None:
    """x is a 2-D floating-point tensor with at least one row; with like = (its name, tensor),
    as many columns as it (and rows too when same_rows). Checked here, on both paths, so that
    errors name the caller's arguments and the two paths refuse the same inputs."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [rows, d], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row, got shape {tuple(x.shape)}")
    if like is not None:
        other_name, other = like
        if x.shape[1] != other.shape[1]:
            raise ValueError(f"{name} must have the {other.shape[1]} columns of {other_name}, "
                             f"got {x.shape[1]}")
        if same_rows and x.shape[0] != other.shape[0]:
            raise ValueError(f"{name} must have the {other.shape[0]} rows of {other_name}, got "
                             f"{x.shape[0]}")


def cal_bpr_loss(anc_embeds: torch.Tensor, pos_embeds: torch.Tensor,
                 neg_embeds: torch.Tensor) -> torch.Tensor:
    """BPR, summed over the batch: sum softplus(<anc, neg> - <anc, pos>). All [B, d]."""
    _check_rows("anc_embeds", anc_embeds)
    _check_rows("pos_embeds", pos_embeds, ("anc_embeds", anc_embeds), same_rows=True)
    _check_rows("neg_embeds", neg_embeds, ("anc_embeds", anc_embeds), same_rows=True)
    pos_preds = (anc_embeds * pos_embeds).sum(-1)
    neg_preds = (anc_embeds * neg_embeds).sum(-1)
    return F.softplus(neg_preds - pos_preds).sum()


def _sum_of_squares(tensors, impl: Optional[str]) -> torch.Tensor:
    tensors = list(tensors)
    if not tensors:
        return torch.zeros(())
    same_kind = len({(t.dtype, t.device) for t in tensors}) == 1
    if resolve_impl(impl, tensors[0].device) == "fused" and same_kind:
        return _lean_autograd.sum_of_squares(tensors)
    return sum(t.square().sum() for t in tensors)


def reg_params(model: torch.nn.Module, *, impl: Optional[str] = None) -> torch.Tensor:
    """sum of ||W||^2 over all of model's parameters (frozen ones too, as in the original)."""
    return _sum_of_squares(model.parameters(), impl)


def reg_pick_embeds(embeds_list, *, impl: Optional[str] = None) -> torch.Tensor:
    """sum of ||E||^2 over the given tensors (typically the batch's picked embeddings)."""
    return _sum_of_squares(embeds_list, impl)


def cal_infonce_loss(embeds1: torch.Tensor, embeds2: torch.Tensor, all_embeds2: torch.Tensor,
                     temp: float = 1.0, *, impl: Optional[str] = None) -> torch.Tensor:
    """RLMRec's InfoNCE, summed over rows (callers divide by B).

    embeds1, embeds2: [B, d] anchors and positives; all_embeds2: [M, d] candidates (the positive
    counts in the denominator when it is among them). Rows are normalised as
    x / sqrt(1e-8 + ||x||^2). Returns a scalar.
    """
    _check_rows("embeds1", embeds1)
    _check_rows("embeds2", embeds2, ("embeds1", embeds1), same_rows=True)
    _check_rows("all_embeds2", all_embeds2, ("embeds1", embeds1))
    fused = resolve_impl(impl, embeds1.device) == "fused"
    tau = _check_temperature(temp, read_tensor=fused)
    if fused:
        embeds1, embeds2, all_embeds2 = _kernel_precision(embeds1, embeds2, all_embeds2)
    normalize = _lean_autograd.rlm_normalize if fused else _rlm_normalize
    a, b = normalize(embeds1), normalize(embeds2)
    c = b if all_embeds2 is embeds2 else normalize(all_embeds2)
    if fused:
        anchors, tau = _scaled_for_kernel(a, temp, tau)
        return ops.infonce(anchors, b, c, tau).sum()
    nume_term = -(a * b / temp).sum(-1)
    deno_term = torch.log(torch.sum(torch.exp(a @ c.T / temp), dim=-1))
    return (nume_term + deno_term).sum()


def ssl_con_loss(x: torch.Tensor, y: torch.Tensor, temp: float = 1.0, *,
                 impl: Optional[str] = None) -> torch.Tensor:
    """IRLLRec's translation-alignment InfoNCE, averaged over rows.

    x, y: [N, d]; row n of x is contrasted with all rows of y. With x^, y^ = F.normalize(x, y):
    -mean_n log( exp(x^_n.y^_n / temp) / (sum_m exp(x^_n.y^_m / temp) + 1e-8) + 1e-8 ).
    """
    _check_rows("x", x)
    _check_rows("y", y, ("x", x), same_rows=True)
    fused = resolve_impl(impl, x.device) == "fused"
    tau = _check_temperature(temp, read_tensor=fused)
    if not fused:
        x, y = F.normalize(x), F.normalize(y)
        mole = torch.exp(torch.sum(x * y, dim=1) / temp)
        deno = torch.sum(torch.exp(x @ y.T / temp), dim=1)
        return -torch.log(mole / (deno + 1e-8) + 1e-8).mean()
    # rest = -pos + lse per row, with pos = <x_n, y_n>/temp and lse = log sum_m exp(<x_n, y_m>/temp);
    # mole / (deno + 1e-8) = exp(-rest - log1p(1e-8 exp(-lse))), and log1p(1e-8 exp(-lse)) =
    # softplus(log(1e-8) - lse), which neither overflows nor gives inf / inf gradients.
    x, y = _kernel_precision(x, y)
    x, y = _lean_autograd.unit_rows(x), _lean_autograd.unit_rows(y)
    anchors, tau = _scaled_for_kernel(x, temp, tau)
    rest = ops.infonce(anchors, y, y, tau)
    lse = rest + (x * y).sum(1) / temp
    ratio = torch.exp(-rest - F.softplus(math.log(1e-8) - lse))
    return -torch.log(ratio + 1e-8).mean()


def momentum_distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The soft term of IRLLRec's momentum distillation (IRLLREC_SPEC.md section 4.6):
    (1/N) sum_n sum_k softmax(teacher_n)_k * log_softmax(student_n)_k, over the d columns.

    student, teacher: [N, d]; the teacher gets no gradient. The model's loss uses -0.6 * this.
    """
    _check_rows("student", student)
    _check_rows("teacher", teacher, ("student", student), same_rows=True)
    soft_targets = torch.softmax(teacher.detach(), dim=1)
    return (soft_targets * torch.log_softmax(student, dim=1)).sum(1).mean()


def info_nce(a: torch.Tensor, b: torch.Tensor, candidates: Optional[torch.Tensor] = None,
             temperature: float = 0.2, reduction: str = "mean", symmetric: bool = False, *,
             impl: Optional[str] = None) -> torch.Tensor:
    """General InfoNCE with F.normalize'd rows.

    a, b: [B, d] anchors and positives; candidates: [M, d], or None for in-batch (the rows of b).
    Per row: -<a_k, b_k>/tau + log sum_j exp(<a_k, c_j>/tau). reduction: "mean" | "sum" | "none"
    ([B]). symmetric=True (in-batch only) averages the a->b and b->a directions.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    _check_rows("a", a)
    _check_rows("b", b, ("a", a), same_rows=True)
    if candidates is not None:
        _check_rows("candidates", candidates, ("a", a))
    if symmetric and candidates is not None:
        raise ValueError("symmetric=True needs in-batch candidates (candidates=None)")
    impl = resolve_impl(impl, a.device)
    tau = _check_temperature(temperature, read_tensor=impl == "fused")
    if impl == "fused":
        a, b, candidates = _kernel_precision(a, b, candidates)
    normalize = _lean_autograd.unit_rows if impl == "fused" else F.normalize
    a, b = normalize(a), normalize(b)
    c = b if candidates is None else normalize(candidates)

    def one_direction(x, y, cand):
        if impl == "fused":
            anchors, kernel_tau = _scaled_for_kernel(x, temperature, tau)
            return ops.infonce(anchors, y, cand, kernel_tau)
        return torch.logsumexp(x @ cand.T / temperature, dim=1) - (x * y).sum(1) / temperature

    per_row = one_direction(a, b, c)
    if symmetric:
        per_row = 0.5 * (per_row + one_direction(b, a, a))
    if reduction == "none":
        return per_row
    return per_row.mean() if reduction == "mean" else per_row.sum()
