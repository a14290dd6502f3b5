"""The text MLPs with their second half in row blocks (irllrec_fast/models/_text_tail.py) against
the literal linear(leaky_relu(linear(x))), values and gradients, with block sizes that split the
rows unevenly."""
import pytest
import torch
import torch.nn.functional as F

from irllrec_fast.models._text_tail import blend_leaky_linear, leaky_mlp

SLOPE = 0.01


def _inputs(n, width, out, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, width, generator=gen, dtype=dtype)
    weight = torch.randn(out, width, generator=gen, dtype=dtype)
    bias = torch.randn(out, generator=gen, dtype=dtype)
    grad = torch.randn(n, out, generator=gen, dtype=dtype)
    return hidden, weight, bias, grad


def _mlp_inputs(n, width_in, hidden, out, dtype, seed=0):
    """x [n, in], w1 [hidden, in], b1, w2 [out, hidden], b2, and an upstream gradient [n, out]."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(n, width_in), (hidden, width_in), (hidden,), (out, hidden), (out,), (n, out)]
    return [torch.randn(*shape, generator=gen, dtype=dtype) for shape in shapes]


def _literal_mlp(x, w1, b1, w2, b2):
    return F.linear(F.leaky_relu(F.linear(x, w1, b1), SLOPE), w2, b2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,rows", [(1, 4), (30, 7), (64, 64), (65, 64), (200, 512)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_values_and_gradients_match_the_literal_mlp(dtype, n, rows, with_bias):
    *tensors, grad = _mlp_inputs(n, 9, 13, 5, dtype)
    if not with_bias:
        tensors[2] = tensors[4] = None
    leaves = [None if t is None else t.clone().requires_grad_() for t in tensors]
    expected = _literal_mlp(*leaves)
    expected.backward(grad)

    mine = [None if t is None else t.clone().requires_grad_() for t in tensors]
    got = leaky_mlp(*mine, SLOPE, rows=rows)
    got.backward(grad)

    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, expected, **tol)
    for name, a, b in zip(("x", "w1", "b1", "w2", "b2"), mine, leaves):
        if b is not None:
            torch.testing.assert_close(a.grad, b.grad, **tol, msg=lambda m: f"grad of {name}: {m}")


def test_negative_pre_activations_take_the_slope_in_the_gradient():
    x = torch.tensor([[-2.0, 3.0], [0.5, -0.25]], requires_grad=True)
    w1 = torch.eye(2, requires_grad=True)
    w2 = torch.eye(2, requires_grad=True)
    out = leaky_mlp(x, w1, None, w2, None, SLOPE, rows=1)
    out.sum().backward()
    torch.testing.assert_close(out, torch.tensor([[-0.02, 3.0], [0.5, -0.0025]]))
    torch.testing.assert_close(x.grad, torch.tensor([[SLOPE, 1.0], [1.0, SLOPE]]))
    # hidden = x here, so row i of w1's gradient is sum over rows of leaky'(x[r, i]) * x[r, :]
    expected_w1 = torch.stack([torch.where(x[:, 0] < 0, SLOPE, 1.0) @ x.detach(),
                               torch.where(x[:, 1] < 0, SLOPE, 1.0) @ x.detach()])
    torch.testing.assert_close(w1.grad, expected_w1)


def test_float64_gradcheck():
    *tensors, _ = _mlp_inputs(9, 5, 6, 3, torch.float64, seed=1)
    args = [t.requires_grad_() for t in tensors]
    assert torch.autograd.gradcheck(lambda *a: leaky_mlp(*a, SLOPE, rows=4), args)


def test_frozen_weights_get_no_gradient_and_the_others_still_do():
    x, w1, b1, w2, b2, grad = _mlp_inputs(20, 7, 8, 4, torch.float64)
    x_leaf, w2_leaf = x.clone().requires_grad_(), w2.clone().requires_grad_()
    leaky_mlp(x_leaf, w1, b1, w2_leaf, b2, SLOPE, rows=6).backward(grad)
    x_ref, w2_ref = x.clone().requires_grad_(), w2.clone().requires_grad_()
    _literal_mlp(x_ref, w1, b1, w2_ref, b2).backward(grad)
    torch.testing.assert_close(x_leaf.grad, x_ref.grad)
    torch.testing.assert_close(w2_leaf.grad, w2_ref.grad)
    assert w1.grad is None and b1.grad is None and b2.grad is None


def test_only_the_second_layer_trainable():
    x, w1, b1, w2, b2, grad = _mlp_inputs(11, 4, 6, 3, torch.float64, seed=4)
    w2_leaf = w2.clone().requires_grad_()
    leaky_mlp(x, w1, b1, w2_leaf, b2, SLOPE, rows=5).backward(grad)
    act = F.leaky_relu(F.linear(x, w1, b1), SLOPE)
    torch.testing.assert_close(w2_leaf.grad, grad.T @ act)


def test_on_hidden_sees_the_pre_activation_once():
    x, w1, b1, w2, b2, _ = _mlp_inputs(10, 4, 6, 3, torch.float64, seed=5)
    seen = []
    leaky_mlp(x, w1, b1, w2, b2, SLOPE, rows=3, on_hidden=lambda h: seen.append(h.clone()))
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], F.linear(x, w1, b1))


def test_a_non_positive_slope_is_refused():
    x, w1, b1, w2, b2, _ = _mlp_inputs(4, 3, 2, 2, torch.float32)
    with pytest.raises(ValueError, match="slope must be positive"):
        leaky_mlp(x, w1, b1, w2, b2, 0.0)


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
    x, w1, b1, w2, b2, _ = _mlp_inputs(4, 3, 2, 2, torch.float32)
    with pytest.raises(ValueError, match="rows must be at least 1"):
        leaky_mlp(x, w1, b1, w2, b2, SLOPE, rows=0)
    with pytest.raises(ValueError, match="rows must be at least 1"):
        blend_leaky_linear(hidden, weight, bias, SLOPE, rows=0)
