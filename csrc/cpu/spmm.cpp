// CPU kernels of `spmm`: out = A x for a CSR matrix A, and the per-edge value gradient.
//
// Work is split into chunks of roughly equal (rows + nonzeros) so that power-law rows do not
// leave one thread with most of the work; each chunk is a contiguous row range, so every output
// row is written by exactly one thread (deterministic, no atomics).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../checks.h"
#include "../op_checks.h"
#include "../ops.h"
#include "row_partition.h"
#include "simd.h"

#define IRLLREC_KERNELS "spmm_kernels.h"
#include "simd_variants.inc"
#undef IRLLREC_KERNELS

namespace irllrec_fast {
namespace cpu {

at::Tensor spmm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& value,
                const at::Tensor& t_rowptr, const at::Tensor& t_col, const at::Tensor& t_perm,
                const at::Tensor& x) {
  (void)t_rowptr, (void)t_col, (void)t_perm;  // consumed by autograd only
  check_spmm_args(rowptr, col, value, x, c10::DeviceType::CPU);

  const auto rowptr_c = rowptr.contiguous();
  const auto col_c = col.contiguous();
  const auto value_c = value.contiguous();
  const auto x_c = x.contiguous();
  const int64_t n = rowptr.numel() - 1;
  const int64_t d = x.size(1);
  auto out = at::empty({n, d}, x.options());
  if (n == 0 || d == 0) return out;

  const int32_t* rp = rowptr_c.data_ptr<int32_t>();
  const auto chunks = balanced_row_chunks(rp, n, d);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "irllrec_fast::spmm (CPU)", [&] {
    const scalar_t* v = value_c.data_ptr<scalar_t>();
    const scalar_t* xs = x_c.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const int32_t* c = col_c.data_ptr<int32_t>();
    const int64_t nnz = col.numel();
    dispatch_chunk_width(d, [&](auto width) {
      constexpr int W = decltype(width)::value;
      auto rows = cpu_has_avx2_fma() ? &avx2_or_base::spmm_rows<scalar_t, W>
                                     : &base::spmm_rows<scalar_t, W>;
      at::parallel_for(0, int64_t(chunks.size()) - 1, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t k = lo; k < hi; ++k) rows(rp, c, v, xs, o, chunks[k], chunks[k + 1], d, nnz);
      });
    });
  });
  return out;
}

at::Tensor spmm_backward_value(const at::Tensor& rowptr, const at::Tensor& col,
                               const at::Tensor& grad_out, const at::Tensor& x) {
  check_spmm_backward_value_args(rowptr, col, grad_out, x, c10::DeviceType::CPU);

  const auto rowptr_c = rowptr.contiguous();
  const auto col_c = col.contiguous();
  const auto g_c = grad_out.contiguous();
  const auto x_c = x.contiguous();
  const int64_t n = rowptr.numel() - 1;
  const int64_t d = x.size(1);
  auto grad_value = at::empty({col.numel()}, x.options());
  if (col.numel() == 0) return grad_value;

  const int32_t* rp = rowptr_c.data_ptr<int32_t>();
  const auto chunks = balanced_row_chunks(rp, n, d);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "irllrec_fast::spmm_backward_value (CPU)", [&] {
    const scalar_t* gs = g_c.data_ptr<scalar_t>();
    const scalar_t* xs = x_c.data_ptr<scalar_t>();
    scalar_t* gv = grad_value.data_ptr<scalar_t>();
    const int32_t* c = col_c.data_ptr<int32_t>();
    const int64_t nnz = col.numel();
    dispatch_chunk_width(d, [&](auto width) {
      constexpr int W = decltype(width)::value;
      auto rows = cpu_has_avx2_fma() ? &avx2_or_base::value_grad_rows<scalar_t, W>
                                     : &base::value_grad_rows<scalar_t, W>;
      at::parallel_for(0, int64_t(chunks.size()) - 1, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t k = lo; k < hi; ++k) rows(rp, c, gs, xs, gv, chunks[k], chunks[k + 1], d, nnz);
      });
    });
  });
  return grad_value;
}

}  // namespace cpu
}  // namespace irllrec_fast

TORCH_LIBRARY_IMPL(irllrec_fast, CPU, m) {
  m.impl("spmm", &irllrec_fast::cpu::spmm);
  m.impl("spmm_backward_value", &irllrec_fast::cpu::spmm_backward_value);
}
