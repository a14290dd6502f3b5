// Tensor-core kernels of `infonce` for float32 (sm_80 and newer), included by infonce.cu.
//
// The same three passes as the SIMT kernels there (forward partial log-sum-exp, grad_a and
// grad_c partial sums, in base 2 from the anchors pre-scaled by log2(e) / tau), with every product
// on the tensor cores through WMMA m16n16k8 TF32 fragments. TF32 keeps 10 mantissa bits. By
// default (kCompensated) each operand is split as x = hi + lo (hi = tf32(x), lo = tf32(x - hi))
// and a product is accumulated as lo*hi + hi*lo + hi*hi ("3xTF32"): float32-level accuracy at a
// third of the TF32 rate. When the user allows TF32 matmuls
// (torch.backends.cuda.matmul.allow_tf32, or its fp32_precision = "tf32"), every product is a
// single TF32 one, as in torch's own matmuls under that switch.
//
// A block is 4 warps over a 64 x 64 logit tile; warp w computes rows 16w..16w+15 of it into
// shared memory with one routine (warp_logits) in every kernel, so the three passes see the very
// same logits. Features are zero-padded to NF * 16 (NF in {1, 2, 4, 8}, d <= 128).
#pragma once

#include <ATen/Context.h>
#include <torch/version.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace irllrec_fast {
namespace cuda {
namespace tensor_core {

namespace wmma = nvcuda::wmma;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kTile = 64;
constexpr int kMaxFeatures = 128;

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragAT = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragBT = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;

// Shared-memory geometry for NF: rows of padded features, plus 4 floats so that consecutive rows
// start on different banks (and stay 16-byte aligned, as WMMA wants).
template <int NF>
struct Layout {
  static constexpr int kFeatures = NF * 16;
  static constexpr int kLdx = kFeatures + 4;                                     // As, Cs
  static constexpr int kLdp = (kFeatures > kTile ? kFeatures : kTile) + 4;       // Ps
  static constexpr int kFloats = 2 * kTile * kLdx + kTile * kLdp;
  static constexpr size_t kBytes = sizeof(float) * kFloats;
};

// Loads hi from shared memory and rounds it to TF32: hi = tf32(x), and with kCompensated
// lo = tf32(x - hi) (else lo is left alone and unused).
template <bool kCompensated, typename Frag>
__device__ __forceinline__ void load_split(Frag& hi, Frag& lo, const float* p, int ld) {
  wmma::load_matrix_sync(hi, p, ld);
#pragma unroll
  for (int i = 0; i < hi.num_elements; ++i) {
    const float x = hi.x[i];
    const float h = wmma::__float_to_tf32(x);
    hi.x[i] = h;
    if constexpr (kCompensated) lo.x[i] = wmma::__float_to_tf32(x - h);
  }
}

// acc += a b: with kCompensated as three TF32 products, the small cross terms first.
template <bool kCompensated, typename A, typename B>
__device__ __forceinline__ void mma_accumulate(FragAcc& acc, const A& a_hi, const A& a_lo,
                                               const B& b_hi, const B& b_lo) {
  if constexpr (kCompensated) {
    wmma::mma_sync(acc, a_lo, b_hi, acc);
    wmma::mma_sync(acc, a_hi, b_lo, acc);
  }
  wmma::mma_sync(acc, a_hi, b_hi, acc);
}

// acc += part, element by element in float32 (round to nearest). The tensor cores' own
// accumulation drops low bits of same-signed sums, a bias that grows with the length of the chain
// (3e-4 relative over 4096 anchors); so each tile's products are summed in a fresh fragment, a
// chain of 3 * 64 / 8 products, and only tile totals are chained, here.
template <int NF>
__device__ __forceinline__ void add_tile(FragAcc (&acc)[NF], const FragAcc (&part)[NF]) {
#pragma unroll
  for (int f = 0; f < NF; ++f)
#pragma unroll
    for (int i = 0; i < acc[f].num_elements; ++i) acc[f].x[i] += part[f].x[i];
}

// acc += P X for one tile, summed over its 64 rows k of X (x, leading dimension kLdx): P's 16 x 8
// fragment for rows k0.. starts at p + k0 * p_step (row-major P: step 1; P read transposed from a
// row-major tile: step kLdp).
template <int NF, bool kCompensated, typename FragP>
__device__ __forceinline__ void accumulate_tile(FragAcc (&acc)[NF], const float* p, int p_step,
                                                const float* x) {
  constexpr int ldx = Layout<NF>::kLdx;
  FragAcc part[NF];
#pragma unroll
  for (int f = 0; f < NF; ++f) wmma::fill_fragment(part[f], 0.f);
#pragma unroll
  for (int k0 = 0; k0 < kTile; k0 += 8) {
    FragP p_hi, p_lo;
    load_split<kCompensated>(p_hi, p_lo, p + k0 * p_step, Layout<NF>::kLdp);
#pragma unroll
    for (int f = 0; f < NF; ++f) {
      FragB x_hi, x_lo;
      load_split<kCompensated>(x_hi, x_lo, x + k0 * ldx + f * 16, ldx);
      mma_accumulate<kCompensated>(part[f], p_hi, p_lo, x_hi, x_lo);
    }
  }
  add_tile(acc, part);
}

// Rows [row0, row0 + 64) of x (n x d) into s (64 x kFeatures, leading dimension kLdx), zero
// outside x. Block-wide; consecutive threads read consecutive features.
template <int NF>
__device__ __forceinline__ void stage_rows(const float* __restrict__ x, int64_t n, int64_t d,
                                           int64_t row0, float* s) {
  constexpr int F = Layout<NF>::kFeatures;
  for (int idx = threadIdx.x; idx < kTile * F; idx += kThreads) {
    const int r = idx / F, k = idx % F;
    const int64_t gr = row0 + r;
    s[r * Layout<NF>::kLdx + k] = (gr < n && k < d) ? x[gr * d + k] : 0.f;
  }
}

// Logits of the warp's 16 anchor rows against the tile's 64 candidates into out (16 x 64,
// leading dimension kLdp).
template <int NF, bool kCompensated>
__device__ __forceinline__ void warp_logits(const float* As, const float* Cs, float* out) {
  constexpr int ld = Layout<NF>::kLdx;
  const int w = threadIdx.x / 32;
  FragAcc acc[kTile / 16];
#pragma unroll
  for (int j = 0; j < kTile / 16; ++j) wmma::fill_fragment(acc[j], 0.f);
#pragma unroll
  for (int k0 = 0; k0 < NF * 16; k0 += 8) {
    FragA a_hi, a_lo;
    load_split<kCompensated>(a_hi, a_lo, As + w * 16 * ld + k0, ld);
#pragma unroll
    for (int j = 0; j < kTile / 16; ++j) {
      FragBT c_hi, c_lo;  // C^T: column n of it is row n of the candidate tile
      load_split<kCompensated>(c_hi, c_lo, Cs + j * 16 * ld + k0, ld);
      mma_accumulate<kCompensated>(acc[j], a_hi, a_lo, c_hi, c_lo);
    }
  }
#pragma unroll
  for (int j = 0; j < kTile / 16; ++j)
    wmma::store_matrix_sync(out + j * 16, acc[j], Layout<NF>::kLdp, wmma::mem_row_major);
}

// The warp's 16 x 64 logits in place into weights p = exp2(logit - shift_r) factor_r for real
// rows and columns, zero elsewhere. Lane pair (2r, 2r + 1) owns row r, alternate columns.
template <int NF>
__device__ __forceinline__ void logits_to_weights(float* s, bool row_ok, float shift, float factor,
                                                  int64_t col0, int64_t M) {
  const int lane = threadIdx.x % 32, r = lane >> 1, half = lane & 1;
#pragma unroll 8
  for (int j = 0; j < kTile / 2; ++j) {
    const int col = 2 * j + half;
    float& x = s[r * Layout<NF>::kLdp + col];
    x = (row_ok && col0 + col < M) ? exp2f(x - shift) * factor : 0.f;
  }
}

// Writes a warp's 16 x (NF * 16) accumulators through its shared scratch rows to
// dst[(first + i) * d + k] for first + i < n, k < d.
template <int NF>
__device__ __forceinline__ void store_rows(FragAcc (&acc)[NF], float* scratch, float* dst,
                                           int64_t first, int64_t n, int64_t d) {
  constexpr int ld = Layout<NF>::kLdp;
#pragma unroll
  for (int f = 0; f < NF; ++f) wmma::store_matrix_sync(scratch + f * 16, acc[f], ld, wmma::mem_row_major);
  __syncwarp();
  const int lane = threadIdx.x % 32;
  for (int64_t idx = lane; idx < 16 * d; idx += 32) {
    const int64_t i = idx / d, k = idx % d;
    if (first + i < n) dst[(first + i) * d + k] = scratch[i * ld + k];
  }
}

// Tiles [first, last) of `count` tiles that split `s` of `splits` covers.
__device__ __forceinline__ void split_range(int64_t count, int64_t splits, int64_t s,
                                            int64_t& first, int64_t& last) {
  first = count * s / splits;
  last = count * (s + 1) / splits;
}

// Block (anchor tile x, split y): running (max, sum of exp2(logit - max)) of its rows over the
// split's candidate tiles into part_max / part_sum [splits, B].
template <int NF, bool kCompensated>
__global__ void __launch_bounds__(kThreads)
forward_kernel(const float* __restrict__ as, const float* __restrict__ c, int64_t B, int64_t M,
               int64_t d, float* __restrict__ part_max, float* __restrict__ part_sum) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ __align__(128) float smem[];
  float* As = smem;
  float* Cs = As + kTile * Layout<NF>::kLdx;
  float* Ps = Cs + kTile * Layout<NF>::kLdx;
  constexpr int ldp = Layout<NF>::kLdp;
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane >> 1, half = lane & 1;
  const int64_t row0 = int64_t(blockIdx.x) * kTile;
  float* Sw = Ps + w * 16 * ldp;
  int64_t t0, t1;
  split_range((M + kTile - 1) / kTile, gridDim.y, blockIdx.y, t0, t1);
  stage_rows<NF>(as, B, d, row0, As);

  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float m = kNegInf, l = 0.f;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t col0 = t * kTile;
    __syncthreads();  // As staged; the previous tile's Cs no longer read
    stage_rows<NF>(c, M, d, col0, Cs);
    __syncthreads();
    warp_logits<NF, kCompensated>(As, Cs, Sw);
    __syncwarp();
    float v[kTile / 2];
    float tile_max = kNegInf;
#pragma unroll
    for (int j = 0; j < kTile / 2; ++j) {
      const int col = 2 * j + half;
      v[j] = col0 + col < M ? Sw[r * ldp + col] : kNegInf;
      tile_max = fmaxf(tile_max, v[j]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    const float m_new = fmaxf(m, tile_max);  // finite: a tile has a real column
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < kTile / 2; ++j) sum += exp2f(v[j] - m_new);
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);  // a + b == b + a: both lanes agree
    l = l * (m_new == m ? 1.f : exp2f(m - m_new)) + sum;
    m = m_new;
    __syncwarp();  // Sw is rewritten by the next tile
  }
  const int64_t row = row0 + w * 16 + r;
  if (half == 0 && row < B) {
    part_max[blockIdx.y * B + row] = m;
    part_sum[blockIdx.y * B + row] = l;
  }
#endif
}

// Block (anchor tile x, split y): sum over the split's candidates of p_kj c_j for its rows into
// dst + y * B * d.
template <int NF, bool kCompensated>
__global__ void __launch_bounds__(kThreads)
grad_a_kernel(const float* __restrict__ as, const float* __restrict__ c,
              const float* __restrict__ lse2, const float* __restrict__ coef, int64_t B,
              int64_t M, int64_t d, float* __restrict__ dst) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ __align__(128) float smem[];
  constexpr int ldx = Layout<NF>::kLdx, ldp = Layout<NF>::kLdp;
  float* As = smem;
  float* Cs = As + kTile * ldx;
  float* Ps = Cs + kTile * ldx;
  const int w = threadIdx.x / 32, r = (threadIdx.x % 32) >> 1;
  const int64_t row0 = int64_t(blockIdx.x) * kTile;
  float* Sw = Ps + w * 16 * ldp;
  int64_t t0, t1;
  split_range((M + kTile - 1) / kTile, gridDim.y, blockIdx.y, t0, t1);
  stage_rows<NF>(as, B, d, row0, As);
  const int64_t row = row0 + w * 16 + r;
  const bool row_ok = row < B;
  const float shift = row_ok ? lse2[row] : 0.f, factor = row_ok ? coef[row] : 0.f;

  FragAcc acc[NF];
#pragma unroll
  for (int f = 0; f < NF; ++f) wmma::fill_fragment(acc[f], 0.f);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t col0 = t * kTile;
    __syncthreads();
    stage_rows<NF>(c, M, d, col0, Cs);
    __syncthreads();
    warp_logits<NF, kCompensated>(As, Cs, Sw);
    __syncwarp();
    logits_to_weights<NF>(Sw, row_ok, shift, factor, col0, M);
    __syncwarp();
    accumulate_tile<NF, kCompensated, FragA>(acc, Sw, 1, Cs);  // k: the tile's candidates
    __syncwarp();
  }
  store_rows<NF>(acc, Sw, dst + int64_t(blockIdx.y) * B * d, row0 + w * 16, B, d);
#endif
}

// Block (candidate tile x, split y): sum over the split's anchors of p_kj as_k for its
// candidates into dst + y * M * d. The logits are formed exactly as in the other two kernels
// (anchor rows per warp); after a block barrier, warp w takes candidates 16w..16w+15.
template <int NF, bool kCompensated>
__global__ void __launch_bounds__(kThreads)
grad_c_kernel(const float* __restrict__ as, const float* __restrict__ c,
              const float* __restrict__ lse2, const float* __restrict__ coef, int64_t B,
              int64_t M, int64_t d, float* __restrict__ dst) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ __align__(128) float smem[];
  constexpr int ldx = Layout<NF>::kLdx, ldp = Layout<NF>::kLdp;
  float* As = smem;
  float* Cs = As + kTile * ldx;
  float* Ps = Cs + kTile * ldx;
  const int w = threadIdx.x / 32, r = (threadIdx.x % 32) >> 1;
  const int64_t col0 = int64_t(blockIdx.x) * kTile;
  float* Sw = Ps + w * 16 * ldp;
  int64_t t0, t1;
  split_range((B + kTile - 1) / kTile, gridDim.y, blockIdx.y, t0, t1);
  stage_rows<NF>(c, M, d, col0, Cs);

  FragAcc acc[NF];
#pragma unroll
  for (int f = 0; f < NF; ++f) wmma::fill_fragment(acc[f], 0.f);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t row0 = t * kTile;
    __syncthreads();  // Cs staged; the previous tile's As and Ps no longer read
    stage_rows<NF>(as, B, d, row0, As);
    __syncthreads();
    warp_logits<NF, kCompensated>(As, Cs, Sw);
    __syncwarp();
    const int64_t row = row0 + w * 16 + r;
    const bool row_ok = row < B;
    logits_to_weights<NF>(Sw, row_ok, row_ok ? lse2[row] : 0.f, row_ok ? coef[row] : 0.f, col0, M);
    __syncthreads();  // every warp's rows of p in place
    // k: the tile's anchors; p^T's rows are this warp's candidates
    accumulate_tile<NF, kCompensated, FragAT>(acc, Ps + w * 16, ldp, As);
  }
  __syncthreads();  // Ps is reused as the output scratch
  store_rows<NF>(acc, Sw, dst + int64_t(blockIdx.y) * M * d, col0 + w * 16, M, d);
#endif
}

// Features padded to NF * 16 with NF a power of two; 0 when d is too wide for these kernels.
inline int feature_fragments(int64_t d) {
  for (int nf = 1; nf * 16 <= kMaxFeatures; nf *= 2)
    if (d <= nf * 16) return nf;
  return 0;
}

// Calls f(std::integral_constant<int, NF>{}, std::bool_constant<kCompensated>{}) for nf in
// {1, 2, 4, 8}.
template <typename F>
void dispatch_kernels(int nf, bool compensated, F&& f) {
  const auto with_precision = [&](auto nf_constant) {
    if (compensated)
      f(nf_constant, std::true_type{});
    else
      f(nf_constant, std::false_type{});
  };
  switch (nf) {
    case 1: with_precision(std::integral_constant<int, 1>{}); break;
    case 2: with_precision(std::integral_constant<int, 2>{}); break;
    case 4: with_precision(std::integral_constant<int, 4>{}); break;
    default: with_precision(std::integral_constant<int, 8>{}); break;
  }
}

// 3xTF32 unless the user allowed TF32 matmuls, decided as torch's own cuBLAS handle decides, so
// that either of torch's switches works: the legacy torch.backends.cuda.matmul.allow_tf32 and,
// from torch 2.9, fp32_precision = "tf32". (allowTF32CuBLAS() is not enough there: it raises when
// only the new switch was set.) at::NoTF32Guard turns TF32 off as it does for torch's matmuls.
// The forward and the backward read the switch when they run, so flipping it between them makes
// the backward's softmax weights sum to 1 only to TF32 accuracy.
inline bool compensated_products() {
  if (at::NoTF32Guard::should_disable_tf32()) return true;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 10)
  return at::globalContext().float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL) !=
         at::Float32Precision::TF32;
#elif TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR == 9
  return at::globalContext().float32Precision("cuda", "matmul") != "tf32";
#else
  return !at::globalContext().allowTF32CuBLAS();
#endif
}

}  // namespace tensor_core
}  // namespace cuda
}  // namespace irllrec_fast
