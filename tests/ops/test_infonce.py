"""infonce against the formula of IRLLREC_SPEC.md section 4 (one NCE row), written here in float64:
values and the gradients of a, b and c on every device, edge cases, extreme logits, memory,
registrations and bad input."""
import gc
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import assert_close, assert_compiles_like_eager, tf32_allowed
from irllrec_fast import ops
from irllrec_fast.ops import reference


def spec_infonce(a, b, c, t):
    """Row k: -<a_k, b_k>/t + log sum_j exp(<a_k, c_j>/t), in float64 with the row maximum taken
    out before exp (exact in real arithmetic, finite for any finite input)."""
    a, b, c = a.double(), b.double(), c.double()
    logits = a @ c.T / t
    top = logits.max(1, keepdim=True).values.detach()
    return top.squeeze(1) + torch.log(torch.exp(logits - top).sum(1)) - (a * b).sum(1) / t


def unit_rows(n, d, device, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1).to(device, dtype)


def upstream(n, device, dtype, seed=7):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=gen, dtype=torch.float64).to(device, dtype)


def fused_and_spec(a, b, c, t, c_is_b=False):
    """(loss, grad_a, grad_b, grad_c) of ops.infonce and of spec_infonce (float64) for the same
    upstream gradient; grad_c is None when c is b (its share is in grad_b)."""
    g = upstream(a.shape[0], a.device, a.dtype)
    results = []
    for fn, cast in ((ops.infonce, lambda x: x), (spec_infonce, lambda x: x.double())):
        aa = cast(a).detach().requires_grad_()
        bb = cast(b).detach().requires_grad_()
        cc = bb if c_is_b else cast(c).detach().requires_grad_()
        loss = fn(aa, bb, cc, t)
        loss.backward(g.to(loss.dtype))
        results.append((loss.detach(), aa.grad, bb.grad, None if c_is_b else cc.grad))
    return results


def assert_all_close(fused, spec, dtype, t, scale=1.0):
    """Losses with the table's tolerance (atol times `scale`); gradients, which are sums of
    terms of size |g|/t that may cancel, with atol also times max|g|/t."""
    grad_scale = scale * max(1.0, float(upstream(fused[0].shape[0], "cpu", torch.float64).abs().max()) / t)
    for i, (got, want) in enumerate(zip(fused, spec)):
        if want is not None:
            assert got.dtype == dtype
            assert_close(got, want.to(dtype), dtype, scale if i == 0 else grad_scale)


SHAPES = [  # (B, M, d): B = 1, M = 1, d in {1, 3, 32, 64, 128}, M not a multiple of any tile
    (1, 1, 1),
    (1, 300, 32),
    (5, 1, 3),
    (16, 300, 1),
    (37, 257, 3),
    (64, 1000, 32),
    (130, 513, 64),
    (20, 700, 128),
    (300, 40, 32),  # B > M
    (7, 47, 5),     # M one short of a 16-column quantum: a single padded column
    (9, 33, 200),   # d beyond the common sizes, not a multiple of the vector width
    (65, 129, 17),  # CUDA float32: just past one 16-wide tensor-core fragment of features
    (33, 70, 129),  # CUDA float32: just past the tensor-core kernels' 128 features (SIMT)
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-M{}-d{}".format(*s))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_spec(device, dtype, shape):
    B, M, d = shape
    a, b, c = (unit_rows(n, d, device, dtype, seed) for n, seed in ((B, 1), (B, 2), (M, 3)))
    fused, spec = fused_and_spec(a, b, c, 0.2)
    assert fused[0].shape == (B,)
    assert_all_close(fused, spec, dtype, 0.2)


def _tensor_core_gpu():
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


@pytest.mark.skipif(not _tensor_core_gpu(), reason="TF32 products need an sm_80+ GPU")
@pytest.mark.parametrize("switch", ["allow_tf32", "fp32_precision"])
@pytest.mark.parametrize("shape", [(64, 1000, 32), (130, 513, 64), (65, 129, 17)],
                         ids=lambda s: "B{}-M{}-d{}".format(*s))
def test_allowing_tf32_switches_the_tensor_cores_to_single_tf32_products(shape, switch):
    """With TF32 matmuls allowed (either switch of torch's) the float32 kernels take one TF32
    product where they otherwise take three (3xTF32). Unit rows, t = 0.2: a TF32 operand carries
    a relative error up to 2^-11, so a logit is off by at most about 2 * 2^-11 / t = 5e-3, and so
    is the log-sum-exp. Being measurably less accurate than the default shows the switch took
    effect. (With only fp32_precision set, torch's allowTF32CuBLAS() raises: the kernels must not
    ask it.)"""
    B, M, d = shape
    a, b, c = (unit_rows(n, d, "cuda", torch.float32, seed) for n, seed in ((B, 1), (B, 2), (M, 3)))
    fused_3x, spec = fused_and_spec(a, b, c, 0.2)
    with tf32_allowed(switch):
        fused_tf32, _ = fused_and_spec(a, b, c, 0.2)
    loss_error = (fused_tf32[0].double() - spec[0]).abs().max().item()
    loss_error_3x = (fused_3x[0].double() - spec[0]).abs().max().item()
    assert loss_error < 1e-2
    assert loss_error > max(1e-6, 10 * loss_error_3x), (loss_error, loss_error_3x)
    g_max = float(upstream(B, "cpu", torch.float64).abs().max())
    for got, want in zip(fused_tf32[1:], spec[1:]):
        # a gradient row is |g| / t times a difference of softmax-weighted unit vectors
        torch.testing.assert_close(got.double(), want, rtol=0, atol=2e-2 * g_max / 0.2)


def test_reference_is_the_spec(device):
    a, b, c = unit_rows(7, 5, device, seed=1), unit_rows(7, 5, device, seed=2), unit_rows(11, 5, device, seed=3)
    assert_close(reference.infonce(a, b, c, 0.3), spec_infonce(a, b, c, 0.3).float())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_candidates_are_the_positives(device, dtype):
    # c is b: the positive sits in the denominator and b gets both gradient shares.
    a, b = unit_rows(50, 16, device, dtype, 1), unit_rows(50, 16, device, dtype, 2)
    fused, spec = fused_and_spec(a, b, b, 0.2, c_is_b=True)
    assert_all_close(fused, spec, dtype, 0.2)
    # the same as passing a separate copy of b as c and adding the two gradients
    (_, _, grad_b, grad_c), _ = fused_and_spec(a, b, b.clone(), 0.2)
    assert_close(fused[2], grad_b + grad_c, dtype)


def test_duplicate_rows(device):
    base_a, base_c = unit_rows(6, 8, device, seed=1), unit_rows(9, 8, device, seed=3)
    a = base_a[[0, 1, 1, 2, 3, 3, 3, 4, 5, 0]]
    b = unit_rows(10, 8, device, seed=2)
    c = base_c[[0, 0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 8]]  # repeated candidates count twice
    fused, spec = fused_and_spec(a, b, c, 0.1)
    assert_all_close(fused, spec, torch.float32, 0.1)
    loss = ops.infonce(a, a, c, 0.1)
    assert torch.equal(loss[1], loss[2]) and torch.equal(loss[4], loss[6])


@pytest.mark.parametrize("t", [0.01, 0.03, 0.1, 0.2, 1.0, 3.0, 10.0])
def test_temperatures_stay_finite_and_accurate(device, t):
    a, b, c = unit_rows(40, 32, device, seed=1), unit_rows(40, 32, device, seed=2), unit_rows(600, 32, device, seed=3)
    a[0] = -c[5]  # a row whose every logit is far below its largest possible value
    fused, spec = fused_and_spec(a, b, c, t)
    for x in fused:
        assert torch.isfinite(x).all()
    # float32 logits carry a relative error ~1e-7, i.e. ~1e-7 / t in absolute terms
    assert_all_close(fused, spec, torch.float32, t, scale=max(1.0, 1.0 / t))


@pytest.mark.parametrize("t", [0.01, 0.2, 10.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logits_far_from_zero(device, dtype, t):
    # rows of norm 100: logits up to 1e4 / t, where a plain sum of exp overflows
    a, b, c = (100 * unit_rows(n, 32, device, dtype, s) for n, s in ((30, 1), (30, 2), (400, 3)))
    fused, spec = fused_and_spec(a, b, c, t)
    for got, want in zip(fused, spec):
        assert torch.isfinite(want).all() and torch.isfinite(got).all()
    logit_scale, grad_size = 1e4 / t, 2 * 100 / t  # |g| <= 2
    loss, grad_a, grad_b, grad_c = (x.double() for x in fused)
    if dtype == torch.float64:
        assert_close(loss, spec[0], dtype, logit_scale)
        for got, want in zip(fused[1:], spec[1:]):
            assert_close(got, want, dtype, grad_size)
        return
    # float32 logits of size L carry errors ~1e-7 L, so the loss is that accurate ...
    torch.testing.assert_close(loss, spec[0], atol=1e-6 * logit_scale, rtol=1e-5)
    # ... but softmax weights between near-equal logits are not (L = 1e6: errors of ~0.1 in
    # the exponent). What holds at any size: grad_b = -g a / t; the weights of a row sum to 1
    # (so sum_j grad_c_j = sum_k g_k a_k / t) up to the rounding of the saved float32 lse, a
    # factor exp(+-|lse| 2^-24); they are nonnegative (so |grad_a_k + g_k b_k / t| <=
    # |g_k| max_j |c_j| / t, times that factor).
    g = upstream(30, device, torch.float64)
    a64, b64 = a.double(), b.double()
    _, lse = torch.ops.irllrec_fast.infonce(a, b, c, t)
    slack = math.expm1(float(lse.abs().max()) * 2.0 ** -23) + 1e-5
    torch.testing.assert_close(grad_b, -g[:, None] * a64 / t, atol=1e-5 * grad_size, rtol=1e-5)
    weighted = g[:, None] * a64 / t
    assert torch.all((grad_c.sum(0) - weighted.sum(0)).abs() <= slack * weighted.abs().sum(0) + 1e-3)
    mix = (grad_a + g[:, None] * b64 / t).norm(dim=1)
    assert torch.all(mix <= g.abs() * 100 / t * (1 + slack))
    if t >= 0.2:  # logits up to 5e4: weights accurate to ~1e-2 relative
        for got, want in zip(fused[1:], spec[1:]):
            torch.testing.assert_close(got.double(), want, atol=1e-2 * grad_size, rtol=1e-2)


def test_gradcheck_float64(device):
    a, b, c = (unit_rows(n, 3, device, torch.float64, s) * 2 for n, s in ((4, 1), (4, 2), (7, 3)))
    a, b, c = (x.requires_grad_() for x in (a, b, c))
    assert torch.autograd.gradcheck(lambda a, b, c: ops.infonce(a, b, c, 0.5), (a, b, c))
    assert torch.autograd.gradcheck(lambda a, b: ops.infonce(a, b, b, 0.5), (a, b))


def test_empty_batch(device):
    a = torch.randn(0, 4, device=device, requires_grad=True)
    c = torch.randn(5, 4, device=device, requires_grad=True)
    loss = ops.infonce(a, a, c, 0.2)
    assert loss.shape == (0,)
    loss.sum().backward()
    assert torch.equal(c.grad, torch.zeros_like(c))


def test_forward_and_backward_are_deterministic(device):
    a, b, c = unit_rows(300, 32, device, seed=1), unit_rows(300, 32, device, seed=2), unit_rows(2000, 32, device, seed=3)
    first = fused_and_spec(a, b, c, 0.2)[0]
    for _ in range(2):
        again = fused_and_spec(a, b, c, 0.2)[0]
        assert all(torch.equal(x, y) for x, y in zip(first, again))


@pytest.mark.parametrize("shape", [(1000, 1000, 8), (3000, 300, 32), (300, 3000, 32), (2, 6000, 16)],
                         ids=lambda s: "B{}-M{}-d{}".format(*s))
def test_cpu_results_do_not_depend_on_the_thread_count(shape):
    # the CPU kernels cut the work into a fixed set of units (partial sums over anchor groups,
    # candidate groups, or both, depending on the shape) that threads take in any order
    B, M, d = shape
    a, b, c = unit_rows(B, d, "cpu", seed=1), unit_rows(B, d, "cpu", seed=2), unit_rows(M, d, "cpu", seed=3)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 4):
            torch.set_num_threads(threads)
            results.append(fused_and_spec(a, b, c, 0.2))
    finally:
        torch.set_num_threads(before)
    fused, spec = results[0]
    assert_all_close(fused, spec, torch.float32, 0.2)
    for other, _ in results[1:]:
        assert all(torch.equal(x, y) for x, y in zip(fused, other))


def test_non_contiguous_inputs(device):
    wide = unit_rows(64, 40, device, seed=1)
    a = wide[:, 3:35]                     # row stride 40
    b = unit_rows(128, 32, device, seed=2)[::2]  # every other row
    c = unit_rows(32, 300, device, seed=3).T  # transposed
    assert not (a.is_contiguous() or b.is_contiguous() or c.is_contiguous())
    fused, spec = fused_and_spec(a, b, c, 0.2)
    assert_all_close(fused, spec, torch.float32, 0.2)


def _peak_rss_growth(fn):
    """Bytes the process's resident set grows above its level before fn (Linux)."""
    status = Path("/proc/self/status")

    def field(name):
        return next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines()
                    if line.startswith(name + ":"))

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    before = field("VmRSS")
    fn()
    return field("VmHWM") - before


@pytest.mark.slow
def test_large_candidate_set_in_bounded_memory(device):
    # B x M logits would take B * M * 4 bytes (2 GB on the CPU, 16 GB on a GPU) if materialised
    B, M, d = (2048, 250_000, 16) if device.type == "cpu" else (4096, 1_000_000, 32)
    gen = torch.Generator(device).manual_seed(0)
    a = F.normalize(torch.randn(B, d, device=device, generator=gen), dim=1).requires_grad_()
    b = F.normalize(torch.randn(B, d, device=device, generator=gen), dim=1).requires_grad_()
    c = F.normalize(torch.randn(M, d, device=device, generator=gen), dim=1).requires_grad_()
    out = {}

    def run():
        loss = ops.infonce(a, b, c, 0.2)
        loss.sum().backward()
        out["loss"] = loss.detach()

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        if not Path("/proc/self/clear_refs").exists():
            pytest.skip("peak resident memory needs Linux /proc")
        peak = _peak_rss_growth(run)
    inputs_bytes = (2 * B + M) * d * 4
    # the gradients alone are as large as the inputs
    assert peak < 4 * inputs_bytes < B * M * 4 / 10, (peak, inputs_bytes)
    # values of a few rows against the formula; sum_j grad_c_j = sum_k g_k a_k / t (softmax rows
    # sum to 1), which checks every candidate's gradient at once
    rows = torch.arange(0, B, B // 8, device=device)
    assert_close(out["loss"][rows], spec_infonce(a[rows], b[rows], c, 0.2).float(), scale=10)
    assert_close(c.grad.double().sum(0), a.detach().double().sum(0) / 0.2, torch.float32, scale=100)
    assert_close(b.grad, -a.detach() / 0.2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(device, dtype):
    a, b, c = (unit_rows(n, 12, device, dtype, seed=s).requires_grad_()
               for n, s in ((9, 1), (9, 2), (40, 3)))
    torch.library.opcheck(torch.ops.irllrec_fast.infonce, (a, b, c, 0.3))
    torch.library.opcheck(torch.ops.irllrec_fast.infonce, (a, b, b, 0.3))
    _, lse = torch.ops.irllrec_fast.infonce(a.detach(), b.detach(), c.detach(), 0.3)
    torch.library.opcheck(torch.ops.irllrec_fast.infonce_backward,
                          (torch.randn(9, device=device, dtype=dtype), a.detach(), b.detach(),
                           c.detach(), lse, 0.3))


def test_torch_compile_fullgraph(device):
    a, b, c = (unit_rows(n, 16, device, seed=s).requires_grad_() for n, s in ((32, 1), (32, 2), (100, 3)))

    def loss_fn(a, b, c):
        return ops.infonce(F.normalize(a, dim=1), b, c, 0.2).mean() + ops.infonce(b, a, b, 0.5).sum()

    assert_compiles_like_eager(loss_fn, (a, b, c))


class TestBadInput:
    def setup_method(self):
        self.a, self.b, self.c = torch.randn(4, 3), torch.randn(4, 3), torch.randn(6, 3)

    def test_shapes(self):
        a, b, c = self.a, self.b, self.c
        with pytest.raises(ValueError, match=r"b must have the shape of a \(4, 3\)"):
            ops.infonce(a, b[:3], c, 0.2)
        with pytest.raises(ValueError, match="c must have 3 columns like a"):
            ops.infonce(a, b, c[:, :2], 0.2)
        with pytest.raises(ValueError, match=r"a must be 2-D"):
            ops.infonce(a[0], b, c, 0.2)
        with pytest.raises(ValueError, match="c must have at least one row"):
            ops.infonce(a, b, c[:0], 0.2)

    def test_dtypes(self):
        a, b, c = self.a, self.b, self.c
        with pytest.raises(TypeError, match="a must be float32 or float64"):
            ops.infonce(a.half(), b, c, 0.2)
        with pytest.raises(TypeError, match=r"c must have the dtype of a \(torch.float32\)"):
            ops.infonce(a, b, c.double(), 0.2)
        with pytest.raises(TypeError, match=r"b must have the dtype of a \(torch.float32\)"):
            ops.infonce(a, b.double(), c, 0.2)
        with pytest.raises(TypeError, match="b must be a torch.Tensor"):
            ops.infonce(a, b.tolist(), c, 0.2)

    @pytest.mark.parametrize("t", [0.0, -1.0, math.inf, math.nan])
    def test_temperature(self, t):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            ops.infonce(self.a, self.b, self.c, t)

    def test_temperature_type(self):
        for bad in (torch.tensor(0.2), "0.2", True):
            with pytest.raises(TypeError, match="temperature must be a real number"):
                ops.infonce(self.a, self.b, self.c, bad)
        # numpy scalars are real numbers
        torch.testing.assert_close(ops.infonce(self.a, self.b, self.c, np.float32(0.25)),
                                   ops.infonce(self.a, self.b, self.c, 0.25))

    def test_other_device(self):
        # the meta device stands in for a second device on a CPU-only machine
        for i in (1, 2):
            args = [self.a, self.b, self.c]
            args[i] = args[i].to("meta")
            with pytest.raises(ValueError, match=f"{'abc'[i]} is on meta but a is on cpu"):
                ops.infonce(*args, 0.2)

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
    def test_device(self):
        with pytest.raises(ValueError, match="c is on cpu but a is on cuda"):
            ops.infonce(self.a.cuda(), self.b.cuda(), self.c, 0.2)

    def test_kernel_checks_name_the_argument(self):
        op = torch.ops.irllrec_fast
        a, b, c = self.a, self.b, self.c
        with pytest.raises(RuntimeError, match="b must have dtype Float"):
            op.infonce(a, b.double(), c, 0.2)
        with pytest.raises(RuntimeError, match=r"c.size\(1\) must be 3"):
            op.infonce(a, b, torch.randn(6, 2), 0.2)
        with pytest.raises(RuntimeError, match="temperature must be a finite number > 0"):
            op.infonce(a, b, c, -0.5)
        with pytest.raises(RuntimeError, match="c must have at least one row"):
            op.infonce(a, b, c[:0], 0.2)
        _, lse = op.infonce(a, b, c, 0.2)
        with pytest.raises(RuntimeError, match=r"lse.size\(0\) must be 4"):
            op.infonce_backward(torch.ones(4), a, b, c, lse[:3], 0.2)
        with pytest.raises(RuntimeError, match="grad must have dtype Float"):
            op.infonce_backward(torch.ones(4, dtype=torch.float64), a, b, c, lse, 0.2)

