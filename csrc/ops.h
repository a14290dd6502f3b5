// Kernel entry points, one pair of declarations per operator and backend. The dispatcher calls
// these through the registrations at the end of each csrc/<backend>/<op> file; the C++ tests
// call the CPU ones directly.
#pragma once

#include <ATen/core/Tensor.h>

namespace irllrec_fast {
namespace cpu {

// out[n, d] = A x with A = (rowptr, col, value); the transpose arguments are for autograd only.
at::Tensor spmm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& value,
                const at::Tensor& t_rowptr, const at::Tensor& t_col, const at::Tensor& t_perm,
                const at::Tensor& x);
// grad_value[e] = <grad_out[row(e)], x[col(e)]>
at::Tensor spmm_backward_value(const at::Tensor& rowptr, const at::Tensor& col,
                               const at::Tensor& grad_out, const at::Tensor& x);

}  // namespace cpu
}  // namespace irllrec_fast
