// Kernel entry points, one pair of declarations per operator and backend. The dispatcher calls
// these through the registrations at the end of each csrc/<backend>/<op> file; the C++ tests
// call the CPU ones directly.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace irllrec_fast {
namespace cpu {

// out[n, d] = A x with A = (rowptr, col, value); the transpose arguments are for autograd only.
at::Tensor spmm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& value,
                const at::Tensor& t_rowptr, const at::Tensor& t_col, const at::Tensor& t_perm,
                const at::Tensor& x);
// grad_value[e] = <grad_out[row(e)], x[col(e)]>
at::Tensor spmm_backward_value(const at::Tensor& rowptr, const at::Tensor& col,
                               const at::Tensor& grad_out, const at::Tensor& x);

// (loss [B], lse [B]): loss[k] = lse[k] - <a_k, b_k>/temperature,
// lse[k] = log sum_j exp(<a_k, c_j>/temperature); a, b [B, d], c [M >= 1, d]. Never forms [B, M].
std::tuple<at::Tensor, at::Tensor> infonce(const at::Tensor& a, const at::Tensor& b,
                                           const at::Tensor& c, double temperature);
// (grad_a, grad_b, grad_c) of sum_k grad[k] * loss[k], recomputing the logits from the saved lse.
std::tuple<at::Tensor, at::Tensor, at::Tensor> infonce_backward(
    const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b, const at::Tensor& c,
    const at::Tensor& lse, double temperature);

}  // namespace cpu
}  // namespace irllrec_fast
