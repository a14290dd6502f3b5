"""intent_assign against its reference: values, both gradients, shapes, edge cases, bad input,
registrations."""
import math

import pytest
import torch

from conftest import assert_close, assert_compiles_like_eager, tf32_allowed
from irllrec_fast import ops
from irllrec_fast.ops import reference


def make_inputs(n, d, K, dtype=torch.float32, device="cpu", seed=0, scale=1.0):
    """Embeddings ~ N(0, 1) and Xavier-uniform prototypes, as the model initialises them."""
    gen = torch.Generator().manual_seed(seed)
    e = torch.randn(n, d, generator=gen, dtype=torch.float64) * scale
    bound = math.sqrt(6.0 / (d + K))
    w = (torch.rand(d, K, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    g = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return tuple(t.to(device, dtype) for t in (e, w, g))


def run_both(e, w, g):
    """(out, grad_e, grad_w) of the fused op and of the reference for one upstream gradient."""
    results = []
    for fn in (ops.intent_assign, reference.intent_assign):
        ee = e.detach().clone().requires_grad_()
        ww = w.detach().clone().requires_grad_()
        out = fn(ee, ww)
        out.backward(g)
        results.append((out.detach(), ee.grad, ww.grad))
    return results


def assert_matches(e, w, g):
    (out, ge, gw), (ref, ref_ge, ref_gw) = run_both(e, w, g)
    assert_close(out, ref)
    assert_close(ge, ref_ge)
    # grad_w sums over all n rows: its absolute error grows with n
    assert_close(gw, ref_gw, scale=max(1.0, e.shape[0] / 100))


@pytest.mark.parametrize("K", [1, 7, 128, 300])
@pytest.mark.parametrize("d", [3, 32, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference(device, d, K, dtype):
    # 700 rows: several row tiles and grad_w groups for every K
    assert_matches(*make_inputs(700, d, K, dtype, device, seed=d * 1000 + K))


@pytest.mark.parametrize("n, d, K", [(1003, 40, 50), (37, 33, 100), (5, 3, 7)],
                         ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ragged_shapes(device, n, d, K, dtype):
    # n not a multiple of the rows a CUDA warp or CPU tile takes, d and K between the CUDA tile
    # kernels' column widths (d 33..64 with K 33..64 or 65..128), and a row or two per warp
    assert_matches(*make_inputs(n, d, K, dtype, device, seed=n + d + K))


def test_many_rows_wide(device):
    # more rows than one pass of the CUDA tile grid holds at d = 64: blocks take several steps
    assert_matches(*make_inputs(9001, 64, 128, device=device, seed=64))


@pytest.mark.parametrize("d, dtype", [(800, torch.float32), (400, torch.float64)])
def test_wide_embeddings(device, d, dtype):
    # on CUDA, too wide for the grad_w kernel's shared memory: the dense-product backward
    assert_matches(*make_inputs(300, d, 40, dtype, device, seed=d))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TF32 matmuls are a CUDA switch")
def test_wide_backward_ignores_tf32():
    """With TF32 matmuls allowed, the CUDA backward for widths past its shared memory (dense
    products) still recomputes the logits in full float32: TF32 ones (about 5e-4 off here) would
    not match the float32 forward's lse. Against float64, which TF32 does not touch."""
    e, w, g = make_inputs(300, 800, 40, torch.float32, "cuda", seed=800)
    with tf32_allowed():
        fused, _ = run_both(e, w, g)
    _, exact = run_both(e.double(), w.double(), g.double())
    for got, want, scale in zip(fused, exact, (1.0, 1.0, 3.0)):
        assert_close(got, want.float(), scale=scale)


@pytest.mark.parametrize("K", [128, 512])
def test_many_rows(device, K):
    # Amazon-book's node count: many tiles, the largest K the kernels are sized for
    assert_matches(*make_inputs(20332, 32, K, device=device, seed=K))


def test_large_logits_are_stable(device):
    # logits up to about 900: a naive exp overflows; the log-sum-exp shift must not. The problem is
    # ill-conditioned in float32 (so is the reference), hence the comparison with float64.
    e, w, g = make_inputs(300, 32, 128, device=device, seed=3, scale=300.0)
    assert (e @ w).abs().max() > 200
    (out, ge, gw), _ = run_both(e, w, g)
    _, exact = run_both(e.double(), w.double(), g.double())
    for got, want in zip((out, ge, gw), exact):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.double(), want, rtol=1e-3, atol=1e-4 * float(want.abs().max()))


@pytest.mark.parametrize("K", [1, 7, 130])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_of_very_negative_logits(device, K, dtype):
    # every logit of a row far below exp's range (-709 in double, -87 in float) beside ordinary
    # rows; K not a multiple of the CPU vector width, so the padding's logits (0) meet exp too.
    # The double CPU kernel once returned NaN here (exp(0 - max) = inf, masked by multiplying by 0)
    gen = torch.Generator().manual_seed(K)
    w = (torch.rand(5, K, generator=gen, dtype=torch.float64) + 0.5).to(device, dtype)
    e = torch.randn(4, 5, generator=gen, dtype=torch.float64).to(device, dtype)
    e[0] = -300.0
    e[2] = -3000.0
    assert ((e[0] @ w).max() < -1000) and ((e[2] @ w).max() < -1000)
    g = torch.randn(4, 5, generator=gen, dtype=torch.float64).to(device, dtype)
    (out, ge, gw), (ref, ref_ge, ref_gw) = run_both(e, w, g)
    for got in (out, ge, gw):
        assert torch.isfinite(got).all()
    assert_close(out, ref, scale=10)
    assert_close(ge, ref_ge, scale=10)
    assert_close(gw, ref_gw, scale=10)


def test_rows_are_convex_combinations_of_prototypes(device):
    e, w, _ = make_inputs(200, 16, 9, device=device, seed=4)
    out, lse = torch.ops.irllrec_fast.intent_assign(e, w)
    assert_close(lse, torch.logsumexp(e @ w, dim=1))
    # out = P w^T with P = softmax(e w): w has full column rank (d > K), so P is recoverable
    p = torch.linalg.lstsq(w.double().cpu(), out.T.double().cpu()).solution.T
    assert_close(p, torch.softmax(e @ w, dim=1).double().cpu(), dtype=torch.float32, scale=10)


def test_lse_is_accurate_to_a_few_float32_ulps():
    # the CPU kernels' float exp is a polynomial (relative error 2.4e-7): logits -k/8 ln2 times
    # 1/16 .. 1 put the base-2 reduced arguments all over [-1/2, 1/2]
    K = 64
    w = (-torch.arange(K, dtype=torch.float64) / 8 * math.log(2)).float()[None, :]
    e = (torch.arange(1, 17, dtype=torch.float64) / 16).float()[:, None]
    _, lse = torch.ops.irllrec_fast.intent_assign(e, w)
    exact = torch.logsumexp(e.double() @ w.double(), dim=1)
    torch.testing.assert_close(lse.double(), exact, rtol=0, atol=4e-7)

def test_single_row_and_no_rows(device):
    assert_matches(*make_inputs(1, 3, 7, device=device, seed=5))
    e, w, _ = make_inputs(0, 8, 5, device=device)
    ee, ww = e.clone().requires_grad_(), w.clone().requires_grad_()
    out = ops.intent_assign(ee, ww)
    assert out.shape == (0, 8)
    out.sum().backward()
    assert torch.equal(ww.grad, torch.zeros_like(w))


def test_no_features(device):
    # d = 0: every logit is 0, so lse = log K and out is empty
    e, w = torch.zeros(4, 0, device=device), torch.zeros(0, 5, device=device)
    out, lse = torch.ops.irllrec_fast.intent_assign(e, w)
    assert out.shape == (4, 0)
    assert_close(lse, torch.logsumexp(e @ w, dim=1))

def test_single_prototype_is_the_prototype(device):
    e, w, _ = make_inputs(50, 6, 1, device=device, seed=6)
    assert_close(ops.intent_assign(e, w), w.T.expand(50, 6))


def test_non_contiguous_inputs(device):
    e_wide, w_wide, g = make_inputs(300, 40, 64, device=device, seed=7)
    e = e_wide[:, 2:34]               # strided rows
    w = w_wide[2:34].T.contiguous().T  # column-major [32, 64]
    assert not e.is_contiguous() and not w.is_contiguous()
    assert_matches(e, w, g[:, :32])


def test_backward_is_deterministic(device):
    e, w, g = make_inputs(5000, 32, 128, device=device, seed=8)
    _, lse = torch.ops.irllrec_fast.intent_assign(e, w)
    first = torch.ops.irllrec_fast.intent_assign_backward(g, e, w, lse)
    for _ in range(2):
        again = torch.ops.irllrec_fast.intent_assign_backward(g, e, w, lse)
        assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])


def test_grad_w_does_not_depend_on_thread_count():
    e, w, g = make_inputs(5000, 32, 128, seed=9)
    _, lse = torch.ops.irllrec_fast.intent_assign(e, w)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append(torch.ops.irllrec_fast.intent_assign_backward(g, e, w, lse)[1])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(r, results[0]) for r in results[1:])


def test_only_one_input_needs_grad(device):
    e, w, g = make_inputs(100, 8, 12, device=device, seed=10)
    ww = w.clone().requires_grad_()
    ops.intent_assign(e, ww).backward(g)
    ref_w = w.clone().requires_grad_()
    reference.intent_assign(e, ref_w).backward(g)
    assert_close(ww.grad, ref_w.grad)


def test_gradcheck_float64(device):
    e, w, _ = make_inputs(6, 3, 5, torch.float64, device, seed=11)
    e.requires_grad_(), w.requires_grad_()
    assert torch.autograd.gradcheck(ops.intent_assign, (e, w))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(device, dtype):
    e, w, g = make_inputs(40, 8, 12, dtype, device, seed=12)
    e.requires_grad_(), w.requires_grad_()
    torch.library.opcheck(torch.ops.irllrec_fast.intent_assign, (e, w))
    _, lse = torch.ops.irllrec_fast.intent_assign(e.detach(), w.detach())
    torch.library.opcheck(torch.ops.irllrec_fast.intent_assign_backward,
                          (g, e.detach(), w.detach(), lse))


def test_torch_compile_fullgraph(device):
    e, w, _ = make_inputs(300, 16, 24, device=device, seed=13)
    e.requires_grad_(), w.requires_grad_()

    def step(e, w):
        return ops.intent_assign(ops.intent_assign(e, w), w).square().sum()

    assert_compiles_like_eager(step, (e, w))


class TestBadInput:
    def test_shapes(self):
        with pytest.raises(ValueError, match=r"w must have shape \(8, K\)"):
            ops.intent_assign(torch.randn(5, 8), torch.randn(7, 3))
        with pytest.raises(ValueError, match="e must be 2-D"):
            ops.intent_assign(torch.randn(8), torch.randn(8, 3))
        with pytest.raises(ValueError, match="w must have at least one column"):
            ops.intent_assign(torch.randn(5, 8), torch.randn(8, 0))

    def test_dtypes(self):
        with pytest.raises(TypeError, match="e must be float32 or float64"):
            ops.intent_assign(torch.randn(5, 8).half(), torch.randn(8, 3).half())
        with pytest.raises(TypeError, match="w must have the dtype of e"):
            ops.intent_assign(torch.randn(5, 8), torch.randn(8, 3, dtype=torch.float64))

    def test_other_device(self):
        # the meta device stands in for a second device on a CPU-only machine
        with pytest.raises(ValueError, match="w is on meta but e is on cpu"):
            ops.intent_assign(torch.randn(5, 8), torch.randn(8, 3, device="meta"))

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
    def test_devices(self):
        with pytest.raises(ValueError, match="w is on cuda"):
            ops.intent_assign(torch.randn(5, 8), torch.randn(8, 3, device="cuda"))

    def test_kernel_checks_name_the_argument(self):
        op = torch.ops.irllrec_fast
        with pytest.raises(RuntimeError, match=r"w.size\(0\) must be 8"):
            op.intent_assign(torch.randn(5, 8), torch.randn(7, 3))
        with pytest.raises(RuntimeError, match="w must have dtype Float"):
            op.intent_assign(torch.randn(5, 8), torch.randn(8, 3, dtype=torch.float64))
        with pytest.raises(RuntimeError, match=r"lse.size\(0\) must be 5"):
            op.intent_assign_backward(torch.randn(5, 8), torch.randn(5, 8), torch.randn(8, 3),
                                      torch.randn(4))
        with pytest.raises(RuntimeError, match=r"grad.size\(1\) must be 8"):
            op.intent_assign_backward(torch.randn(5, 7), torch.randn(5, 8), torch.randn(8, 3),
                                      torch.randn(5))
