// CPU kernels of `intent_propagate`: intent-weighted, row-normalised aggregation over a CSR
// structure (IRLLREC_SPEC.md section 2), and its backward for r and x.
//
// Nothing per edge is stored: the forward recomputes alpha on the fly while it aggregates, and the
// backward recomputes alpha_ht and dL/dalpha_ht from per-node quantities (rhat, S, <g, out>), so
// the extra memory is a few n x d and n arrays. The backward over a general structure makes two
// passes (rows of the graph, then rows of its transpose); over a symmetric one a single pass.
// Rows are split into contiguous chunks of balanced work (row_partition.h), each row written by
// one thread: deterministic, no atomics.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <type_traits>

#include "../checks.h"
#include "../op_checks.h"
#include "../ops.h"
#include "dynamic_schedule.h"
#include "row_partition.h"
#include "simd.h"

#define IRLLREC_KERNELS "intent_propagate_kernels.h"
#include "simd_variants.inc"
#undef IRLLREC_KERNELS

namespace irllrec_fast {
namespace cpu {
namespace {

constexpr double kNormEps = 1e-12;  // F.normalize's default, as the reference uses it

// Calls f(D) with D = d when d is one of the widths compiled for, else f(0) (run-time width).
template <typename F>
void dispatch_width(int64_t d, F&& f) {
  switch (d) {
    case 8: f(std::integral_constant<int, 8>{}); break;
    case 16: f(std::integral_constant<int, 16>{}); break;
    case 32: f(std::integral_constant<int, 32>{}); break;
    case 64: f(std::integral_constant<int, 64>{}); break;
    case 128: f(std::integral_constant<int, 128>{}); break;
    default: f(std::integral_constant<int, 0>{}); break;
  }
}

// Picks the AVX2 + FMA instantiation of a kernel when the CPU has it.
#define IRLLREC_PICK(kernel, ...) \
  (cpu_has_avx2_fma() ? &avx2_or_base::kernel<__VA_ARGS__> : &base::kernel<__VA_ARGS__>)

// Parallel loop over n rows of O(d) work each.
template <typename F>
void for_rows(int64_t n, int64_t d, F&& f) {
  at::parallel_for(0, n, std::max<int64_t>(1, 32768 / std::max<int64_t>(d, 1)), f);
}

// Parallel loop over the balanced row chunks of a CSR structure, taken dynamically.
template <typename F>
void for_chunks(const int32_t* rowptr, int64_t n, int64_t d, F&& f) {
  const auto chunks = balanced_row_chunks(rowptr, n, d);
  parallel_for_each_item(int64_t(chunks.size()) - 1,
                         [&](int64_t k) { f(chunks[k], chunks[k + 1]); });
}

bool same_tensor(const at::Tensor& a, const at::Tensor& b) {
  return a.data_ptr() == b.data_ptr() && a.sizes() == b.sizes() && a.strides() == b.strides();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> intent_propagate(
    const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
    const at::Tensor& t_col, const at::Tensor& r, const at::Tensor& x) {
  check_intent_propagate_args(rowptr, col, t_rowptr, t_col, r, x, c10::DeviceType::CPU);
  const int64_t n = rowptr.numel() - 1;

  const auto rowptr_c = rowptr.contiguous();
  const auto col_c = col.contiguous();
  const auto r_c = r.contiguous();
  const auto x_c = x.contiguous();
  const int64_t d = x.size(1);
  const int64_t num_edges = col.numel();
  auto out = at::empty({n, d}, x.options());
  auto row_sum = at::empty({n}, x.options());
  auto norm = at::empty({n}, x.options());
  if (n == 0) return {out, row_sum, norm};
  auto rhat = at::empty({n, d}, x.options());

  const int32_t* rp = rowptr_c.data_ptr<int32_t>();
  const int32_t* c = col_c.data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "irllrec_fast::intent_propagate (CPU)", [&] {
    dispatch_width(d, [&](auto width) {
      constexpr int D = decltype(width)::value;
      const auto normalize = IRLLREC_PICK(normalize_rows, scalar_t, D);
      const auto forward = IRLLREC_PICK(forward_rows, scalar_t, D);
      for_rows(n, d, [&](int64_t lo, int64_t hi) {
        normalize(r_c.data_ptr<scalar_t>(), rhat.data_ptr<scalar_t>(),
                  norm.data_ptr<scalar_t>(), lo, hi, d, kNormEps);
      });
      for_chunks(rp, n, d, [&](int64_t lo, int64_t hi) {
        forward(rp, c, rhat.data_ptr<scalar_t>(), x_c.data_ptr<scalar_t>(),
                out.data_ptr<scalar_t>(), row_sum.data_ptr<scalar_t>(), lo, hi, d, num_edges);
      });
    });
  });
  return {out, row_sum, norm};
}

std::tuple<at::Tensor, at::Tensor> intent_propagate_backward(
    const at::Tensor& grad, const at::Tensor& rowptr, const at::Tensor& col,
    const at::Tensor& t_rowptr, const at::Tensor& t_col, const at::Tensor& r, const at::Tensor& x,
    const at::Tensor& out, const at::Tensor& row_sum, const at::Tensor& norm) {
  check_intent_propagate_backward_args(grad, rowptr, col, t_rowptr, t_col, r, x, out, row_sum,
                                       norm, c10::DeviceType::CPU);
  const auto dtype = x.scalar_type();
  const int64_t n = rowptr.numel() - 1;
  const int64_t d = x.size(1);

  auto grad_r = at::empty({n, d}, x.options());
  auto grad_x = at::empty({n, d}, x.options());
  if (n == 0) return {grad_r, grad_x};
  const bool symmetric = same_tensor(t_rowptr, rowptr) && same_tensor(t_col, col);
  const auto rowptr_c = rowptr.contiguous();
  const auto col_c = col.contiguous();
  const auto t_rowptr_c = t_rowptr.contiguous();
  const auto t_col_c = t_col.contiguous();
  const auto g_c = grad.contiguous();
  const auto r_c = r.contiguous();
  const auto x_c = x.contiguous();
  const auto out_c = out.contiguous();
  const auto row_sum_c = row_sum.contiguous();
  const auto norm_c = norm.contiguous();
  auto rhat = at::empty({n, d}, x.options());
  auto q = at::empty({n}, x.options());
  auto inv_sum = at::empty({n}, x.options());
  const int64_t num_edges = col.numel();

  const int32_t* rp = rowptr_c.data_ptr<int32_t>();
  const int32_t* c = col_c.data_ptr<int32_t>();
  const int32_t* trp = t_rowptr_c.data_ptr<int32_t>();
  const int32_t* tc = t_col_c.data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES(dtype, "irllrec_fast::intent_propagate_backward (CPU)", [&] {
    const scalar_t* g_p = g_c.data_ptr<scalar_t>();
    const scalar_t* x_p = x_c.data_ptr<scalar_t>();
    const scalar_t* rhat_p = rhat.data_ptr<scalar_t>();
    const scalar_t* q_p = q.data_ptr<scalar_t>();
    const scalar_t* inv_p = inv_sum.data_ptr<scalar_t>();
    const scalar_t* norm_p = norm_c.data_ptr<scalar_t>();
    scalar_t* grad_r_p = grad_r.data_ptr<scalar_t>();
    scalar_t* grad_x_p = grad_x.data_ptr<scalar_t>();
    dispatch_width(d, [&](auto width) {
      constexpr int D = decltype(width)::value;
      const auto prepare = IRLLREC_PICK(backward_prepare_rows, scalar_t, D);
      for_rows(n, d, [&](int64_t lo, int64_t hi) {
        prepare(r_c.data_ptr<scalar_t>(), norm_p, g_p, out_c.data_ptr<scalar_t>(),
                row_sum_c.data_ptr<scalar_t>(), rhat.data_ptr<scalar_t>(),
                q.data_ptr<scalar_t>(), inv_sum.data_ptr<scalar_t>(), lo, hi, d, kNormEps);
      });
      if (symmetric) {
        const auto both = IRLLREC_PICK(backward_symmetric_rows, scalar_t, D);
        for_chunks(rp, n, d, [&](int64_t lo, int64_t hi) {
          both(rp, c, rhat_p, x_p, g_p, q_p, inv_p, norm_p, grad_r_p, grad_x_p, lo, hi, d,
               num_edges, kNormEps);
        });
      } else {
        const auto row_part = IRLLREC_PICK(backward_row_part_rows, scalar_t, D);
        const auto column_part = IRLLREC_PICK(backward_column_part_rows, scalar_t, D);
        for_chunks(rp, n, d, [&](int64_t lo, int64_t hi) {
          row_part(rp, c, rhat_p, x_p, g_p, q_p, inv_p, grad_r_p, lo, hi, d, num_edges);
        });
        for_chunks(trp, n, d, [&](int64_t lo, int64_t hi) {
          column_part(trp, tc, rhat_p, x_p, g_p, q_p, inv_p, norm_p, grad_r_p, grad_x_p, lo, hi,
                      d, num_edges, kNormEps);
        });
      }
    });
  });
  return {grad_r, grad_x};
}

}  // namespace cpu
}  // namespace irllrec_fast

TORCH_LIBRARY_IMPL(irllrec_fast, CPU, m) {
  m.impl("intent_propagate", &irllrec_fast::cpu::intent_propagate);
  m.impl("intent_propagate_backward", &irllrec_fast::cpu::intent_propagate_backward);
}
