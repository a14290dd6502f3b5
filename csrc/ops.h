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

// (out, lse): out[n, d] = softmax(e w) w^T for e [n, d], w [d, K]; lse[n] = logsumexp(e w).
std::tuple<at::Tensor, at::Tensor> intent_assign(const at::Tensor& e, const at::Tensor& w);
// (grad_e, grad_w) for the upstream gradient of out; the probabilities are recomputed from lse.
std::tuple<at::Tensor, at::Tensor> intent_assign_backward(const at::Tensor& grad,
                                                          const at::Tensor& e, const at::Tensor& w,
                                                          const at::Tensor& lse);

// (out, row_sum, norm): out[h] = sum_t alpha_ht x_t / row_sum[h] over the edges (h, t) of
// (rowptr, col), alpha_ht = (cos(r_h, r_t) + 1) / 2, a row with row_sum <= 0 is zero;
// norm[h] = ||r_h||. The transpose structure is for the backward only.
std::tuple<at::Tensor, at::Tensor, at::Tensor> intent_propagate(
    const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
    const at::Tensor& t_col, const at::Tensor& r, const at::Tensor& x);
// (grad_r, grad_x) from the forward's inputs and outputs.
std::tuple<at::Tensor, at::Tensor> intent_propagate_backward(
    const at::Tensor& grad, const at::Tensor& rowptr, const at::Tensor& col,
    const at::Tensor& t_rowptr, const at::Tensor& t_col, const at::Tensor& r, const at::Tensor& x,
    const at::Tensor& out, const at::Tensor& row_sum, const at::Tensor& norm);

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
