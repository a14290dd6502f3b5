"""The text MLPs' second half in row blocks (irllrec_fast/models/_text_tail.py) against the
literal linear(leaky_relu(h)), values and gradients, with block sizes that split the rows
unevenly."""
import pytest
import torch
import torch.nn.functional as F

from irllrec_fast.models._text_tail import blend_leaky_linear, leaky_linear_in_place

SLOPE = 0.01


def _inputs(n, width, out, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, width, generator=gen, dtype=dtype)
    weight = torch.randn(out, width, generator=gen, dtype=dtype)
    bias = torch.randn(out, generator=gen, dtype=dtype)
    grad = torch.randn(n, out, generator=gen, dtype=dtype)
    return hidden, weight, bias, grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,rows", [(1, 4), (30, 7), (64, 64), (65, 64), (200, 512)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_values_and_gradients_match_the_literal_tail(dtype, n, rows, with_bias):
    hidden, weight, bias, grad = _inputs(n, 13, 5, dtype)
    bias = bias if with_bias else None
    leaves = [t.clone().requires_grad_() for t in (hidden, weight)]
    leaves += [bias.clone().requires_grad_()] if with_bias else []
    expected = F.linear(F.leaky_relu(leaves[0] * 1.0, SLOPE), leaves[1],
                        leaves[2] if with_bias else None)
    expected.backward(grad)

    mine = [t.clone().requires_grad_() for t in (hidden, weight)]
    mine += [bias.clone().requires_grad_()] if with_bias else []
    pre = mine[0] * 1.0  # a non-leaf, like the first layer's output
    got = leaky_linear_in_place(pre, mine[1], mine[2] if with_bias else None, SLOPE, rows=rows)
    got.backward(grad)

    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, expected, **tol)
    for a, b in zip(mine, leaves):
        torch.testing.assert_close(a.grad, b.grad, **tol)
    # the pre-activation now holds the activation
    torch.testing.assert_close(pre.detach(), F.leaky_relu(hidden, SLOPE), **tol)


def test_negative_inputs_take_the_slope_in_the_gradient():
    hidden = torch.tensor([[-2.0, 3.0], [0.5, -0.25]], requires_grad=True)
    weight = torch.eye(2, requires_grad=True)
    out = leaky_linear_in_place(hidden * 1.0, weight, None, SLOPE, rows=1)
    out.sum().backward()
    torch.testing.assert_close(out, torch.tensor([[-0.02, 3.0], [0.5, -0.0025]]))
    torch.testing.assert_close(hidden.grad, torch.tensor([[SLOPE, 1.0], [1.0, SLOPE]]))


def test_float64_gradcheck():
    hidden, weight, bias, _ = _inputs(9, 6, 3, torch.float64, seed=1)
    args = [t.requires_grad_() for t in (hidden, weight, bias)]
    assert torch.autograd.gradcheck(
        lambda h, w, b: leaky_linear_in_place(h * 1.0, w, b, SLOPE, rows=4), args)


def test_frozen_weight_gets_no_gradient_and_hidden_still_does():
    hidden, weight, bias, grad = _inputs(20, 8, 4, torch.float64)
    h = hidden.clone().requires_grad_()
    leaky_linear_in_place(h * 1.0, weight, bias, SLOPE, rows=6).backward(grad)
    expected = (grad @ weight) * torch.where(hidden > 0, 1.0, SLOPE).double()
    torch.testing.assert_close(h.grad, expected)
    assert weight.grad is None


def test_a_non_positive_slope_is_refused():
    hidden, weight, bias, _ = _inputs(4, 3, 2, torch.float32)
    with pytest.raises(ValueError, match="slope must be positive"):
        leaky_linear_in_place(hidden, weight, bias, 0.0)


@pytest.mark.parametrize("n,rows", [(1, 3), (23, 5), (40, 512)])
def test_blend_matches_the_teacher_recurrence(n, rows):
    cached, weight, bias, _ = _inputs(n, 11, 4, torch.float64, seed=2)
    student = torch.randn(n, 11, dtype=torch.float64)
    blended = 0.9 * cached + 0.1 * student
    expected = F.linear(F.leaky_relu(blended, SLOPE), weight, bias)
    got = blend_leaky_linear(cached, weight, bias, SLOPE, student, 0.9, rows=rows)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(cached, blended)  # the cache now holds the new pre-activation


def test_blend_without_a_student_leaves_the_hidden_alone():
    cached, weight, bias, _ = _inputs(17, 5, 3, torch.float64, seed=3)
    before = cached.clone()
    got = blend_leaky_linear(cached, weight, bias, SLOPE, rows=4)
    torch.testing.assert_close(got, F.linear(F.leaky_relu(before, SLOPE), weight, bias))
    assert torch.equal(cached, before)


def test_a_block_of_no_rows_is_refused():
    hidden, weight, bias, _ = _inputs(4, 3, 2, torch.float32)
    with pytest.raises(ValueError, match="rows must be at least 1"):
        leaky_linear_in_place(hidden, weight, bias, SLOPE, rows=0)
    with pytest.raises(ValueError, match="rows must be at least 1"):
        blend_leaky_linear(hidden, weight, bias, SLOPE, rows=0)
