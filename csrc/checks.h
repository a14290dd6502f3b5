// Argument checks shared by every operator. Each message names the argument and what was
// expected, so a bad call from Python reads like a normal error, not a crash.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace irllrec_fast {

inline void check_device(const at::Tensor& t, const char* name, c10::DeviceType device) {
  TORCH_CHECK(t.device().type() == device, name, " must be on ", c10::DeviceTypeName(device),
              ", got a tensor on ", t.device());
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& ref,
                              const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), name, " must be on the same device as ", ref_name,
              " (", ref.device(), "), got ", t.device());
}

inline void check_dtype(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.scalar_type() == dtype, name, " must have dtype ", dtype, ", got ",
              t.scalar_type());
}

inline void check_dim(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.dim() == dim, name, " must be ", dim, "-D, got shape ", t.sizes());
}

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", t.scalar_type());
}

inline void check_size(const at::Tensor& t, const char* name, int64_t dim, int64_t expected) {
  TORCH_CHECK(t.size(dim) == expected, name, ".size(", dim, ") must be ", expected, ", got ",
              t.size(dim), " (shape ", t.sizes(), ")");
}

// A CSR structure as the operators take it: int32 rowptr [n + 1] and int32 col [E] on `device`.
// Index values are validated once, when the Python CSRGraph is built; here only shapes/dtypes.
inline void check_csr(const at::Tensor& rowptr, const char* rowptr_name, const at::Tensor& col,
                      const char* col_name, c10::DeviceType device) {
  check_device(rowptr, rowptr_name, device);
  check_device(col, col_name, device);
  check_dtype(rowptr, rowptr_name, at::kInt);
  check_dtype(col, col_name, at::kInt);
  check_dim(rowptr, rowptr_name, 1);
  check_dim(col, col_name, 1);
  TORCH_CHECK(rowptr.numel() >= 1, rowptr_name, " must have num_nodes + 1 >= 1 entries");
  check_same_device(col, col_name, rowptr, rowptr_name);
}

}  // namespace irllrec_fast
