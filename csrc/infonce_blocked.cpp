// `infonce` from library GEMMs over blocks of the logit matrix, for any device.
//
// The flash-style kernels of csrc/cuda/infonce.cu never store a logit, but run on the FP32 FMA
// units; cuBLAS reaches several times their throughput (and uses tensor cores when the user
// allows TF32). This path keeps the memory bound instead: the [B, M] logits are produced one
// block of at most `block_elems` entries at a time into one reused buffer, turned into
// probabilities in place, and consumed by the next GEMMs. Per block: forward one GEMM and an
// online log-sum-exp update; backward one GEMM, exp in place, two GEMMs accumulating into the
// gradients. Blocks run in a fixed order and every GEMM writes its own rows: no atomics, so the
// result is reproducible run to run.
//
// Registered as the private operator `_infonce_blocked` (any device) so tests and benchmarks can
// compare it with the flash kernels on the same inputs.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <tuple>

#include "checks.h"

namespace irllrec_fast {
namespace blocked {
namespace {

// Rows per block: enough for the GEMMs to fill a GPU, few enough that a block of the buffer
// stays cache-sized when M is large.
constexpr int64_t kMaxBlockRows = 4096;

void check_inputs(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c,
                  double temperature, int64_t block_elems) {
  check_floating(a, "a");
  check_dim(a, "a", 2);
  check_dim(b, "b", 2);
  check_dim(c, "c", 2);
  check_same_device(b, "b", a, "a");
  check_same_device(c, "c", a, "a");
  check_dtype(b, "b", a.scalar_type());
  check_dtype(c, "c", a.scalar_type());
  check_size(b, "b", 0, a.size(0));
  check_size(b, "b", 1, a.size(1));
  check_size(c, "c", 1, a.size(1));
  TORCH_CHECK(c.size(0) >= 1, "c must have at least one row (candidate), got 0");
  TORCH_CHECK(temperature > 0, "temperature must be > 0, got ", temperature);
  TORCH_CHECK(block_elems >= 1, "block_elems must be >= 1, got ", block_elems);
}

struct Blocking {
  int64_t rows, cols;
};

Blocking blocking(int64_t B, int64_t M, int64_t block_elems) {
  const int64_t rows = std::max<int64_t>(1, std::min({B, kMaxBlockRows, block_elems}));
  const int64_t cols = std::max<int64_t>(1, std::min(M, block_elems / rows));
  return {rows, cols};
}

// A contiguous [rows, cols] view of the front of a flat buffer.
at::Tensor block_view(const at::Tensor& flat, int64_t rows, int64_t cols) {
  return flat.narrow(0, 0, rows * cols).view({rows, cols});
}

std::tuple<at::Tensor, at::Tensor> infonce_blocked(const at::Tensor& a, const at::Tensor& b,
                                                   const at::Tensor& c, double temperature,
                                                   int64_t block_elems) {
  check_inputs(a, b, c, temperature, block_elems);
  const int64_t B = a.size(0), M = c.size(0);
  const double inv_t = 1.0 / temperature;
  auto lse = at::empty({B}, a.options());
  if (B == 0) return {lse.clone(), lse};
  // Logits as (a / t) c^T: the backward forms them the same way, so they match the saved lse.
  const auto a_scaled = a.mul(inv_t);
  const auto c_c = c.contiguous();
  const auto [rows, cols] = blocking(B, M, block_elems);
  const auto buffer = at::empty({rows * cols}, a.options());
  for (int64_t r0 = 0; r0 < B; r0 += rows) {
    const int64_t nr = std::min(rows, B - r0);
    const auto a_rows = a_scaled.narrow(0, r0, nr);
    auto run_max = at::full({nr}, -std::numeric_limits<double>::infinity(), a.options());
    auto run_sum = at::zeros({nr}, a.options());
    for (int64_t c0 = 0; c0 < M; c0 += cols) {
      const int64_t nc = std::min(cols, M - c0);
      auto logits = block_view(buffer, nr, nc);
      at::mm_out(logits, a_rows, c_c.narrow(0, c0, nc).t());
      const auto new_max = at::maximum(run_max, at::amax(logits, 1));
      logits.sub_(new_max.unsqueeze(1)).exp_();
      run_sum = run_sum.mul(at::exp(run_max.sub(new_max))).add_(logits.sum(1));
      run_max = new_max;
    }
    lse.narrow(0, r0, nr).copy_(run_max.add(at::log(run_sum)));
  }
  const auto positive = a.mul(b).sum(1).mul(inv_t);
  return {lse.sub(positive), lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> infonce_blocked_backward(
    const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b, const at::Tensor& c,
    const at::Tensor& lse, double temperature, int64_t block_elems) {
  check_inputs(a, b, c, temperature, block_elems);
  const int64_t B = a.size(0), M = c.size(0);
  check_dim(grad, "grad", 1);
  check_size(grad, "grad", 0, B);
  check_dim(lse, "lse", 1);
  check_size(lse, "lse", 0, B);
  const double inv_t = 1.0 / temperature;
  // d loss_k / d logit_kj = p_kj, so every weight below carries g_k / t
  const auto weight = grad.to(a.scalar_type()).mul(inv_t).unsqueeze(1);
  auto grad_a = b.mul(weight).neg_();
  auto grad_b = a.mul(weight).neg_();
  auto grad_c = at::zeros_like(c, at::MemoryFormat::Contiguous);
  if (B == 0 || a.size(1) == 0) return {grad_a, grad_b, grad_c};
  const auto a_c = a.contiguous();
  const auto a_scaled = a_c.mul(inv_t);
  const auto c_c = c.contiguous();
  const auto lse_col = lse.to(a.scalar_type()).unsqueeze(1);
  const auto [rows, cols] = blocking(B, M, block_elems);
  const auto buffer = at::empty({rows * cols}, a.options());
  for (int64_t r0 = 0; r0 < B; r0 += rows) {
    const int64_t nr = std::min(rows, B - r0);
    const auto a_rows = a_c.narrow(0, r0, nr);
    auto grad_a_rows = grad_a.narrow(0, r0, nr);
    const auto row_lse = lse_col.narrow(0, r0, nr);
    const auto row_weight = weight.narrow(0, r0, nr);
    for (int64_t c0 = 0; c0 < M; c0 += cols) {
      const int64_t nc = std::min(cols, M - c0);
      const auto c_cols = c_c.narrow(0, c0, nc);
      auto p = block_view(buffer, nr, nc);
      at::mm_out(p, a_scaled.narrow(0, r0, nr), c_cols.t());
      p.sub_(row_lse).exp_().mul_(row_weight);
      grad_a_rows.addmm_(p, c_cols);
      grad_c.narrow(0, c0, nc).addmm_(p.t(), a_rows);
    }
  }
  return {grad_a, grad_b, grad_c};
}

}  // namespace
}  // namespace blocked
}  // namespace irllrec_fast

TORCH_LIBRARY_IMPL(irllrec_fast, CompositeExplicitAutograd, m) {
  m.impl("_infonce_blocked", &irllrec_fast::blocked::infonce_blocked);
  m.impl("_infonce_blocked_backward", &irllrec_fast::blocked::infonce_blocked_backward);
}
