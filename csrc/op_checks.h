// The argument checks of the operators whose CPU and CUDA kernels take the same arguments: one
// definition per operator, called by both with the device type they run on, so that a bad
// argument gets the same message on every device. Built from the helpers of checks.h.
#pragma once

#include <cmath>

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

}  // namespace irllrec_fast
