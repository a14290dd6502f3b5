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
  // (out [n, d], lse [n]) = (softmax(e w) w^T, logsumexp(e w)); the backward recomputes the
  // probabilities from lse and returns (grad_e, grad_w).
  m.def("intent_assign(Tensor e, Tensor w) -> (Tensor, Tensor)");
  m.def("intent_assign_backward(Tensor grad, Tensor e, Tensor w, Tensor lse) -> (Tensor, Tensor)");
  // (out [n, d], row_sum [n], norm [n]): intent-weighted, row-normalised aggregation of x over
  // the structure (rowptr, col); row_sum = sum of the row's alphas, norm = ||r|| per row. The
  // edge values are not an input. (t_rowptr, t_col) is the transpose structure, read only by the
  // backward; when they are the very tensors rowptr and col, the structure is taken as symmetric
  // and the backward makes one pass instead of two.
  m.def(
      "intent_propagate(Tensor rowptr, Tensor col, Tensor t_rowptr, Tensor t_col, Tensor r, "
      "Tensor x) -> (Tensor, Tensor, Tensor)");
  m.def(
      "intent_propagate_backward(Tensor grad, Tensor rowptr, Tensor col, Tensor t_rowptr, "
      "Tensor t_col, Tensor r, Tensor x, Tensor out, Tensor row_sum, Tensor norm) "
      "-> (Tensor, Tensor)");
  // loss[k] = -<a_k, b_k>/t + lse[k], lse[k] = log sum_j exp(<a_k, c_j>/t); a, b [B, d], c [M, d]
  m.def("infonce(Tensor a, Tensor b, Tensor c, float temperature) -> (Tensor, Tensor)");
  m.def(
      "infonce_backward(Tensor grad, Tensor a, Tensor b, Tensor c, Tensor lse, "
      "float temperature) -> (Tensor, Tensor, Tensor)");
}
