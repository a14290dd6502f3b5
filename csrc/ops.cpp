// Every operator schema of the library, in one place. Kernels register themselves per backend
// (csrc/cpu/*.cpp, csrc/cuda/*.cu); fake (meta) and autograd registrations are in Python, beside
// each operator's wrapper in irllrec_fast/ops/.
//
// Conventions: CSR structures are int32 (rowptr [n + 1], col [E]); `t_rowptr, t_col, t_perm`
// describe the transpose (t_perm[k] = edge id in the original of transposed edge k; an empty
// t_perm means the structure and values are symmetric, so the transpose is the graph itself).
#include <torch/library.h>

TORCH_LIBRARY(irllrec_fast, m) {
  m.def(
      "spmm(Tensor rowptr, Tensor col, Tensor value, Tensor t_rowptr, Tensor t_col, "
      "Tensor t_perm, Tensor x) -> Tensor");
  m.def("spmm_backward_value(Tensor rowptr, Tensor col, Tensor grad_out, Tensor x) -> Tensor");
  // loss[k] = -<a_k, b_k>/t + lse[k], lse[k] = log sum_j exp(<a_k, c_j>/t); a, b [B, d], c [M, d]
  m.def("infonce(Tensor a, Tensor b, Tensor c, float temperature) -> (Tensor, Tensor)");
  m.def(
      "infonce_backward(Tensor grad, Tensor a, Tensor b, Tensor c, Tensor lse, "
      "float temperature) -> (Tensor, Tensor, Tensor)");
}
