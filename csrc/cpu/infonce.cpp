// CPU kernels of `infonce`: per row k, loss_k = -<a_k, b_k>/tau + lse_k with
// lse_k = log sum_j exp(<a_k, c_j>/tau), and the backward from the saved lse.
//
// Nothing of size B x M is ever stored. Candidates are taken in tiles of `tile` columns, packed
// transposed (infonce_kernels.h), anchors in blocks of rows. The forward folds each (block,
// tile) of logits into a running maximum and sum per row (online log-sum-exp); the backward
// recomputes the same logits (bit for bit: same kernel, same order), turns them into softmax
// weights with the saved lse, and takes both gradient products from the same tile while it is
// in cache. The logits are kept in base 2 (anchors scaled by log2(e) / tau) for a cheaper exp.
//
// Work is cut into a fixed number of units (anchor blocks x candidate ranges) that threads take
// as they become free, and every unit writes its own outputs or partial sums, which are added in
// a fixed order. So there are no atomics on data, and equal inputs give bitwise equal outputs
// whatever the number of threads.
//
// Extra memory: forward, the packed candidates (M d) and the scaled anchors (B d); backward, the
// scaled anchors, partial gradient sums bounded by 2 (B + M) d per side (see backward_groups),
// and a few tiles per thread.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../op_checks.h"
#include "../ops.h"
#include "simd.h"

#define IRLLREC_KERNELS "infonce_kernels.h"
#include "simd_variants.inc"
#undef IRLLREC_KERNELS

namespace irllrec_fast {
namespace cpu {
namespace {

// The tile kernels of the SIMD variant this CPU runs.
template <typename scalar_t>
struct TileKernels {
  decltype(&base::infonce_tiles::logits_tile<scalar_t>) logits;
  decltype(&base::infonce_tiles::online_lse<scalar_t>) online_lse;
  decltype(&base::infonce_tiles::weights_tile<scalar_t>) weights;
  decltype(&base::infonce_tiles::weighted_candidates<scalar_t>) weighted_candidates;
  decltype(&base::infonce_tiles::weighted_anchors<scalar_t>) weighted_anchors;
};

template <typename scalar_t>
TileKernels<scalar_t> tile_kernels() {
  if (cpu_has_avx2_fma()) {
    namespace k = avx2_or_base::infonce_tiles;
    return {&k::logits_tile<scalar_t>, &k::online_lse<scalar_t>, &k::weights_tile<scalar_t>,
            &k::weighted_candidates<scalar_t>, &k::weighted_anchors<scalar_t>};
  }
  namespace k = base::infonce_tiles;
  return {&k::logits_tile<scalar_t>, &k::online_lse<scalar_t>, &k::weights_tile<scalar_t>,
          &k::weighted_candidates<scalar_t>, &k::weighted_anchors<scalar_t>};
}

constexpr int64_t kColumnQuantum = 16;  // tile widths are multiples of two vectors of any variant
constexpr int64_t kLogitRows = base::infonce_tiles::kLogitRows;  // rows per logit kernel call
// Anchor rows per block: the forward keeps only 6 rows of logits at a time, so its blocks are
// long (one pass over the packed candidates per block); the backward keeps a whole block x tile
// of weights, sized for L1/L2.
constexpr int64_t kForwardBlockRows = 32 * kLogitRows;
constexpr int64_t kBackwardBlockRows = 8 * kLogitRows;
// Work units per call: enough for threads to even out a shared machine's stalls, and fixed, so
// that the cut (hence every rounding) does not depend on the number of threads.
constexpr int64_t kUnits = 16;
constexpr int64_t kMinWorkPerThread = int64_t(1) << 20;  // multiply-adds; less is not worth a thread

constexpr double kLog2e = 1.44269504088896340736;
constexpr double kLn2 = 0.693147180559945309417;

int64_t round_up(int64_t x, int64_t q) { return (x + q - 1) / q * q; }
int64_t ceil_div(int64_t x, int64_t q) { return (x + q - 1) / q; }

// How the B x M logits are cut: anchor blocks of `block` rows, candidate tiles of `tile`
// columns. A tile of packed candidates (d x tile) is sized to stay in L1/L2 while a whole block
// of anchors passes over it.
struct Layout {
  int64_t B, M, d;
  int64_t dp;  // d rounded up to a multiple of 8 (whole vectors in every variant), for row layouts
  int64_t block, num_blocks;
  int64_t tile, num_tiles;

  Layout(int64_t B_, int64_t M_, int64_t d_, int64_t block_)
      : B(B_), M(M_), d(d_), dp(round_up(d_, 8)), block(block_) {
    num_blocks = ceil_div(B, block);
    tile = std::clamp<int64_t>(16384 / std::max<int64_t>(d, 1) / kColumnQuantum * kColumnQuantum,
                               64, 256);
    num_tiles = ceil_div(M, tile);
  }
  int64_t rows_of(int64_t blk) const { return std::min(block, B - blk * block); }
  int64_t valid_of(int64_t t) const { return std::min(tile, M - t * tile); }
  int64_t width_of(int64_t t) const { return round_up(valid_of(t), kColumnQuantum); }
};

// Tile t of c transposed into out (d x tile): out[f][jj] = c[t * tile + jj][f], zero past M.
template <typename scalar_t>
void pack_tile_transposed(const scalar_t* c, const Layout& lay, int64_t t, scalar_t* out) {
  const int64_t d = lay.d, tile = lay.tile, valid = lay.valid_of(t);
  const scalar_t* src = c + t * tile * d;
  for (int64_t jj = 0; jj < valid; ++jj)
    for (int64_t f = 0; f < d; ++f) out[f * tile + jj] = src[jj * d + f];
  for (int64_t f = 0; f < d; ++f) std::fill(out + f * tile + valid, out + (f + 1) * tile, scalar_t(0));
}

// Tile t of c as rows padded to dp features (tile x dp), zero past M and past d: the weights
// multiply whole rows, and 0 * garbage could be NaN.
template <typename scalar_t>
void pack_tile_rows(const scalar_t* c, const Layout& lay, int64_t t, scalar_t* out) {
  const int64_t d = lay.d, dp = lay.dp, tile = lay.tile, valid = lay.valid_of(t);
  const scalar_t* src = c + t * tile * d;
  for (int64_t jj = 0; jj < valid; ++jj) {
    std::copy(src + jj * d, src + (jj + 1) * d, out + jj * dp);
    std::fill(out + jj * dp + d, out + (jj + 1) * dp, scalar_t(0));
  }
  std::fill(out + valid * dp, out + tile * dp, scalar_t(0));
}

// Every tile of c transposed: [num_tiles, d, tile].
template <typename scalar_t>
at::Tensor pack_candidates(const at::Tensor& c, const Layout& lay) {
  auto ct = at::empty({lay.num_tiles, lay.d, lay.tile}, c.options());
  const scalar_t* src = c.data_ptr<scalar_t>();
  scalar_t* dst = ct.data_ptr<scalar_t>();
  at::parallel_for(0, lay.num_tiles, std::max<int64_t>(1, 16384 / (lay.tile * std::max<int64_t>(lay.d, 1))),
                   [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) pack_tile_transposed(src, lay, t, dst + t * lay.d * lay.tile);
  });
  return ct;
}

// Splits [0, n) into `parts` contiguous ranges of nearly equal length; returns the i-th.
std::pair<int64_t, int64_t> part_range(int64_t n, int64_t parts, int64_t i) {
  return {n * i / parts, n * (i + 1) / parts};
}

// Runs work(u, buffers) for u in [0, units) on the intra-op threads, each taking the next unit
// when it is free; buffers = make_buffers(), once per thread. Units write disjoint outputs, so
// the order in which threads take them does not matter.
template <typename MakeBuffers, typename Work>
void run_units(int64_t units, int64_t total_work, const MakeBuffers& make_buffers,
               const Work& work) {
  const int64_t threads = std::max<int64_t>(
      1, std::min<int64_t>({int64_t(at::get_num_threads()), units, total_work / kMinWorkPerThread}));
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    auto buffers = make_buffers();
    for (int64_t u = next.fetch_add(1); u < units; u = next.fetch_add(1)) work(u, buffers);
  });
}

// a * log2(e) / tau: with it the logits come out in base 2, which the kernels' exp2 wants. The
// forward and the backward compute it identically, so their logits agree bit for bit.
at::Tensor base2_scaled(const at::Tensor& a, double temperature) {
  return a.mul(kLog2e / temperature);
}

// ---------------------------------------------------------------------------------------------
// forward

// a_scaled = a * log2(e) / tau: logits in base 2 (see vexp2).
template <typename scalar_t>
void forward_impl(const at::Tensor& a, const at::Tensor& a_scaled, const at::Tensor& b,
                  const at::Tensor& c, double temperature, at::Tensor& loss, at::Tensor& lse) {
  const Layout lay(a_scaled.size(0), c.size(0), a_scaled.size(1), kForwardBlockRows);
  const auto kernels = tile_kernels<scalar_t>();
  const at::Tensor ct = pack_candidates<scalar_t>(c, lay);
  const scalar_t* as = a_scaled.data_ptr<scalar_t>();
  const scalar_t* cts = ct.data_ptr<scalar_t>();
  const int64_t B = lay.B, d = lay.d;

  // Few anchor blocks (short B, long M): the tiles of each block are split into ranges whose
  // partial (max, sum) pairs are merged afterwards in range order.
  const int64_t splits =
      lay.num_blocks >= kUnits ? 1 : std::min(lay.num_tiles, ceil_div(kUnits, lay.num_blocks));
  std::vector<scalar_t> part_max(splits * B), part_sum(splits * B);
  run_units(lay.num_blocks * splits, B * lay.M * std::max<int64_t>(d, 1),
            [&] { return std::vector<scalar_t>(kLogitRows * lay.tile); },
            [&](int64_t u, std::vector<scalar_t>& buf) {
    const int64_t blk = u / splits, split = u % splits;
    const int64_t r0 = blk * lay.block, rows = lay.rows_of(blk);
    const auto [t0, t1] = part_range(lay.num_tiles, splits, split);
    scalar_t* m = part_max.data() + split * B + r0;
    scalar_t* l = part_sum.data() + split * B + r0;
    std::fill(m, m + rows, -std::numeric_limits<scalar_t>::infinity());
    std::fill(l, l + rows, scalar_t(0));
    for (int64_t t = t0; t < t1; ++t) {
      const scalar_t* ct_t = cts + t * d * lay.tile;
      const int64_t valid = lay.valid_of(t), width = lay.width_of(t);
      for (int64_t i = 0; i < rows; i += kLogitRows) {
        const int64_t n = std::min<int64_t>(kLogitRows, rows - i);
        kernels.logits(as + (r0 + i) * d, n, d, ct_t, lay.tile, valid, width, buf.data(), lay.tile);
        kernels.online_lse(buf.data(), n, width, lay.tile, m + i, l + i);
      }
    }
  });

  const scalar_t* a_p = a.data_ptr<scalar_t>();
  const scalar_t* bs = b.data_ptr<scalar_t>();
  const double inv_tau = 1.0 / temperature;
  scalar_t* loss_p = loss.data_ptr<scalar_t>();
  scalar_t* lse_p = lse.data_ptr<scalar_t>();
  at::parallel_for(0, B, 1024, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      // in double, so that lse is rounded once: the backward's weights are sensitive to it
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t s = 0; s < splits; ++s) mx = std::max(mx, double(part_max[s * B + k]));
      double sum = 0;
      for (int64_t s = 0; s < splits; ++s)
        sum += double(part_sum[s * B + k]) * std::exp2(double(part_max[s * B + k]) - mx);
      const double row_lse = (mx + std::log2(sum)) * kLn2;
      double positive = 0;
      for (int64_t f = 0; f < d; ++f) positive += double(a_p[k * d + f]) * double(bs[k * d + f]);
      lse_p[k] = scalar_t(row_lse);
      loss_p[k] = scalar_t(row_lse - positive * inv_tau);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// backward

// With g the upstream gradient and p_kj = exp(<a_k, c_j>/tau - lse_k):
//   grad_a_k = (sum_j g_k p_kj c_j - g_k b_k) / tau,  grad_b_k = -g_k a_k / tau,
//   grad_c_j = sum_k g_k p_kj a_k / tau.
// The anchor blocks are cut into `anchor_groups` ranges, the candidate tiles into
// `candidate_groups`; unit (i, j) takes anchor group i against candidate group j, tile by tile
// (a tile, packed once, meets every block of the group). Its share of grad_a goes to partial sum
// j (B x dp), its share of grad_c to partial sum i (M x d; or straight into grad_c when there
// is one anchor group), so units never write the same element; the partial sums are added in
// group order at the end. The partial sums are bounded by 2 (B + M) d on each side.
struct BackwardGroups {
  int64_t anchor_groups, candidate_groups;
};

BackwardGroups backward_groups(const Layout& lay) {
  const int64_t B = lay.B, M = lay.M;
  const int64_t most_candidate_groups = std::clamp<int64_t>(2 * (B + M) / B, 1, lay.num_tiles);
  const int64_t most_anchor_groups = std::clamp<int64_t>(2 * (B + M) / M, 1, lay.num_blocks);
  if (most_candidate_groups >= kUnits) return {1, kUnits};
  if (most_anchor_groups >= kUnits) return {kUnits, 1};
  return {std::min(most_anchor_groups, ceil_div(kUnits, most_candidate_groups)),
          most_candidate_groups};
}

template <typename scalar_t>
void backward_impl(const at::Tensor& grad, const at::Tensor& a_scaled, const at::Tensor& a,
                   const at::Tensor& b, const at::Tensor& c, const at::Tensor& lse,
                   double temperature, at::Tensor& grad_a, at::Tensor& grad_b,
                   at::Tensor& grad_c) {
  const Layout lay(a.size(0), c.size(0), a.size(1), kBackwardBlockRows);
  const int64_t B = lay.B, M = lay.M, d = lay.d, dp = lay.dp, tile = lay.tile;
  const auto kernels = tile_kernels<scalar_t>();
  const scalar_t* as = a_scaled.data_ptr<scalar_t>();
  const scalar_t* cs = c.data_ptr<scalar_t>();
  const scalar_t* gs = grad.data_ptr<scalar_t>();
  const scalar_t ln2 = scalar_t(kLn2);

  // The saved lse in base 2, like the logits, and the weights' row factor g_k. Rounding lse * log2(e)
  // would shift every weight of the row by the same relative error (~1e-7 * lse); the factor
  // 2^-(rounding error) in g_k takes it back out.
  std::vector<scalar_t> lse2(B), coef(B);
  const scalar_t* lse_p = lse.data_ptr<scalar_t>();
  for (int64_t k = 0; k < B; ++k) {
    const double exact = double(lse_p[k]) * kLog2e;
    lse2[k] = scalar_t(exact);
    coef[k] = scalar_t(double(gs[k]) * std::exp2(double(lse2[k]) - exact));
  }

  const auto [anchor_groups, candidate_groups] = backward_groups(lay);
  // sum_j g_k p_kj c_j per candidate group, and sum_k g_k p_kj a_k log2(e) / tau per anchor group
  auto ga_parts = at::zeros({candidate_groups, B, dp}, a.options());
  auto gc_parts = anchor_groups > 1 ? at::empty({anchor_groups, M, d}, a.options()) : grad_c;
  scalar_t* gap = ga_parts.data_ptr<scalar_t>();
  scalar_t* gcp = gc_parts.data_ptr<scalar_t>();

  // Per-thread working set: one tile of c in both layouts, its weights, its grad_c share.
  struct Buffers {
    std::vector<scalar_t> ct, cr, q, gct;
    explicit Buffers(const Layout& l)
        : ct(l.d * l.tile), cr(l.tile * l.dp), q(l.block * l.tile), gct(l.d * l.tile) {}
  };
  run_units(anchor_groups * candidate_groups, B * M * std::max<int64_t>(d, 1),
            [&] { return Buffers(lay); }, [&](int64_t u, Buffers& buf) {
    const int64_t group_a = u / candidate_groups, group_c = u % candidate_groups;
    const auto [b0, b1] = part_range(lay.num_blocks, anchor_groups, group_a);
    const auto [t0, t1] = part_range(lay.num_tiles, candidate_groups, group_c);
    scalar_t* ga = gap + group_c * B * dp;
    scalar_t* gc = gcp + group_a * M * d;
    // one anchor group: this is grad_c itself, so scale it here
    const scalar_t gc_scale = anchor_groups == 1 ? ln2 : scalar_t(1);
    scalar_t* q = buf.q.data();
    for (int64_t t = t0; t < t1; ++t) {
      pack_tile_transposed(cs, lay, t, buf.ct.data());
      pack_tile_rows(cs, lay, t, buf.cr.data());
      std::fill(buf.gct.begin(), buf.gct.end(), scalar_t(0));
      const int64_t valid = lay.valid_of(t), width = lay.width_of(t);
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t r0 = blk * lay.block, rows = lay.rows_of(blk);
        kernels.logits(as + r0 * d, rows, d, buf.ct.data(), tile, valid, width, q, tile);
        kernels.weights(q, rows, width, tile, lse2.data() + r0, coef.data() + r0);
        kernels.weighted_candidates(q, rows, tile, buf.cr.data(), width, dp, ga + r0 * dp);
        kernels.weighted_anchors(as + r0 * d, rows, d, q, tile, width, buf.gct.data(), tile);
      }
      for (int64_t jj = 0; jj < valid; ++jj)
        for (int64_t f = 0; f < d; ++f)
          gc[(t * tile + jj) * d + f] = buf.gct[f * tile + jj] * gc_scale;
    }
  });

  const int64_t row_grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1));
  scalar_t* grad_c_p = grad_c.data_ptr<scalar_t>();
  if (anchor_groups > 1) {
    at::parallel_for(0, M * d, row_grain * std::max<int64_t>(d, 1), [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) {
        scalar_t sum = 0;
        for (int64_t i = 0; i < anchor_groups; ++i) sum += gcp[i * M * d + e];
        grad_c_p[e] = sum * ln2;
      }
    });
  }
  const scalar_t inv_tau = scalar_t(1.0 / temperature);
  const scalar_t* a_p = a.data_ptr<scalar_t>();
  const scalar_t* b_p = b.data_ptr<scalar_t>();
  scalar_t* grad_a_p = grad_a.data_ptr<scalar_t>();
  scalar_t* grad_b_p = grad_b.data_ptr<scalar_t>();
  at::parallel_for(0, B, row_grain, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const scalar_t g = gs[k];
      for (int64_t f = 0; f < d; ++f) {
        scalar_t sum = 0;
        for (int64_t j = 0; j < candidate_groups; ++j) sum += gap[(j * B + k) * dp + f];
        grad_a_p[k * d + f] = (sum - g * b_p[k * d + f]) * inv_tau;
        grad_b_p[k * d + f] = -g * a_p[k * d + f] * inv_tau;
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> infonce(const at::Tensor& a, const at::Tensor& b,
                                           const at::Tensor& c, double temperature) {
  check_infonce_args(a, b, c, temperature, c10::DeviceType::CPU);
  auto loss = at::empty({a.size(0)}, a.options());
  auto lse = at::empty({a.size(0)}, a.options());
  if (a.size(0) == 0) return {loss, lse};
  const auto a_c = a.contiguous();
  const auto b_c = b.contiguous();
  const auto c_c = c.contiguous();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "irllrec_fast::infonce (CPU)", [&] {
    forward_impl<scalar_t>(a_c, base2_scaled(a_c, temperature), b_c, c_c, temperature, loss, lse);
  });
  return {loss, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> infonce_backward(
    const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b, const at::Tensor& c,
    const at::Tensor& lse, double temperature) {
  check_infonce_args(a, b, c, temperature, c10::DeviceType::CPU);
  check_infonce_row_vector(grad, "grad", a, c10::DeviceType::CPU);
  check_infonce_row_vector(lse, "lse", a, c10::DeviceType::CPU);
  auto grad_a = at::empty_like(a, at::MemoryFormat::Contiguous);
  auto grad_b = at::empty_like(b, at::MemoryFormat::Contiguous);
  auto grad_c = at::empty_like(c, at::MemoryFormat::Contiguous);
  if (a.size(0) == 0) {
    grad_c.zero_();
    return {grad_a, grad_b, grad_c};
  }
  const auto a_c = a.contiguous();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "irllrec_fast::infonce_backward (CPU)", [&] {
    backward_impl<scalar_t>(grad.contiguous(), base2_scaled(a_c, temperature), a_c,
                            b.contiguous(), c.contiguous(), lse.contiguous(), temperature, grad_a,
                            grad_b, grad_c);
  });
  return {grad_a, grad_b, grad_c};
}

}  // namespace cpu
}  // namespace irllrec_fast

TORCH_LIBRARY_IMPL(irllrec_fast, CPU, m) {
  m.impl("infonce", &irllrec_fast::cpu::infonce);
  m.impl("infonce_backward", &irllrec_fast::cpu::infonce_backward);
}
