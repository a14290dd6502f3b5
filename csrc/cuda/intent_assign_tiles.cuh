// Register-tiled CUDA kernels of `intent_assign` for K <= 128 prototypes and d <= 64 features
// (the model's shapes), included by intent_assign.cu, which keeps its one-row-per-warp kernels
// for the other shapes.
//
// Why: in the row kernels every multiply-add reads one value of w from shared memory, which caps
// them at a quarter of the FMA rate. Here a warp takes kRowsPerWarp = 4 rows at once: each value
// of w it reads serves four rows, and the four rows' values of e (or of the probabilities) sit
// side by side, [feature][row], so one 16-byte load gives all four.
//
// The backward is one kernel: each warp makes P and dZ for its four rows and writes grad_e; then
// the whole block (8 warps, 32 rows) adds its rows' g^T P + e^T dZ to a [d, K] partial of grad_w
// held in registers, thread (warp v, lane l) owning features v, v + 8, ... and prototypes
// l, l + 32, .... Each block writes its partial once; the partials are added in block order by
// intent_assign_reduce_kernel, so grad_w is the same bit for bit from run to run on a device.
// (The row kernels recompute the logits a second time for grad_w; this one does not.)
//
// Also home to the warp reductions and exp / log overloads that both sets of kernels use.
#pragma once

#include <ATen/OpMathType.h>

#include <cstdint>

#include "launch_utils.cuh"

namespace irllrec_fast {
namespace cuda {

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int off = kWarpSize / 2; off > 0; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int off = kWarpSize / 2; off > 0; off >>= 1) v = max(v, __shfl_xor_sync(kFullMask, v, off));
  return v;
}

__device__ __forceinline__ float exp_of(float x) { return expf(x); }
__device__ __forceinline__ double exp_of(double x) { return exp(x); }
__device__ __forceinline__ float log_of(float x) { return logf(x); }
__device__ __forceinline__ double log_of(double x) { return log(x); }

constexpr int kRowsPerWarp = 4;
constexpr int kTileWarps = 8;
constexpr int kTileThreads = kTileWarps * kWarpSize;
constexpr int kTileRows = kTileWarps * kRowsPerWarp;  // rows of one block step of the backward
constexpr int kTileMaxK = 128;
constexpr int kTileMaxD = 64;

// The four rows' values of one feature (or one prototype), adjacent in shared memory: one
// 16-byte load for float, two for double.
template <typename acc_t>
struct alignas(kRowsPerWarp * sizeof(acc_t)) FourRows {
  acc_t v[kRowsPerWarp];
};

template <typename acc_t>
__device__ __forceinline__ FourRows<acc_t> four_rows(const acc_t* base, int64_t index) {
  return reinterpret_cast<const FourRows<acc_t>*>(base)[index];
}

// Bytes of one warp's slice: `features` [d][4] blocks and `prototypes` [32 KPL][4] blocks.
template <typename acc_t>
__host__ __device__ constexpr int64_t tile_slice_bytes(int64_t d, int64_t padded_K, int features,
                                                        int prototypes) {
  return (features * d + prototypes * padded_K) * kRowsPerWarp * int64_t(sizeof(acc_t));
}

// w [d, K] into shared memory with an odd row stride (see intent_assign.cu), padded to 32 bytes so
// that the warp slices after it stay aligned for FourRows<double>.
template <typename scalar_t>
__host__ __device__ constexpr int64_t tile_w_bytes(int64_t d, int64_t stride) {
  return (d * stride * int64_t(sizeof(scalar_t)) + 31) / 32 * 32;
}

// The warp's four rows r0..r0+3 of x [n, d] into x_s as [d][4], zeros past row n.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void load_four_rows(const scalar_t* __restrict__ x, int64_t r0,
                                               int64_t n, int64_t d, int lane, acc_t* x_s) {
  for (int64_t idx = lane; idx < kRowsPerWarp * d; idx += kWarpSize) {
    const int64_t r = idx / d, j = idx % d;
    x_s[j * kRowsPerWarp + r] = r0 + r < n ? acc_t(x[r0 * d + idx]) : acc_t(0);
  }
}

// l[r][c] = sum_j x_s[j][r] w[j][lane + 32 c]: the logits of four rows for the lane's prototypes
// (zero for prototypes past K, whose w columns are not read).
template <typename scalar_t, typename acc_t, int KPL>
__device__ __forceinline__ void four_row_logits(const acc_t* x_s, const scalar_t* w_s,
                                                int64_t stride, int64_t d, int64_t K, int lane,
                                                acc_t (&l)[kRowsPerWarp][KPL]) {
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int c = 0; c < KPL; ++c) l[r][c] = 0;
  for (int64_t j = 0; j < d; ++j) {
    const FourRows<acc_t> x = four_rows(x_s, j);
#pragma unroll
    for (int c = 0; c < KPL; ++c) {
      const int64_t k = lane + c * kWarpSize;
      if (k < K) {
        const acc_t wv = acc_t(w_s[j * stride + k]);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) l[r][c] += x.v[r] * wv;
      }
    }
  }
}

// dst[r0 + r][j] = scale[r] * sum_k v_s[k][r] w[j][k] for the lane's features j = lane + 32 i and
// the rows below n.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void four_rows_times_wt(const acc_t* v_s, const scalar_t* w_s,
                                                   int64_t stride, int64_t d, int64_t K,
                                                   int lane, const acc_t (&scale)[kRowsPerWarp],
                                                   int64_t r0, int64_t n,
                                                   scalar_t* __restrict__ dst) {
  for (int64_t j = lane; j < d; j += kWarpSize) {
    acc_t o[kRowsPerWarp] = {};
    for (int64_t k = 0; k < K; ++k) {
      const FourRows<acc_t> v = four_rows(v_s, k);
      const acc_t wv = acc_t(w_s[j * stride + k]);
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) o[r] += v.v[r] * wv;
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
      if (r0 + r < n) dst[(r0 + r) * d + j] = static_cast<scalar_t>(o[r] * scale[r]);
  }
}

// Forward: out = softmax(e w) w^T and lse, four rows per warp; warps are independent once w is
// in shared memory. Shared memory: w, then per warp e [d][4] and P [32 KPL][4].
template <typename scalar_t, int KPL>
__global__ void __launch_bounds__(kTileThreads)
intent_assign_forward_tile_kernel(const scalar_t* __restrict__ e, const scalar_t* __restrict__ w,
                                  scalar_t* __restrict__ out, scalar_t* __restrict__ lse,
                                  int64_t n, int64_t d, int64_t K, int64_t stride) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t kPaddedK = KPL * kWarpSize;
  extern __shared__ __align__(32) unsigned char smem[];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  scalar_t* w_s = reinterpret_cast<scalar_t*>(smem);
  acc_t* e_s = reinterpret_cast<acc_t*>(smem + tile_w_bytes<scalar_t>(d, stride) +
                                        warp * tile_slice_bytes<acc_t>(d, kPaddedK, 1, 1));
  acc_t* p_s = e_s + d * kRowsPerWarp;
  for (int64_t idx = threadIdx.x; idx < d * K; idx += blockDim.x)
    w_s[(idx / K) * stride + idx % K] = w[idx];
  __syncthreads();

  for (int64_t r0 = (int64_t(blockIdx.x) * kTileWarps + warp) * kRowsPerWarp; r0 < n;
       r0 += int64_t(gridDim.x) * kTileWarps * kRowsPerWarp) {
    load_four_rows(e, r0, n, d, lane, e_s);
    __syncwarp();
    acc_t l[kRowsPerWarp][KPL];
    four_row_logits<scalar_t, acc_t, KPL>(e_s, w_s, stride, d, K, lane, l);
    acc_t inv[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      acc_t m = -INFINITY;
#pragma unroll
      for (int c = 0; c < KPL; ++c)
        if (lane + c * kWarpSize < K) m = max(m, l[r][c]);
      m = warp_max(m);
      acc_t s = 0;
#pragma unroll
      for (int c = 0; c < KPL; ++c) {
        l[r][c] = lane + c * kWarpSize < K ? exp_of(l[r][c] - m) : acc_t(0);
        s += l[r][c];
      }
      s = warp_sum(s);
      inv[r] = acc_t(1) / s;
      if (lane == 0 && r0 + r < n) lse[r0 + r] = static_cast<scalar_t>(m + log_of(s));
    }
#pragma unroll
    for (int c = 0; c < KPL; ++c) {
      FourRows<acc_t> p;
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) p.v[r] = l[r][c];
      reinterpret_cast<FourRows<acc_t>*>(p_s)[lane + c * kWarpSize] = p;
    }
    __syncwarp();
    four_rows_times_wt(p_s, w_s, stride, d, K, lane, inv, r0, n, out);
    __syncwarp();  // e_s and p_s are rewritten for the next rows
  }
}

// Backward, one kernel: per warp P = exp(e w - lse), dZ = P * (g w - <P, g w>) and grad_e = dZ w^T
// for its four rows; then per block partial[block] += g^T P + e^T dZ over the block's 32 rows.
// JPT: features per thread in the grad_w step (d <= 8 JPT). Shared memory: w, then per warp
// e and g [d][4], P and dZ [32 KPL][4].
template <typename scalar_t, int KPL, int JPT>
__global__ void __launch_bounds__(kTileThreads)
intent_assign_backward_tile_kernel(const scalar_t* __restrict__ grad,
                                   const scalar_t* __restrict__ e, const scalar_t* __restrict__ w,
                                   const scalar_t* __restrict__ lse, scalar_t* __restrict__ grad_e,
                                   at::opmath_type<scalar_t>* __restrict__ partial, int64_t n,
                                   int64_t d, int64_t K, int64_t stride) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t kPaddedK = KPL * kWarpSize;
  extern __shared__ __align__(32) unsigned char smem[];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  scalar_t* w_s = reinterpret_cast<scalar_t*>(smem);
  acc_t* slices = reinterpret_cast<acc_t*>(smem + tile_w_bytes<scalar_t>(d, stride));
  const int64_t slice_len = (2 * d + 2 * kPaddedK) * kRowsPerWarp;  // in acc_t
  acc_t* e_s = slices + warp * slice_len;
  acc_t* g_s = e_s + d * kRowsPerWarp;
  acc_t* p_s = g_s + d * kRowsPerWarp;
  acc_t* dz_s = p_s + kPaddedK * kRowsPerWarp;
  for (int64_t idx = threadIdx.x; idx < d * K; idx += blockDim.x)
    w_s[(idx / K) * stride + idx % K] = w[idx];
  __syncthreads();

  // this thread's share of grad_w: features warp + 8 i, prototypes lane + 32 c
  acc_t gw[JPT][KPL] = {};
  // every thread of the block runs the same number of steps (the loop bound is per block)
  for (int64_t t0 = int64_t(blockIdx.x) * kTileRows; t0 < n; t0 += int64_t(gridDim.x) * kTileRows) {
    const int64_t r0 = t0 + warp * kRowsPerWarp;
    load_four_rows(e, r0, n, d, lane, e_s);
    load_four_rows(grad, r0, n, d, lane, g_s);
    __syncwarp();
    acc_t p[kRowsPerWarp][KPL], gp[kRowsPerWarp][KPL];
    four_row_logits<scalar_t, acc_t, KPL>(e_s, w_s, stride, d, K, lane, p);
    four_row_logits<scalar_t, acc_t, KPL>(g_s, w_s, stride, d, K, lane, gp);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const bool row_live = r0 + r < n;
      const acc_t shift = row_live ? acc_t(lse[r0 + r]) : acc_t(0);
      acc_t dot = 0;
#pragma unroll
      for (int c = 0; c < KPL; ++c) {
        // rows past n and prototypes past K get P = 0, so they add nothing to grad_w
        p[r][c] = row_live && lane + c * kWarpSize < K ? exp_of(p[r][c] - shift) : acc_t(0);
        dot += p[r][c] * gp[r][c];
      }
      dot = warp_sum(dot);
#pragma unroll
      for (int c = 0; c < KPL; ++c) gp[r][c] = p[r][c] * (gp[r][c] - dot);  // now dZ
    }
#pragma unroll
    for (int c = 0; c < KPL; ++c) {
      FourRows<acc_t> pv, zv;
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        pv.v[r] = p[r][c];
        zv.v[r] = gp[r][c];
      }
      reinterpret_cast<FourRows<acc_t>*>(p_s)[lane + c * kWarpSize] = pv;
      reinterpret_cast<FourRows<acc_t>*>(dz_s)[lane + c * kWarpSize] = zv;
    }
    __syncwarp();
    const acc_t one[kRowsPerWarp] = {acc_t(1), acc_t(1), acc_t(1), acc_t(1)};
    four_rows_times_wt(dz_s, w_s, stride, d, K, lane, one, r0, n, grad_e);
    __syncthreads();  // every warp's P and dZ are in shared memory

    for (int v = 0; v < kTileWarps; ++v) {
      const acc_t* src = slices + v * slice_len;
      const acc_t* ev = src;
      const acc_t* gv = src + d * kRowsPerWarp;
      const acc_t* pv = gv + d * kRowsPerWarp;
      const acc_t* zv = pv + kPaddedK * kRowsPerWarp;
      FourRows<acc_t> pk[KPL], zk[KPL];
#pragma unroll
      for (int c = 0; c < KPL; ++c) {
        pk[c] = four_rows(pv, lane + c * kWarpSize);
        zk[c] = four_rows(zv, lane + c * kWarpSize);
      }
#pragma unroll
      for (int i = 0; i < JPT; ++i) {
        const int64_t j = warp + i * kTileWarps;
        if (j < d) {
          const FourRows<acc_t> gj = four_rows(gv, j), ej = four_rows(ev, j);
#pragma unroll
          for (int c = 0; c < KPL; ++c)
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r)
              gw[i][c] += gj.v[r] * pk[c].v[r] + ej.v[r] * zk[c].v[r];
        }
      }
    }
    __syncthreads();  // the slices are rewritten by the next step
  }

  acc_t* mine = partial + int64_t(blockIdx.x) * d * kPaddedK;
#pragma unroll
  for (int i = 0; i < JPT; ++i) {
    const int64_t j = warp + i * kTileWarps;
    if (j < d) {
#pragma unroll
      for (int c = 0; c < KPL; ++c) mine[j * kPaddedK + lane + c * kWarpSize] = gw[i][c];
    }
  }
}

}  // namespace cuda
}  // namespace irllrec_fast
