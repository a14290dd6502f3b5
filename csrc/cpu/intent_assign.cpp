// CPU kernels of `intent_assign`: out = softmax(e w) w^T with lse = logsumexp(e w), and the
// backward, which recomputes the probabilities from lse.
//
// Rows go in tiles of T; a tile's logits ([T, K]) live only in a thread's scratch, in cache, from
// the product that makes them to the one that consumes them (intent_assign_kernels.h). Nothing
// n x K is ever allocated. BLAS is not used: at d = 32 its packing and per-call costs outweigh
// the products themselves, which the register-blocked tile kernel does at a good fraction of the
// FMA peak.
//
// grad_w = g^T P + e^T dZ sums over all rows. It is made deterministic by grouping the tiles
// into a number of groups that depends on the shapes only: one thread accumulates a group's
// [d, K] partial in tile order, and the partials are added in group order, so the result is the
// same whatever the number of threads.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>

#include "../checks.h"
#include "../op_checks.h"
#include "../ops.h"
#include "dynamic_schedule.h"
#include "intent_assign_pack.h"
#include "simd.h"

// The tile kernels pass 32-byte vectors by value between inline functions of one SIMD variant;
// GCC's note that this changes the ABI of the baseline variant does not concern them. A pragma
// does not silence that note, so the builds pass -Wno-psabi (setup.py, CMakeLists.txt).

#define IRLLREC_KERNELS "intent_assign_kernels.h"
#include "simd_variants.inc"
#undef IRLLREC_KERNELS

namespace irllrec_fast {
namespace cpu {
namespace {

// Rows per tile: the tile's logits and their gradient (2 x 32 x K values) stay in L1 / L2.
constexpr int64_t kTileRows = 32;

// At most this many [d, K] partials of grad_w.
constexpr int64_t kMaxGroups = 32;

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// w [d, K] (contiguous) packed as the tile kernels want it: [d, Kp] followed by w^T as [Kp, dp],
// zero padded. Returns the buffer, which `packed` points into.
template <typename scalar_t>
at::Tensor pack_weights(const at::Tensor& w, AssignWeights<scalar_t>& packed) {
  const int64_t d = w.size(0), K = w.size(1);
  const int64_t Kp = round_up(K, assign_column_block<scalar_t>());
  const int64_t dp = round_up(d, assign_column_block<scalar_t>());
  auto buffer = at::zeros({d * Kp + Kp * dp}, w.options().requires_grad(false));
  const scalar_t* src = w.data_ptr<scalar_t>();
  scalar_t* wp = buffer.data_ptr<scalar_t>();
  scalar_t* wt = wp + d * Kp;
  for (int64_t j = 0; j < d; ++j)
    for (int64_t k = 0; k < K; ++k) wp[j * Kp + k] = wt[k * dp + j] = src[j * K + k];
  packed = {wp, wt, d, K, Kp, dp};
  return buffer;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> intent_assign(const at::Tensor& e, const at::Tensor& w) {
  check_intent_assign_args(e, w, c10::DeviceType::CPU);
  const auto e_c = e.contiguous();
  const auto w_c = w.contiguous();
  const int64_t n = e.size(0), d = e.size(1), K = w.size(1);
  auto out = at::empty({n, d}, e.options());
  auto lse = at::empty({n}, e.options());
  if (n == 0) return {out, lse};
  if (d == 0) return {out, lse.fill_(std::log(double(K)))};  // all logits 0

  const int64_t T = std::min(kTileRows, n);
  const int64_t tiles = (n + T - 1) / T;
  AT_DISPATCH_FLOATING_TYPES(e.scalar_type(), "irllrec_fast::intent_assign (CPU)", [&] {
    AssignWeights<scalar_t> packed;
    const auto keep_alive = pack_weights(w_c, packed);
    const auto tile = cpu_has_avx2_fma() ? &avx2_or_base::forward_tile<scalar_t>
                                         : &base::forward_tile<scalar_t>;
    const scalar_t* e_p = e_c.data_ptr<scalar_t>();
    scalar_t* out_p = out.data_ptr<scalar_t>();
    scalar_t* lse_p = lse.data_ptr<scalar_t>();
    // a few tiles per item keep the scratch allocation and the scheduling rare
    const int64_t per_item = std::max<int64_t>(1, std::min<int64_t>(8, tiles / (8 * at::get_num_threads())));
    parallel_for_each_item((tiles + per_item - 1) / per_item, [&](int64_t item) {
      AssignScratch<scalar_t> scratch(T, packed);
      for (int64_t t = item * per_item; t < std::min(tiles, (item + 1) * per_item); ++t) {
        const int64_t r0 = t * T, m = std::min(T, n - r0);
        tile(e_p + r0 * d, m, packed, scratch, out_p + r0 * d, lse_p + r0);
      }
    });
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor> intent_assign_backward(const at::Tensor& grad,
                                                          const at::Tensor& e, const at::Tensor& w,
                                                          const at::Tensor& lse) {
  check_intent_assign_args(e, w, c10::DeviceType::CPU);
  check_intent_assign_backward_args(grad, lse, e, c10::DeviceType::CPU);

  const auto e_c = e.contiguous();
  const auto w_c = w.contiguous();
  const auto g_c = grad.contiguous();
  const auto lse_c = lse.contiguous();
  const int64_t n = e.size(0), d = e.size(1), K = w.size(1);
  auto grad_e = at::empty({n, d}, e.options());
  auto grad_w = at::zeros({d, K}, e.options());
  if (n == 0 || d == 0) return {grad_e, grad_w};

  const int64_t T = std::min(kTileRows, n);
  const int64_t tiles = (n + T - 1) / T;
  const int64_t tiles_per_group = (tiles + kMaxGroups - 1) / kMaxGroups;
  const int64_t groups = (tiles + tiles_per_group - 1) / tiles_per_group;
  AT_DISPATCH_FLOATING_TYPES(e.scalar_type(), "irllrec_fast::intent_assign_backward (CPU)", [&] {
    AssignWeights<scalar_t> packed;
    const auto keep_alive = pack_weights(w_c, packed);
    const int64_t Kp = packed.Kp;
    auto partial = at::empty({groups, d, Kp}, e.options());
    const auto tile = cpu_has_avx2_fma() ? &avx2_or_base::backward_tile<scalar_t>
                                         : &base::backward_tile<scalar_t>;
    const scalar_t* e_p = e_c.data_ptr<scalar_t>();
    const scalar_t* g_p = g_c.data_ptr<scalar_t>();
    const scalar_t* lse_p = lse_c.data_ptr<scalar_t>();
    scalar_t* grad_e_p = grad_e.data_ptr<scalar_t>();
    scalar_t* partial_p = partial.data_ptr<scalar_t>();
    parallel_for_each_item(groups, [&](int64_t group) {
      AssignScratch<scalar_t> scratch(T, packed);
      std::fill_n(partial_p + group * d * Kp, d * Kp, scalar_t(0));
      const int64_t t_end = std::min(tiles, (group + 1) * tiles_per_group);
      for (int64_t t = group * tiles_per_group; t < t_end; ++t) {
        const int64_t r0 = t * T, m = std::min(T, n - r0);
        tile(e_p + r0 * d, g_p + r0 * d, lse_p + r0, m, packed, scratch, grad_e_p + r0 * d,
             partial_p + group * d * Kp);
      }
    });
    // the partials in group order, whatever thread made them (d x K x groups adds: serial, as
    // one more parallel region costs more than it saves on a busy machine)
    scalar_t* gw = grad_w.data_ptr<scalar_t>();
    for (int64_t group = 0; group < groups; ++group)
      for (int64_t j = 0; j < d; ++j) {
        const scalar_t* src = partial_p + (group * d + j) * Kp;
        for (int64_t k = 0; k < K; ++k) gw[j * K + k] += src[k];
      }
  });
  return {grad_e, grad_w};
}

}  // namespace cpu
}  // namespace irllrec_fast

TORCH_LIBRARY_IMPL(irllrec_fast, CPU, m) {
  m.impl("intent_assign", &irllrec_fast::cpu::intent_assign);
  m.impl("intent_assign_backward", &irllrec_fast::cpu::intent_assign_backward);
}
