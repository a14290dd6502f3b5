"""The hand-written backwards of irllrec_fast._lean_autograd against autograd through the literal
formulas: row normalisation both ways (RLMRec's and F.normalize's) and the sum of squares."""
import pytest
import torch
import torch.nn.functional as F

from conftest import assert_close
from irllrec_fast import _lean_autograd


def literal_rlm(x):
    return x / torch.sqrt(1e-8 + x.square().sum(-1, keepdim=True))


def awkward_rows(device, dtype):
    """Random rows, one zero row, two below F.normalize's 1e-12 clamp, one just above it and rows
    of norm ~1e4."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 7, generator=gen, dtype=torch.float64)
    x[3] = 0
    x[4] = 0.7e-12 * x[4] / x[4].norm()
    x[5] = 1e-14 * x[5]
    x[6] = 1.5e-12 * x[6] / x[6].norm()
    x[7:10] *= 1e4
    return x.to(device, dtype)


def value_and_grad(fn, x, weights):
    x = x.detach().clone().requires_grad_()
    y = fn(x)
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    return y.detach(), grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ours, literal", [(_lean_autograd.rlm_normalize, literal_rlm),
                                           (_lean_autograd.unit_rows, F.normalize)],
                         ids=["rlm", "unit"])
def test_row_normalisation_matches_autograd(device, dtype, ours, literal):
    x = awkward_rows(device, dtype)
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(1),
                          dtype=torch.float64).to(device, dtype)
    got, want = value_and_grad(ours, x, weights), value_and_grad(literal, x, weights)
    for g, w in zip(got, want):
        assert torch.isfinite(g).all()
        # the 1e-14 row's gradient is of size 1e12 (1 / the clamp): compare relative to it
        assert_close(g / g.abs().amax(), w / g.abs().amax(), dtype)


def test_unit_rows_at_exactly_the_clamp_takes_the_projection_term():
    """torch's clamp_min passes its gradient at equality: a row of norm exactly 1e-12 gets
    F.normalize's gradient (w - y <w, y>) / 1e-12, with the projection term."""
    x = torch.tensor([[1e-12, 0.0]], dtype=torch.float64)
    assert torch.linalg.vector_norm(x, dim=-1).item() == 1e-12
    weights = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    y, grad = value_and_grad(_lean_autograd.unit_rows, x, weights)
    torch.testing.assert_close(y, torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    # y = (1, 0): w - y <w, y> = (0, 3)
    torch.testing.assert_close(grad, torch.tensor([[0.0, 3e12]], dtype=torch.float64))
    torch.testing.assert_close(grad, value_and_grad(F.normalize, x, weights)[1])


@pytest.mark.parametrize("fn", [_lean_autograd.rlm_normalize, _lean_autograd.unit_rows],
                         ids=["rlm", "unit"])
def test_row_normalisation_gradcheck(device, fn):
    x = torch.randn(6, 5, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,))


def test_sum_of_squares_value_and_gradients(device):
    gen = torch.Generator().manual_seed(2)
    tensors = [torch.randn(shape, generator=gen, dtype=torch.float64).to(device)
               for shape in [(3, 4), (5,), (), (2, 2, 2)]]
    tensors[1].requires_grad_()
    tensors[3].requires_grad_()
    value = _lean_autograd.sum_of_squares(tensors)
    assert_close(value, sum((t.detach() ** 2).sum() for t in tensors))
    grads = torch.autograd.grad(3 * value, [tensors[1], tensors[3]])
    assert_close(grads[0], 6 * tensors[1].detach())
    assert_close(grads[1], 6 * tensors[3].detach())
    assert torch.autograd.gradcheck(
        lambda a, b: _lean_autograd.sum_of_squares([a, tensors[0], b]),
        (tensors[1], tensors[3]))
