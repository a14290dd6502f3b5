// CUDA kernels of `infonce`: per row k, loss_k = -<a_k, b_k>/tau + lse_k with
// lse_k = log sum_j exp(<a_k, c_j>/tau), and the backward from the saved lse.
//
// Flash-attention style: a block owns a 64 x 64 tile of logits at a time and never writes it
// out. The tile is accumulated from d in chunks staged in shared memory (any d), each thread
// holding a 4 x 4 sub-tile in registers (rows ty + 16 i, columns tx + 16 j, so that a row's 16
// threads are one half-warp and row reductions are xor shuffles, which leave every lane with the
// same bits).
//   forward: blocks over (anchor tile, candidate split); each keeps a running maximum and sum
//            per row over its candidate tiles (online log-sum-exp), and a small kernel merges the
//            splits in order and adds the positive term;
//   grad_a:  blocks over (anchor tile, candidate split), recomputing each logit tile, turning it
//            into weights p = exp(logit - lse) g in shared memory, and accumulating p c;
//   grad_c:  blocks over (candidate tile, anchor split), the same with p^T a.
// A split's partial sums go to their own buffer, summed in split order by an elementwise kernel,
// so every element is written by one thread: no atomics, bitwise reproducible. With one split
// the partial sums are the output itself. Logits are in base 2 (a scaled by log2(e) / tau) for
// exp2; the same fma sequence gives the same logits in all three kernels.
//
// These SIMT kernels serve float64 and d > 128. float32 with d <= 128 on sm_80+ runs the
// tensor-core twins of infonce_tensor_core.cuh (same partial sums, same finish kernels).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include "../checks.h"
#include "../op_checks.h"
#include "infonce_tensor_core.cuh"
#include "launch_utils.cuh"

namespace irllrec_fast {
namespace cuda {
namespace {

constexpr int kThreads = 256;  // 16 x 16
constexpr int kTile = 64;      // anchors per anchor tile = candidates per candidate tile
constexpr int kLd = kTile + 1;  // shared row stride: column walks hit distinct banks
constexpr double kLog2e = 1.44269504088896340736;
constexpr double kLn2 = 0.693147180559945309417;

// Features per shared-memory chunk: the weights tile plus one chunk stay under 48 KB in double.
template <typename T>
constexpr int kChunk = 128 / int(sizeof(T));

__device__ __forceinline__ float exp2_(float x) { return exp2f(x); }
__device__ __forceinline__ double exp2_(double x) { return exp2(x); }

template <typename T>
__device__ __forceinline__ T half_warp_max(T v) {
#pragma unroll
  for (int off = 8; off > 0; off >>= 1) v = max(v, __shfl_xor_sync(kFullMask, v, off));
  return v;
}

template <typename T>
__device__ __forceinline__ T half_warp_sum(T v) {
#pragma unroll
  for (int off = 8; off > 0; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}

// Stages features [k0, k0 + chunk) of rows [row0, row0 + 64) of x (n x d) into s[k][r], zero
// outside x. Consecutive threads read consecutive features of a row: coalesced.
template <typename T>
__device__ __forceinline__ void stage_chunk(const T* __restrict__ x, int64_t n, int64_t d,
                                            int64_t row0, int64_t k0, T* s) {
  constexpr int C = kChunk<T>;
  for (int idx = threadIdx.x; idx < kTile * C; idx += kThreads) {
    const int r = idx / C, k = idx % C;
    const int64_t gr = row0 + r, gk = k0 + k;
    s[k * kLd + r] = (gr < n && gk < d) ? x[gr * d + gk] : T(0);
  }
}

// out[i][j] = <as[row0 + ty + 16 i], c[col0 + tx + 16 j]> (zero rows past B / M). Ends synced.
template <typename T>
__device__ __forceinline__ void logit_tile(const T* __restrict__ as, const T* __restrict__ c,
                                           int64_t B, int64_t M, int64_t d, int64_t row0,
                                           int64_t col0, T* As, T* Cs, T (&out)[4][4]) {
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) out[i][j] = T(0);
  for (int64_t k0 = 0; k0 < d; k0 += kChunk<T>) {
    stage_chunk(as, B, d, row0, k0, As);
    stage_chunk(c, M, d, col0, k0, Cs);
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kChunk<T>; ++k) {
      T av[4], cv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = As[k * kLd + ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) cv[j] = Cs[k * kLd + tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) out[i][j] = fma(av[i], cv[j], out[i][j]);
    }
    __syncthreads();
  }
}

using tensor_core::split_range;  // both kernel families cut the inner loop the same way

// ---------------------------------------------------------------------------------------------
// forward

// Block (anchor tile x, split y): running (max, sum of exp2(logit - max)) of its rows over the
// split's candidate tiles, into part_max / part_sum [splits, B].
template <typename T>
__global__ void __launch_bounds__(kThreads)
infonce_forward_kernel(const T* __restrict__ as, const T* __restrict__ c, int64_t B, int64_t M,
                       int64_t d, T* __restrict__ part_max, T* __restrict__ part_sum) {
  __shared__ T As[kChunk<T> * kLd];
  __shared__ T Cs[kChunk<T> * kLd];
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t row0 = int64_t(blockIdx.x) * kTile;
  int64_t t0, t1;
  split_range((M + kTile - 1) / kTile, gridDim.y, blockIdx.y, t0, t1);

  T m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -std::numeric_limits<T>::infinity();
    l[i] = T(0);
  }
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t col0 = t * kTile;
    T s[4][4];
    logit_tile(as, c, B, M, d, row0, col0, As, Cs, s);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (col0 + tx + 16 * j >= M)
#pragma unroll
        for (int i = 0; i < 4; ++i) s[i][j] = -std::numeric_limits<T>::infinity();
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      T tile_max = max(max(s[i][0], s[i][1]), max(s[i][2], s[i][3]));
      const T m_new = max(m[i], half_warp_max(tile_max));  // finite: a tile has a real column
      T sum = T(0);
#pragma unroll
      for (int j = 0; j < 4; ++j) sum += exp2_(s[i][j] - m_new);
      sum = half_warp_sum(sum);
      l[i] = l[i] * (m_new == m[i] ? T(1) : exp2_(m[i] - m_new)) + sum;
      m[i] = m_new;
    }
  }
  if (tx == 0) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t r = row0 + ty + 16 * i;
      if (r < B) {
        part_max[blockIdx.y * B + r] = m[i];
        part_sum[blockIdx.y * B + r] = l[i];
      }
    }
  }
}

// One warp per row: merges the splits in order (in double), adds the positive term.
template <typename T>
__global__ void __launch_bounds__(kThreads)
infonce_forward_finish_kernel(const T* __restrict__ a, const T* __restrict__ b,
                              const T* __restrict__ part_max, const T* __restrict__ part_sum,
                              int64_t B, int64_t d, int64_t splits, double inv_tau,
                              T* __restrict__ loss, T* __restrict__ lse) {
  const int64_t r = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (r >= B) return;  // whole warps: kThreads is a multiple of 32
  double positive = 0;
  for (int64_t k = lane; k < d; k += kWarpSize) positive += double(a[r * d + k]) * double(b[r * d + k]);
#pragma unroll
  for (int off = kWarpSize / 2; off > 0; off >>= 1)
    positive += __shfl_xor_sync(kFullMask, positive, off);
  if (lane != 0) return;
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t s = 0; s < splits; ++s) mx = fmax(mx, double(part_max[s * B + r]));
  double sum = 0;
  for (int64_t s = 0; s < splits; ++s)
    sum += double(part_sum[s * B + r]) * exp2(double(part_max[s * B + r]) - mx);
  const double row_lse = (mx + log2(sum)) * kLn2;
  lse[r] = T(row_lse);
  loss[r] = T(row_lse - positive * inv_tau);
}

// ---------------------------------------------------------------------------------------------
// backward

// Weights of one logit tile into Ps[r][n] = exp2(logit - lse2_r) coef_r, zero outside B x M.
template <typename T>
__device__ __forceinline__ void weights_to_shared(const T (&s)[4][4], const T* __restrict__ lse2,
                                                  const T* __restrict__ coef, int64_t B,
                                                  int64_t M, int64_t row0, int64_t col0, T* Ps) {
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = row0 + ty + 16 * i;
    const bool row_ok = r < B;
    const T shift = row_ok ? lse2[r] : T(0);
    const T factor = row_ok ? coef[r] : T(0);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const bool ok = row_ok && col0 + tx + 16 * j < M;
      Ps[(ty + 16 * i) * kLd + tx + 16 * j] = ok ? exp2_(s[i][j] - shift) * factor : T(0);
    }
  }
}

// Block (anchor tile x, split y): sum over the split's candidates of p_kj c_j for its rows, into
// dst + y * B * d (rows x d). Each element has one owner thread, which also zeroes it first.
template <typename T>
__global__ void __launch_bounds__(kThreads)
infonce_grad_a_kernel(const T* __restrict__ as, const T* __restrict__ c,
                      const T* __restrict__ lse2, const T* __restrict__ coef, int64_t B,
                      int64_t M, int64_t d, T* __restrict__ dst) {
  constexpr int C = kChunk<T>;
  __shared__ T Ps[kTile * kLd];  // the logit tile's anchor chunk lives here until p replaces it
  __shared__ T Cs[C * kLd];
  T* As = Ps;
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t row0 = int64_t(blockIdx.x) * kTile;
  T* out = dst + int64_t(blockIdx.y) * B * d;
  int64_t t0, t1;
  split_range((M + kTile - 1) / kTile, gridDim.y, blockIdx.y, t0, t1);

  for (int64_t t = t0; t < t1; ++t) {
    const int64_t col0 = t * kTile;
    T s[4][4];
    logit_tile(as, c, B, M, d, row0, col0, As, Cs, s);
    weights_to_shared(s, lse2, coef, B, M, row0, col0, Ps);
    for (int64_t k0 = 0; k0 < d; k0 += C) {
      stage_chunk(c, M, d, col0, k0, Cs);
      __syncthreads();
      T acc[4][C / 16];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < C / 16; ++j) acc[i][j] = T(0);
#pragma unroll 4
      for (int n = 0; n < kTile; ++n) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const T p = Ps[(ty + 16 * i) * kLd + n];
#pragma unroll
          for (int j = 0; j < C / 16; ++j) acc[i][j] = fma(p, Cs[(tx + 16 * j) * kLd + n], acc[i][j]);
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t r = row0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < C / 16; ++j) {
          const int64_t k = k0 + tx + 16 * j;
          if (r < B && k < d) out[r * d + k] = (t == t0 ? T(0) : out[r * d + k]) + acc[i][j];
        }
      }
      __syncthreads();  // Cs and Ps are rewritten next
    }
  }
}

// Block (candidate tile x, split y): sum over the split's anchors of p_kj as_k for its
// candidates, into dst + y * M * d. The mirror image of infonce_grad_a_kernel.
template <typename T>
__global__ void __launch_bounds__(kThreads)
infonce_grad_c_kernel(const T* __restrict__ as, const T* __restrict__ c,
                      const T* __restrict__ lse2, const T* __restrict__ coef, int64_t B,
                      int64_t M, int64_t d, T* __restrict__ dst) {
  constexpr int C = kChunk<T>;
  __shared__ T Ps[kTile * kLd];  // the logit tile's candidate chunk lives here until p replaces it
  __shared__ T As[C * kLd];
  T* Cs = Ps;
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t col0 = int64_t(blockIdx.x) * kTile;
  T* out = dst + int64_t(blockIdx.y) * M * d;
  int64_t t0, t1;
  split_range((B + kTile - 1) / kTile, gridDim.y, blockIdx.y, t0, t1);

  for (int64_t t = t0; t < t1; ++t) {
    const int64_t row0 = t * kTile;
    T s[4][4];
    logit_tile(as, c, B, M, d, row0, col0, As, Cs, s);
    weights_to_shared(s, lse2, coef, B, M, row0, col0, Ps);
    for (int64_t k0 = 0; k0 < d; k0 += C) {
      stage_chunk(as, B, d, row0, k0, As);
      __syncthreads();
      T acc[4][C / 16];  // candidates tx + 16 j, features ty + 16 i
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int i = 0; i < C / 16; ++i) acc[j][i] = T(0);
#pragma unroll 4
      for (int r = 0; r < kTile; ++r) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const T p = Ps[r * kLd + tx + 16 * j];
#pragma unroll
          for (int i = 0; i < C / 16; ++i) acc[j][i] = fma(p, As[(ty + 16 * i) * kLd + r], acc[j][i]);
        }
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t n = col0 + tx + 16 * j;
#pragma unroll
        for (int i = 0; i < C / 16; ++i) {
          const int64_t k = k0 + ty + 16 * i;
          if (n < M && k < d) out[n * d + k] = (t == t0 ? T(0) : out[n * d + k]) + acc[j][i];
        }
      }
      __syncthreads();
    }
  }
}

// grad_a = (sum over splits of part - g b) / tau and grad_b = -g a / tau, elementwise. With one
// split, part is grad_a itself (each element read, then written, by one thread).
template <typename T>
__global__ void __launch_bounds__(kThreads)
infonce_grad_ab_finish_kernel(const T* part, const T* __restrict__ a, const T* __restrict__ b,
                              const T* __restrict__ g, int64_t B, int64_t d, int64_t splits,
                              T inv_tau, T* grad_a, T* __restrict__ grad_b) {
  const int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (e >= B * d) return;
  const T gr = g[e / d];
  T sum = part[e];
  for (int64_t s = 1; s < splits; ++s) sum += part[s * B * d + e];
  grad_a[e] = (sum - gr * b[e]) * inv_tau;
  grad_b[e] = -gr * a[e] * inv_tau;
}

// grad_c = ln 2 * (sum over splits of part): the logits' log2(e) / tau scale of a, back to 1 / tau.
template <typename T>
__global__ void __launch_bounds__(kThreads)
infonce_grad_c_finish_kernel(const T* part, int64_t n, int64_t splits, T* grad_c) {
  const int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (e >= n) return;
  T sum = part[e];
  for (int64_t s = 1; s < splits; ++s) sum += part[s * n + e];
  grad_c[e] = sum * T(kLn2);
}

// ---------------------------------------------------------------------------------------------
// launchers

int64_t tiles(int64_t n) { return (n + kTile - 1) / kTile; }

// Splits of the inner loop so that about `per_sm` blocks per SM are busy; at least one tile each.
int64_t splits_for(int64_t outer_tiles, int64_t inner_tiles, int device, int per_sm) {
  const int64_t target = per_sm * int64_t(num_sms(device));
  const int64_t want = (target + outer_tiles - 1) / outer_tiles;
  return std::max<int64_t>(1, std::min<int64_t>({want, inner_tiles, 65535}));
}

int64_t blocks_for(int64_t threads) { return (threads + kThreads - 1) / kThreads; }

static_assert(tensor_core::kTile == kTile, "both kernel families cut B and M into the same tiles");

// float32 with d <= 128 on sm_80+ runs on the tensor cores (3xTF32, or TF32 when the user allows
// it); the rest on the SIMT kernels.
bool use_tensor_cores(const at::Tensor& a) {
  if (a.scalar_type() != at::kFloat || tensor_core::feature_fragments(a.size(1)) == 0) return false;
  int major = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, a.get_device()));
  return major >= 8;
}

// Tensor-core blocks are half the size of the SIMT ones: twice as many per SM.
int blocks_per_sm(bool tensor_cores) { return tensor_cores ? 4 : 2; }

std::tuple<at::Tensor, at::Tensor> infonce(const at::Tensor& a, const at::Tensor& b,
                                           const at::Tensor& c, double temperature) {
  check_infonce_args(a, b, c, temperature, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(a.device());
  const int64_t B = a.size(0), M = c.size(0), d = a.size(1);
  auto loss = at::empty({B}, a.options());
  auto lse = at::empty({B}, a.options());
  if (B == 0) return {loss, lse};
  const auto a_c = a.contiguous(), b_c = b.contiguous(), c_c = c.contiguous();
  const auto a_scaled = a_c.mul(kLog2e / temperature);
  const bool tc = use_tensor_cores(a);
  const int64_t splits = splits_for(tiles(B), tiles(M), a.get_device(), blocks_per_sm(tc));
  auto part_max = at::empty({splits, B}, a.options());
  auto part_sum = at::empty({splits, B}, a.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  if (tc) {
    tensor_core::dispatch_kernels(tensor_core::feature_fragments(d),
                                  tensor_core::compensated_products(), [&](auto nf, auto comp) {
      constexpr int NF = decltype(nf)::value;
      const auto kernel = tensor_core::forward_kernel<NF, decltype(comp)::value>;
      const size_t bytes = tensor_core::Layout<NF>::kBytes;
      raise_shared_limit(kernel, bytes);
      kernel<<<dim3(tiles(B), splits), tensor_core::kThreads, bytes, stream>>>(
          a_scaled.data_ptr<float>(), c_c.data_ptr<float>(), B, M, d,
          part_max.data_ptr<float>(), part_sum.data_ptr<float>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "irllrec_fast::infonce (CUDA)", [&] {
    if (!tc) {
      infonce_forward_kernel<scalar_t><<<dim3(tiles(B), splits), kThreads, 0, stream>>>(
          a_scaled.data_ptr<scalar_t>(), c_c.data_ptr<scalar_t>(), B, M, d,
          part_max.data_ptr<scalar_t>(), part_sum.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    infonce_forward_finish_kernel<scalar_t><<<blocks_for(B * kWarpSize), kThreads, 0, stream>>>(
        a_c.data_ptr<scalar_t>(), b_c.data_ptr<scalar_t>(), part_max.data_ptr<scalar_t>(),
        part_sum.data_ptr<scalar_t>(), B, d, splits, 1.0 / temperature,
        loss.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> infonce_backward(
    const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b, const at::Tensor& c,
    const at::Tensor& lse, double temperature) {
  check_infonce_args(a, b, c, temperature, c10::DeviceType::CUDA);
  check_infonce_row_vector(grad, "grad", a, c10::DeviceType::CUDA);
  check_infonce_row_vector(lse, "lse", a, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(a.device());
  const int64_t B = a.size(0), M = c.size(0), d = a.size(1);
  auto grad_a = at::empty({B, d}, a.options());
  auto grad_b = at::empty({B, d}, a.options());
  auto grad_c = at::empty({M, d}, a.options());
  if (B == 0 || d == 0) {
    grad_c.zero_();
    return {grad_a, grad_b, grad_c};
  }
  const auto a_c = a.contiguous(), b_c = b.contiguous(), c_c = c.contiguous();
  const auto g_c = grad.contiguous();
  const auto a_scaled = a_c.mul(kLog2e / temperature);
  // The saved lse in base 2, like the logits, and each row's factor g_k: rounding lse * log2(e)
  // would scale a row's weights by 2^(rounding error); the factor takes it back out.
  const auto lse2_exact = lse.to(at::kDouble).mul(kLog2e);
  const auto lse2 = lse2_exact.to(a.scalar_type());
  const auto coef = g_c.to(at::kDouble).mul(at::exp2(lse2.to(at::kDouble).sub(lse2_exact)))
                        .to(a.scalar_type());

  const int device = a.get_device();
  const bool tc = use_tensor_cores(a);
  const int64_t a_splits = splits_for(tiles(B), tiles(M), device, blocks_per_sm(tc));
  const int64_t c_splits = splits_for(tiles(M), tiles(B), device, blocks_per_sm(tc));
  // partial sums: the outputs themselves when there is one split
  auto ga_part = a_splits == 1 ? grad_a : at::empty({a_splits, B, d}, a.options());
  auto gc_part = c_splits == 1 ? grad_c : at::empty({c_splits, M, d}, a.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  if (tc) {
    tensor_core::dispatch_kernels(tensor_core::feature_fragments(d),
                                  tensor_core::compensated_products(), [&](auto nf, auto comp) {
      constexpr int NF = decltype(nf)::value;
      constexpr bool kCompensated = decltype(comp)::value;
      const size_t bytes = tensor_core::Layout<NF>::kBytes;
      // both gradient kernels take the same inputs; they differ in grid and destination
      const auto launch = [&](auto kernel, dim3 grid, at::Tensor& dst) {
        raise_shared_limit(kernel, bytes);
        kernel<<<grid, tensor_core::kThreads, bytes, stream>>>(
            a_scaled.data_ptr<float>(), c_c.data_ptr<float>(), lse2.data_ptr<float>(),
            coef.data_ptr<float>(), B, M, d, dst.data_ptr<float>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      launch(tensor_core::grad_a_kernel<NF, kCompensated>, dim3(tiles(B), a_splits), ga_part);
      launch(tensor_core::grad_c_kernel<NF, kCompensated>, dim3(tiles(M), c_splits), gc_part);
    });
  }
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "irllrec_fast::infonce_backward (CUDA)", [&] {
    if (!tc) {
      infonce_grad_a_kernel<scalar_t><<<dim3(tiles(B), a_splits), kThreads, 0, stream>>>(
          a_scaled.data_ptr<scalar_t>(), c_c.data_ptr<scalar_t>(), lse2.data_ptr<scalar_t>(),
          coef.data_ptr<scalar_t>(), B, M, d, ga_part.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      infonce_grad_c_kernel<scalar_t><<<dim3(tiles(M), c_splits), kThreads, 0, stream>>>(
          a_scaled.data_ptr<scalar_t>(), c_c.data_ptr<scalar_t>(), lse2.data_ptr<scalar_t>(),
          coef.data_ptr<scalar_t>(), B, M, d, gc_part.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    infonce_grad_ab_finish_kernel<scalar_t><<<blocks_for(B * d), kThreads, 0, stream>>>(
        ga_part.data_ptr<scalar_t>(), a_c.data_ptr<scalar_t>(), b_c.data_ptr<scalar_t>(),
        g_c.data_ptr<scalar_t>(), B, d, a_splits, scalar_t(1.0 / temperature),
        grad_a.data_ptr<scalar_t>(), grad_b.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    infonce_grad_c_finish_kernel<scalar_t><<<blocks_for(M * d), kThreads, 0, stream>>>(
        gc_part.data_ptr<scalar_t>(), M * d, c_splits, grad_c.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_a, grad_b, grad_c};
}

}  // namespace
}  // namespace cuda
}  // namespace irllrec_fast

TORCH_LIBRARY_IMPL(irllrec_fast, CUDA, m) {
  m.impl("infonce", &irllrec_fast::cuda::infonce);
  m.impl("infonce_backward", &irllrec_fast::cuda::infonce_backward);
}
