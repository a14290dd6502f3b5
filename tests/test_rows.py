"""take_rows: the rows of x[index], with a backward that repeats bit for bit."""
import torch

from irllrec_fast._rows import take_rows


def test_rows_and_gradient_match_indexing(device):
    torch.manual_seed(0)
    x = torch.randn(50, 6, dtype=torch.float64, device=device, requires_grad=True)
    index = torch.randint(0, 50, (200,), device=device)  # with repeats
    grad = torch.randn(200, 6, dtype=torch.float64, device=device)
    rows = take_rows(x, index)
    assert torch.equal(rows, x[index])
    rows.backward(grad)
    expected = torch.zeros_like(x).index_add_(0, index, grad)
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-12)


def test_backward_repeats_bit_for_bit(device):
    """Many repeated rows summed in float32 across threads: x[index]'s backward rounded
    differently from call to call on a 2-thread CPU (torch 2.13); take_rows' must not."""
    torch.manual_seed(0)
    x = torch.randn(20000, 64, device=device, requires_grad=True)
    index = torch.randint(0, 20000, (12288,), device=device)
    grad = torch.randn(12288, 64, device=device)
    grads = []
    for _ in range(5):
        x.grad = None
        take_rows(x, index).backward(grad)
        grads.append(x.grad.clone())
    assert all(torch.equal(g, grads[0]) for g in grads[1:])
