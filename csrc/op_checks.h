// The argument checks of every operator: one definition per operator, called by its CPU and its
// CUDA kernels with the device type they run on, so that a bad argument gets the same message on
// every device. Built from the helpers of checks.h.
#pragma once

#include <cmath>
#include <utility>

#include "checks.h"

namespace irllrec_fast {

// t on `device`, and on the same device as ref (for CUDA: the same GPU)
inline void check_beside(const at::Tensor& t, const char* name, const at::Tensor& ref,
                         const char* ref_name, c10::DeviceType device) {
  check_device(t, name, device);
  check_same_device(t, name, ref, ref_name);
}

// infonce(a [B, d], b [B, d], c [M >= 1, d], temperature > 0)
inline void check_infonce_args(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c,
                               double temperature, c10::DeviceType device) {
  check_device(a, "a", device);
  check_beside(b, "b", a, "a", device);
  check_beside(c, "c", a, "a", device);
  check_floating(a, "a");
  check_dim(a, "a", 2);
  check_dim(b, "b", 2);
  check_dim(c, "c", 2);
  check_dtype(b, "b", a.scalar_type());
  check_dtype(c, "c", a.scalar_type());
  check_size(b, "b", 0, a.size(0));
  check_size(b, "b", 1, a.size(1));
  check_size(c, "c", 1, a.size(1));
  TORCH_CHECK(c.size(0) >= 1, "c must have at least one row (candidate), got shape ", c.sizes());
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0,
              "temperature must be a finite number > 0, got ", temperature);
}

// the grad and lse of infonce_backward: one value per row of a
inline void check_infonce_row_vector(const at::Tensor& t, const char* name, const at::Tensor& a,
                                     c10::DeviceType device) {
  check_beside(t, name, a, "a", device);
  check_dtype(t, name, a.scalar_type());
  check_dim(t, name, 1);
  check_size(t, name, 0, a.size(0));
}

// intent_assign(e [n, d], w [d, K >= 1])
inline void check_intent_assign_args(const at::Tensor& e, const at::Tensor& w,
                                     c10::DeviceType device) {
  check_device(e, "e", device);
  check_beside(w, "w", e, "e", device);
  check_floating(e, "e");
  check_dim(e, "e", 2);
  check_dim(w, "w", 2);
  check_dtype(w, "w", e.scalar_type());
  check_size(w, "w", 0, e.size(1));
  TORCH_CHECK(w.size(1) >= 1, "w must have at least one column (K >= 1 prototypes), got shape ",
              w.sizes());
}

// intent_assign_backward's grad [n, d] and lse [n], after check_intent_assign_args(e, w)
inline void check_intent_assign_backward_args(const at::Tensor& grad, const at::Tensor& lse,
                                              const at::Tensor& e, c10::DeviceType device) {
  check_beside(grad, "grad", e, "e", device);
  check_beside(lse, "lse", e, "e", device);
  check_dtype(grad, "grad", e.scalar_type());
  check_dtype(lse, "lse", e.scalar_type());
  check_dim(grad, "grad", 2);
  check_size(grad, "grad", 0, e.size(0));
  check_size(grad, "grad", 1, e.size(1));
  check_dim(lse, "lse", 1);
  check_size(lse, "lse", 0, e.size(0));
}

// a [n, d] floating tensor of per-node features, on the graph's device
inline void check_node_features(const at::Tensor& t, const char* name, const at::Tensor& rowptr,
                                c10::DeviceType device) {
  check_beside(t, name, rowptr, "rowptr", device);
  check_floating(t, name);
  check_dim(t, name, 2);
  check_size(t, name, 0, rowptr.numel() - 1);
}

// a [n] tensor of per-node values of the given dtype, on the graph's device
inline void check_per_node(const at::Tensor& t, const char* name, const at::Tensor& rowptr,
                           at::ScalarType dtype, c10::DeviceType device) {
  check_beside(t, name, rowptr, "rowptr", device);
  check_dtype(t, name, dtype);
  check_dim(t, name, 1);
  check_size(t, name, 0, rowptr.numel() - 1);
}

// spmm(rowptr, col, value [E], x [n, d]); the transpose arguments are autograd's alone
inline void check_spmm_args(const at::Tensor& rowptr, const at::Tensor& col,
                            const at::Tensor& value, const at::Tensor& x,
                            c10::DeviceType device) {
  check_csr(rowptr, "rowptr", col, "col", device);
  check_beside(value, "value", rowptr, "rowptr", device);
  check_dim(value, "value", 1);
  check_size(value, "value", 0, col.numel());
  check_node_features(x, "x", rowptr, device);
  check_dtype(value, "value", x.scalar_type());
}

// spmm_backward_value(rowptr, col, grad_out [n, d], x [n, d])
inline void check_spmm_backward_value_args(const at::Tensor& rowptr, const at::Tensor& col,
                                           const at::Tensor& grad_out, const at::Tensor& x,
                                           c10::DeviceType device) {
  check_csr(rowptr, "rowptr", col, "col", device);
  check_node_features(grad_out, "grad_out", rowptr, device);
  check_node_features(x, "x", rowptr, device);
  check_dtype(grad_out, "grad_out", x.scalar_type());
  check_size(grad_out, "grad_out", 1, x.size(1));
}

// intent_propagate's structure and its transpose: the same number of nodes and of edges
inline void check_intent_propagate_structures(const at::Tensor& rowptr, const at::Tensor& col,
                                              const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                              c10::DeviceType device) {
  check_csr(rowptr, "rowptr", col, "col", device);
  check_csr(t_rowptr, "t_rowptr", t_col, "t_col", device);
  check_same_device(t_rowptr, "t_rowptr", rowptr, "rowptr");
  check_size(t_rowptr, "t_rowptr", 0, rowptr.numel());
  check_size(t_col, "t_col", 0, col.numel());
}

// intent_propagate(structures, r [n, d], x [n, d])
inline void check_intent_propagate_args(const at::Tensor& rowptr, const at::Tensor& col,
                                        const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                        const at::Tensor& r, const at::Tensor& x,
                                        c10::DeviceType device) {
  check_intent_propagate_structures(rowptr, col, t_rowptr, t_col, device);
  check_node_features(r, "r", rowptr, device);
  check_node_features(x, "x", rowptr, device);
  check_dtype(r, "r", x.scalar_type());
  check_size(r, "r", 1, x.size(1));
}

// intent_propagate_backward(grad, structures, r, x, out, row_sum, norm): grad, r and out [n, d]
// and row_sum, norm [n], all of x's dtype
inline void check_intent_propagate_backward_args(
    const at::Tensor& grad, const at::Tensor& rowptr, const at::Tensor& col,
    const at::Tensor& t_rowptr, const at::Tensor& t_col, const at::Tensor& r, const at::Tensor& x,
    const at::Tensor& out, const at::Tensor& row_sum, const at::Tensor& norm,
    c10::DeviceType device) {
  check_intent_propagate_structures(rowptr, col, t_rowptr, t_col, device);
  check_node_features(x, "x", rowptr, device);
  const auto dtype = x.scalar_type();
  for (const auto& [t, name] : {std::pair<const at::Tensor&, const char*>{grad, "grad"},
                                {r, "r"}, {out, "out"}}) {
    check_node_features(t, name, rowptr, device);
    check_dtype(t, name, dtype);
    check_size(t, name, 1, x.size(1));
  }
  check_per_node(row_sum, "row_sum", rowptr, dtype, device);
  check_per_node(norm, "norm", rowptr, dtype, device);
}

}  // namespace irllrec_fast
