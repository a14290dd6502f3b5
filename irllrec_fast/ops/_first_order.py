"""Backwards of fused operators whose backward kernels have no derivative of their own.

Without this, a second differentiation (gradient penalties, Hessian-vector products: a backward
with create_graph=True, then another through its results) would pass through the backward kernel
as if its results were constants, and give a silently wrong answer. The decorated backward
returns its gradients as they are in a plain backward; under create_graph=True it marks them so
that differentiating them again raises.
"""
from __future__ import annotations

import functools

import torch


class _NoSecondDerivative(torch.autograd.Function):
    """The identity, whose own backward refuses."""

    @staticmethod
    def forward(ctx, gradient):
        return gradient.view_as(gradient)

    @staticmethod
    def backward(ctx, _):
        raise RuntimeError(
            "irllrec_fast's fused operators have first derivatives only: this second "
            "differentiation passes through one of them (intent_assign, intent_propagate, infonce, "
            "or spmm's gradient for the edge values). Use the references in "
            "irllrec_fast.ops.reference (impl='torch') for it.")


def no_second_derivative(gradient):
    """`gradient` (computed without autograd) as a backward returns it: unchanged in a plain
    backward, marked so that differentiating it raises under create_graph=True."""
    if gradient is None or not torch.is_grad_enabled():
        return gradient
    return _NoSecondDerivative.apply(gradient.detach().requires_grad_())


def first_order_only(backward):
    """Decorates the backward function of a torch.library.register_autograd registration."""
    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        with torch.no_grad():
            results = backward(ctx, *grads)
        return tuple(no_second_derivative(r) for r in results)
    return wrapper
