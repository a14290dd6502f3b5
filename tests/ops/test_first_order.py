"""Second derivatives through the fused ops whose backward kernels have none (intent_assign,
intent_propagate, infonce, spmm's gradient for the edge values): differentiating their gradients
again raises instead of treating the gradients as constants, and create_graph=True leaves the
first-order gradients unchanged. spmm's gradient for x is spmm itself, so its second derivative
in x is real: checked with gradgradcheck."""
import pytest
import torch

from irllrec_fast import ops, testing


def intent_assign_case(device):
    gen = torch.Generator().manual_seed(1)
    e = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    return ops.intent_assign, [e.to(device), w.to(device)]


def intent_propagate_case(device):
    graph = testing.power_law_graph(num_users=12, num_items=9, num_pairs=40, seed=2).to(device)
    gen = torch.Generator().manual_seed(2)
    r, x = (torch.randn(graph.num_nodes, 3, generator=gen, dtype=torch.float64).to(device)
            for _ in range(2))
    return (lambda r, x: ops.intent_propagate(graph, r, x)), [r, x]


def infonce_case(device):
    gen = torch.Generator().manual_seed(3)
    a, b, c = (torch.randn(n, 4, generator=gen, dtype=torch.float64).to(device) for n in (5, 5, 8))
    return (lambda a, b, c: ops.infonce(a, b, c, 0.5)), [a, b, c]


def spmm_value_case(device):
    graph = testing.power_law_graph(num_users=10, num_items=8, num_pairs=30, seed=5)
    graph = graph.normalized("sym").to(device, torch.float64)
    x = torch.randn(graph.num_nodes, 3, dtype=torch.float64, device=device)
    return (lambda value: ops.spmm(graph, x, value)), [graph.value.clone()]


CASES = {"intent_assign": intent_assign_case, "intent_propagate": intent_propagate_case,
         "infonce": infonce_case, "spmm edge values": spmm_value_case}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("outer", ["sum", "square"])
def test_a_second_derivative_raises(device, name, outer):
    """outer "sum": the gradient entering the backward needs no grad itself; "square": it does."""
    op, inputs = CASES[name](device)
    inputs = [x.requires_grad_() for x in inputs]

    def loss():
        out = op(*inputs)
        return out.sum() if outer == "sum" else out.square().sum()

    plain = torch.autograd.grad(loss(), inputs)
    first = torch.autograd.grad(loss(), inputs, create_graph=True)
    for got, want in zip(first, plain):
        assert torch.equal(got.detach(), want)
    penalty = sum(g.square().sum() for g in first) + sum(x.sum() for x in inputs)
    with pytest.raises(RuntimeError, match="first derivatives only"):
        penalty.backward()


def test_spmm_has_a_real_second_derivative_in_x(device):
    graph = testing.power_law_graph(num_users=10, num_items=8, num_pairs=30, seed=4)
    graph = graph.normalized("sym").to(device, torch.float64)
    x = torch.randn(graph.num_nodes, 3, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: ops.spmm(graph, x).square(), (x,))
