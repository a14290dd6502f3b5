// CUDA kernels of `intent_assign`: out = softmax(e w) w^T with lse = logsumexp(e w), and the
// backward, which recomputes the probabilities from lse.
//
// One warp per row. The prototypes w [d, K] sit in shared memory (row stride K rounded up to an
// odd number, so that lanes reading one column across d rows hit 32 different banks), or are read
// through the cache when they do not fit. A row's K logits live in registers, K / 32 per lane
// (K <= 512), the row's e (and g) and its probabilities in a per-warp slice of shared memory.
// Products: lane k computes logit k over d (w row-wise, conflict-free); lane j computes output j
// over K (w column-wise, conflict-free thanks to the odd stride).
//
// grad_w = g^T P + e^T dZ sums over rows. A second kernel gives each block a slice of 32
// prototypes and a contiguous chunk of rows: it recomputes P and dZ for its 32 columns (from lse
// and the per-row <P, g w> saved by the row kernel) and accumulates the chunk's [d, 32] share in
// shared memory, owned entry by entry by its threads. The chunks' partials are added in chunk
// order by a third kernel. No atomics: the same inputs give bitwise the same gradients.
//
// For K <= 128 and d <= 64 (the model's shapes) the register-tiled kernels of
// intent_assign_tiles.cuh run instead: four rows per warp, and a backward in one kernel.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "../checks.h"
#include "../op_checks.h"
#include "intent_assign_tiles.cuh"
#include "launch_utils.cuh"

namespace irllrec_fast {
namespace cuda {
namespace {

constexpr int kWarps = 8;  // warps per block of the row kernels
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kMaxK = 512;
constexpr int kSliceK = 32;  // prototypes per block of the grad_w kernel

// Where the row kernels read w: shared memory with an odd row stride, or global memory.
template <typename scalar_t>
struct Prototypes {
  const scalar_t* w;
  int64_t stride;
  __device__ __forceinline__ scalar_t operator()(int64_t j, int64_t k) const {
    return w[j * stride + k];
  }
};

// Copies w [d, K] into shared memory with row stride `stride` (all threads of the block).
template <typename scalar_t>
__device__ void load_prototypes(const scalar_t* __restrict__ w, scalar_t* w_s, int64_t d,
                                int64_t K, int64_t stride) {
  for (int64_t idx = threadIdx.x; idx < d * K; idx += blockDim.x)
    w_s[(idx / K) * stride + idx % K] = w[idx];
  __syncthreads();
}

// Lane-wise logits of row `a` (in shared memory) for the lane's columns k = lane + 32 c.
template <typename scalar_t, typename acc_t, int KPL>
__device__ __forceinline__ void lane_logits(const scalar_t* a_s, const Prototypes<scalar_t>& w,
                                            int64_t d, int64_t K, int lane, acc_t (&l)[KPL]) {
#pragma unroll
  for (int c = 0; c < KPL; ++c) l[c] = 0;
  for (int64_t j = 0; j < d; ++j) {
    const acc_t a = a_s[j];
#pragma unroll
    for (int c = 0; c < KPL; ++c) {
      const int64_t k = lane + c * kWarpSize;
      if (k < K) l[c] += a * acc_t(w(j, k));
    }
  }
}

// dst[j] = scale * sum_k v_s[k] w(j, k) for the lane's features j = lane + 32 i.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void lane_times_wt(const acc_t* v_s, const Prototypes<scalar_t>& w,
                                              int64_t d, int64_t K, int lane, acc_t scale,
                                              scalar_t* __restrict__ dst) {
  for (int64_t j = lane; j < d; j += kWarpSize) {
    acc_t acc = 0;
    for (int64_t k = 0; k < K; ++k) acc += v_s[k] * acc_t(w(j, k));
    dst[j] = static_cast<scalar_t>(acc * scale);
  }
}

// Per-warp shared scratch of the row kernels: ROWS feature rows of d, then K accumulator values.
template <typename scalar_t, typename acc_t>
__host__ __device__ constexpr int64_t warp_scratch_bytes(int64_t d, int64_t K, int rows) {
  return rows * d * int64_t(sizeof(scalar_t)) + K * int64_t(sizeof(acc_t));
}

template <typename scalar_t, int KPL>
__global__ void __launch_bounds__(kThreads)
intent_assign_forward_kernel(const scalar_t* __restrict__ e, const scalar_t* __restrict__ w,
                             scalar_t* __restrict__ out, scalar_t* __restrict__ lse, int64_t n,
                             int64_t d, int64_t K, bool w_shared, int64_t w_stride) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(16) unsigned char smem[];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  scalar_t* w_s = reinterpret_cast<scalar_t*>(smem);
  const int64_t w_bytes = w_shared ? (d * w_stride * int64_t(sizeof(scalar_t)) + 15) / 16 * 16 : 0;
  unsigned char* mine = smem + w_bytes + warp * warp_scratch_bytes<scalar_t, acc_t>(d, K, 1);
  scalar_t* e_s = reinterpret_cast<scalar_t*>(mine);
  acc_t* p_s = reinterpret_cast<acc_t*>(mine + d * sizeof(scalar_t));
  if (w_shared) load_prototypes(w, w_s, d, K, w_stride);
  const Prototypes<scalar_t> proto{w_shared ? w_s : w, w_shared ? w_stride : K};

  for (int64_t i = int64_t(blockIdx.x) * kWarps + warp; i < n; i += int64_t(gridDim.x) * kWarps) {
    for (int64_t j = lane; j < d; j += kWarpSize) e_s[j] = e[i * d + j];
    __syncwarp();
    acc_t l[KPL];
    lane_logits<scalar_t, acc_t, KPL>(e_s, proto, d, K, lane, l);
    acc_t m = -INFINITY;
#pragma unroll
    for (int c = 0; c < KPL; ++c)
      if (lane + c * kWarpSize < K) m = max(m, l[c]);
    m = warp_max(m);
    acc_t s = 0;
#pragma unroll
    for (int c = 0; c < KPL; ++c) {
      const int64_t k = lane + c * kWarpSize;
      const acc_t p = k < K ? exp_of(l[c] - m) : acc_t(0);
      if (k < K) p_s[k] = p;
      s += p;
    }
    s = warp_sum(s);
    __syncwarp();
    lane_times_wt<scalar_t, acc_t>(p_s, proto, d, K, lane, acc_t(1) / s, out + i * d);
    if (lane == 0) lse[i] = static_cast<scalar_t>(m + log_of(s));
    __syncwarp();  // e_s and p_s are rewritten for the next row
  }
}

// Row part of the backward: grad_e = dZ w^T, and <P, g w> per row for the grad_w kernel.
template <typename scalar_t, int KPL>
__global__ void __launch_bounds__(kThreads)
intent_assign_backward_rows_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ e,
                                   const scalar_t* __restrict__ w, const scalar_t* __restrict__ lse,
                                   scalar_t* __restrict__ grad_e,
                                   at::opmath_type<scalar_t>* __restrict__ row_dot, int64_t n,
                                   int64_t d, int64_t K, bool w_shared, int64_t w_stride) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(16) unsigned char smem[];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  scalar_t* w_s = reinterpret_cast<scalar_t*>(smem);
  const int64_t w_bytes = w_shared ? (d * w_stride * int64_t(sizeof(scalar_t)) + 15) / 16 * 16 : 0;
  unsigned char* mine = smem + w_bytes + warp * warp_scratch_bytes<scalar_t, acc_t>(d, K, 2);
  scalar_t* e_s = reinterpret_cast<scalar_t*>(mine);
  scalar_t* g_s = e_s + d;
  acc_t* dz_s = reinterpret_cast<acc_t*>(mine + 2 * d * sizeof(scalar_t));
  if (w_shared) load_prototypes(w, w_s, d, K, w_stride);
  const Prototypes<scalar_t> proto{w_shared ? w_s : w, w_shared ? w_stride : K};

  for (int64_t i = int64_t(blockIdx.x) * kWarps + warp; i < n; i += int64_t(gridDim.x) * kWarps) {
    for (int64_t j = lane; j < d; j += kWarpSize) {
      e_s[j] = e[i * d + j];
      g_s[j] = grad[i * d + j];
    }
    __syncwarp();
    acc_t p[KPL], gp[KPL];
    lane_logits<scalar_t, acc_t, KPL>(e_s, proto, d, K, lane, p);
    lane_logits<scalar_t, acc_t, KPL>(g_s, proto, d, K, lane, gp);
    const acc_t shift = lse[i];
    acc_t dot = 0;
#pragma unroll
    for (int c = 0; c < KPL; ++c) {
      p[c] = lane + c * kWarpSize < K ? exp_of(p[c] - shift) : acc_t(0);
      dot += p[c] * gp[c];
    }
    dot = warp_sum(dot);
#pragma unroll
    for (int c = 0; c < KPL; ++c) {
      const int64_t k = lane + c * kWarpSize;
      if (k < K) dz_s[k] = p[c] * (gp[c] - dot);
    }
    __syncwarp();
    lane_times_wt<scalar_t, acc_t>(dz_s, proto, d, K, lane, acc_t(1), grad_e + i * d);
    if (lane == 0) row_dot[i] = dot;
    __syncwarp();
  }
}

// grad_w partial of one chunk of rows and one slice of 32 prototypes:
// partial[chunk, j, k] = sum over the chunk's rows of g[i, j] P[i, k] + e[i, j] dZ[i, k].
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
intent_assign_grad_w_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ e,
                            const scalar_t* __restrict__ w, const scalar_t* __restrict__ lse,
                            const at::opmath_type<scalar_t>* __restrict__ row_dot,
                            at::opmath_type<scalar_t>* __restrict__ partial, int64_t n, int64_t d,
                            int64_t K, int64_t rows_per_chunk, int64_t padded_K) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(16) unsigned char smem[];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int64_t k0 = int64_t(blockIdx.x) * kSliceK;
  const int64_t chunk = blockIdx.y;
  acc_t* acc_s = reinterpret_cast<acc_t*>(smem);   // [d, 32]
  acc_t* pz_s = acc_s + d * kSliceK;                // [kWarps, 2, 32]: P then dZ per warp
  scalar_t* w_s = reinterpret_cast<scalar_t*>(pz_s + kWarps * 2 * kSliceK);  // [d, 32]
  scalar_t* rows_s = w_s + d * kSliceK;             // [kWarps, 2, d]: e then g per warp

  for (int64_t idx = threadIdx.x; idx < d * kSliceK; idx += blockDim.x) {
    const int64_t j = idx / kSliceK, k = k0 + idx % kSliceK;
    w_s[idx] = k < K ? w[j * K + k] : scalar_t(0);
    acc_s[idx] = 0;
  }
  __syncthreads();

  const int64_t row_begin = chunk * rows_per_chunk;
  const int64_t row_end = min(n, row_begin + rows_per_chunk);
  scalar_t* e_s = rows_s + warp * 2 * d;
  scalar_t* g_s = e_s + d;
  acc_t* p_s = pz_s + warp * 2 * kSliceK;
  acc_t* dz_s = p_s + kSliceK;
  for (int64_t base = row_begin; base < row_end; base += kWarps) {
    const int64_t i = base + warp;
    const bool valid = i < row_end;
    for (int64_t j = lane; j < d; j += kWarpSize) {
      e_s[j] = valid ? e[i * d + j] : scalar_t(0);
      g_s[j] = valid ? grad[i * d + j] : scalar_t(0);
    }
    __syncwarp();
    acc_t l = 0, gp = 0;
    for (int64_t j = 0; j < d; ++j) {
      const acc_t wv = w_s[j * kSliceK + lane];
      l += acc_t(e_s[j]) * wv;
      gp += acc_t(g_s[j]) * wv;
    }
    const bool live = valid && k0 + lane < K;
    const acc_t p = live ? exp_of(l - acc_t(lse[i])) : acc_t(0);
    p_s[lane] = p;
    dz_s[lane] = live ? p * (gp - row_dot[i]) : acc_t(0);
    __syncthreads();
    for (int64_t idx = threadIdx.x; idx < d * kSliceK; idx += blockDim.x) {
      const int64_t j = idx / kSliceK, k = idx % kSliceK;
      acc_t a = acc_s[idx];
#pragma unroll
      for (int r = 0; r < kWarps; ++r) {
        const scalar_t* er = rows_s + r * 2 * d;
        const acc_t* pr = pz_s + r * 2 * kSliceK;
        a += acc_t(er[d + j]) * pr[k] + acc_t(er[j]) * pr[kSliceK + k];
      }
      acc_s[idx] = a;
    }
    __syncthreads();
  }
  for (int64_t idx = threadIdx.x; idx < d * kSliceK; idx += blockDim.x) {
    const int64_t j = idx / kSliceK, k = idx % kSliceK;
    partial[(chunk * d + j) * padded_K + k0 + k] = acc_s[idx];
  }
}

// grad_w[j, k] = sum over chunks, in chunk order, of partial[chunk, j, k].
template <typename scalar_t>
__global__ void intent_assign_reduce_kernel(const at::opmath_type<scalar_t>* __restrict__ partial,
                                            scalar_t* __restrict__ grad_w, int64_t chunks,
                                            int64_t d, int64_t K, int64_t padded_K) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= d * K) return;
  const int64_t j = idx / K, k = idx % K;
  at::opmath_type<scalar_t> acc = 0;
  for (int64_t c = 0; c < chunks; ++c) acc += partial[(c * d + j) * padded_K + k];
  grad_w[idx] = static_cast<scalar_t>(acc);
}

void check_inputs(const at::Tensor& e, const at::Tensor& w) {
  check_intent_assign_args(e, w, c10::DeviceType::CUDA);
  TORCH_CHECK(w.size(1) <= kMaxK, "w must have at most ", kMaxK,
              " columns (prototypes) on CUDA, got ", w.size(1));
}

template <typename F>
void dispatch_k_per_lane(int64_t K, F&& f) {
  if (K <= 32) f(std::integral_constant<int, 1>{});
  else if (K <= 64) f(std::integral_constant<int, 2>{});
  else if (K <= 128) f(std::integral_constant<int, 4>{});
  else if (K <= 256) f(std::integral_constant<int, 8>{});
  else f(std::integral_constant<int, 16>{});
}

// w's row stride in shared memory: odd, so that lanes reading one column across rows hit 32 banks.
int64_t odd_stride(int64_t K) { return K % 2 == 1 ? K : K + 1; }

int max_shared_bytes(int device) {
  int bytes = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return bytes;
}

// Shared memory of a row kernel: w (if it fits) plus kWarps per-warp scratch slices. Returns
// (bytes, w_shared, w_stride) and raises the kernel's limit when more than the default is used.
template <typename scalar_t, typename Kernel>
std::tuple<int64_t, bool, int64_t> row_kernel_smem(Kernel kernel, int64_t d, int64_t K,
                                                   int rows, int device) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t scratch = kWarps * warp_scratch_bytes<scalar_t, acc_t>(d, K, rows);
  const int64_t stride = odd_stride(K);
  const int64_t w_bytes = (d * stride * int64_t(sizeof(scalar_t)) + 15) / 16 * 16;
  const int64_t limit = max_shared_bytes(device);
  const bool w_shared = w_bytes + scratch <= limit;
  const int64_t bytes = scratch + (w_shared ? w_bytes : 0);
  TORCH_CHECK(bytes <= limit, "intent_assign: e has too many features (d = ", d,
              ") for the CUDA kernel's shared memory");
  raise_shared_limit(kernel, bytes);
  return {bytes, w_shared, stride};
}

int64_t row_blocks(int64_t n, int device) {
  return std::max<int64_t>(1, std::min<int64_t>((n + kWarps - 1) / kWarps, int64_t(num_sms(device)) * 8));
}

// grad_w = the sum of partial [chunks, d, padded_K] over chunks, in chunk order.
template <typename scalar_t>
void reduce_partials(const at::Tensor& partial, at::Tensor& grad_w, int64_t chunks, int64_t d,
                     int64_t K, int64_t padded_K, cudaStream_t stream) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kReduceThreads = 256;
  intent_assign_reduce_kernel<scalar_t>
      <<<unsigned((d * K + kReduceThreads - 1) / kReduceThreads), kReduceThreads, 0, stream>>>(
          partial.data_ptr<acc_t>(), grad_w.data_ptr<scalar_t>(), chunks, d, K, padded_K);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The tiled kernels (intent_assign_tiles.cuh) serve K <= 128 and d <= 64 when their shared
// memory fits the device; the row kernels serve the rest.
bool tiles_serve(int64_t d, int64_t K) { return K <= kTileMaxK && d <= kTileMaxD; }

template <typename F>
void dispatch_tile_k_per_lane(int64_t K, F&& f) {
  if (K <= 32) f(std::integral_constant<int, 1>{});
  else if (K <= 64) f(std::integral_constant<int, 2>{});
  else f(std::integral_constant<int, 4>{});
}

// Raises `kernel`'s dynamic shared memory limit to at least `bytes` (raise_shared_limit); false
// when the device cannot give that much.
template <typename Kernel>
bool reserve_shared(Kernel kernel, int64_t bytes, int device) {
  if (bytes > max_shared_bytes(device)) return false;
  raise_shared_limit(kernel, bytes);
  return true;
}

// Returns false (nothing launched) when the tiled kernels do not serve these shapes.
template <typename scalar_t>
bool forward_tiles(const at::Tensor& e, const at::Tensor& w, at::Tensor& out, at::Tensor& lse,
                   int device, cudaStream_t stream) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = e.size(0), d = e.size(1), K = w.size(1), stride = odd_stride(K);
  if (!tiles_serve(d, K)) return false;
  bool launched = false;
  dispatch_tile_k_per_lane(K, [&](auto kpl) {
    constexpr int KPL = decltype(kpl)::value;
    const auto kernel = intent_assign_forward_tile_kernel<scalar_t, KPL>;
    const int64_t bytes = tile_w_bytes<scalar_t>(d, stride) +
                          kTileWarps * tile_slice_bytes<acc_t>(d, KPL * kWarpSize, 1, 1);
    if (!reserve_shared(kernel, bytes, device)) return;
    // at most the blocks that are resident at once (up to 4 per SM): with more, a second, partial
    // wave would follow (3 fit per SM at d = 64, K = 128 in float32)
    int per_sm = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kTileThreads,
                                                                 size_t(bytes)));
    const int64_t blocks = std::clamp<int64_t>((n + kTileRows - 1) / kTileRows, 1,
                                               int64_t(num_sms(device)) * std::clamp(per_sm, 1, 4));
    kernel<<<unsigned(blocks), kTileThreads, bytes, stream>>>(
        e.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
        lse.data_ptr<scalar_t>(), n, d, K, stride);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    launched = true;
  });
  return launched;
}

template <typename scalar_t>
bool backward_tiles(const at::Tensor& grad, const at::Tensor& e, const at::Tensor& w,
                    const at::Tensor& lse, at::Tensor& grad_e, at::Tensor& grad_w, int device,
                    cudaStream_t stream) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = e.size(0), d = e.size(1), K = w.size(1), stride = odd_stride(K);
  if (!tiles_serve(d, K)) return false;
  bool launched = false;
  dispatch_tile_k_per_lane(K, [&](auto kpl) {
    constexpr int KPL = decltype(kpl)::value;
    constexpr int64_t kPaddedK = KPL * kWarpSize;
    const auto launch = [&](auto jpt) {
      constexpr int JPT = decltype(jpt)::value;
      const auto kernel = intent_assign_backward_tile_kernel<scalar_t, KPL, JPT>;
      const int64_t bytes = tile_w_bytes<scalar_t>(d, stride) +
                            kTileWarps * tile_slice_bytes<acc_t>(d, kPaddedK, 2, 2);
      if (!reserve_shared(kernel, bytes, device)) return;
      // a fixed number of blocks per device, so that the partials (and their sum) do not depend
      // on timing
      const int64_t blocks = std::clamp<int64_t>((n + kTileRows - 1) / kTileRows, 1,
                                                 int64_t(num_sms(device)) * 2);
      auto partial =
          at::empty({blocks, d, kPaddedK}, e.options().dtype(at::toOpMathType(e.scalar_type())));
      kernel<<<unsigned(blocks), kTileThreads, bytes, stream>>>(
          grad.data_ptr<scalar_t>(), e.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
          lse.data_ptr<scalar_t>(), grad_e.data_ptr<scalar_t>(), partial.data_ptr<acc_t>(), n, d,
          K, stride);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      reduce_partials<scalar_t>(partial, grad_w, blocks, d, K, kPaddedK, stream);
      launched = true;
    };
    if (d <= 32) launch(std::integral_constant<int, 4>{});
    else launch(std::integral_constant<int, 8>{});
  });
  return launched;
}

std::tuple<at::Tensor, at::Tensor> intent_assign(const at::Tensor& e, const at::Tensor& w) {
  check_inputs(e, w);
  const c10::cuda::CUDAGuard guard(e.device());
  const auto e_c = e.contiguous();
  const auto w_c = w.contiguous();
  const int64_t n = e.size(0), d = e.size(1), K = w.size(1);
  auto out = at::empty({n, d}, e.options());
  auto lse = at::empty({n}, e.options());
  if (n == 0) return {out, lse};
  if (d == 0) return {out, lse.fill_(std::log(double(K)))};
  const int device = e.get_device();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(e.scalar_type(), "irllrec_fast::intent_assign (CUDA)", [&] {
    if (forward_tiles<scalar_t>(e_c, w_c, out, lse, device, stream)) return;
    dispatch_k_per_lane(K, [&](auto kpl) {
      constexpr int KPL = decltype(kpl)::value;
      const auto kernel = intent_assign_forward_kernel<scalar_t, KPL>;
      const auto [bytes, w_shared, stride] = row_kernel_smem<scalar_t>(kernel, d, K, 1, device);
      kernel<<<row_blocks(n, device), kThreads, bytes, stream>>>(
          e_c.data_ptr<scalar_t>(), w_c.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
          lse.data_ptr<scalar_t>(), n, d, K, w_shared, stride);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {out, lse};
}

// Shared memory of the grad_w kernel: a [d, kSliceK] slice of w and its accumulator, plus each
// warp's P / dZ values and its rows of e and grad.
template <typename scalar_t>
int64_t grad_w_smem_bytes(int64_t d) {
  using acc_t = at::opmath_type<scalar_t>;
  return (d * kSliceK + kWarps * 2 * kSliceK) * int64_t(sizeof(acc_t)) +
         (d * kSliceK + kWarps * 2 * d) * int64_t(sizeof(scalar_t));
}

// The backward as dense products with O(n K) temporaries, for widths whose grad_w slice does not
// fit in shared memory (d above about 700 in float32 on an H100): the same sums as the kernels,
// in the op-math type. Rare for this model (d = 32 or 64), so plain ATen products suffice. They
// run without TF32 whatever the user allows: the logits must match the float32 ones the forward's
// lse came from, else the recomputed probabilities would not sum to 1.
std::tuple<at::Tensor, at::Tensor> backward_dense(const at::Tensor& grad, const at::Tensor& e,
                                                  const at::Tensor& w, const at::Tensor& lse) {
  const at::NoTF32Guard full_float32_products;
  const auto acc = at::toOpMathType(e.scalar_type());
  const auto e_a = e.to(acc), w_a = w.to(acc), g_a = grad.to(acc);
  const auto p = at::exp(at::mm(e_a, w_a) - lse.to(acc).unsqueeze(1));
  const auto gp = at::mm(g_a, w_a);
  const auto dz = p * (gp - (p * gp).sum(1, /*keepdim=*/true));
  return {at::mm(dz, w_a.t()).to(e.scalar_type()),
          (at::mm(g_a.t(), p) + at::mm(e_a.t(), dz)).to(e.scalar_type())};
}

std::tuple<at::Tensor, at::Tensor> intent_assign_backward(const at::Tensor& grad,
                                                          const at::Tensor& e, const at::Tensor& w,
                                                          const at::Tensor& lse) {
  check_inputs(e, w);
  check_intent_assign_backward_args(grad, lse, e, c10::DeviceType::CUDA);

  const c10::cuda::CUDAGuard guard(e.device());
  const auto e_c = e.contiguous();
  const auto w_c = w.contiguous();
  const auto g_c = grad.contiguous();
  const auto lse_c = lse.contiguous();
  const int64_t n = e.size(0), d = e.size(1), K = w.size(1);
  auto grad_e = at::empty({n, d}, e.options());
  auto grad_w = at::zeros({d, K}, e.options());
  if (n == 0 || d == 0) return {grad_e, grad_w};
  const int device = e.get_device();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(e.scalar_type(), "irllrec_fast::intent_assign_backward (CUDA)", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (backward_tiles<scalar_t>(g_c, e_c, w_c, lse_c, grad_e, grad_w, device, stream)) return;
    const int64_t bytes = grad_w_smem_bytes<scalar_t>(d);
    if (bytes > max_shared_bytes(device)) {
      std::tie(grad_e, grad_w) = backward_dense(g_c, e_c, w_c, lse_c);
      return;
    }
    const auto acc_type = at::toOpMathType(e.scalar_type());
    auto row_dot = at::empty({n}, e.options().dtype(acc_type));
    const int64_t slices = (K + kSliceK - 1) / kSliceK;
    const int64_t padded_K = slices * kSliceK;
    const int64_t chunks = std::max<int64_t>(
        1, std::min<int64_t>((n + 63) / 64, (int64_t(num_sms(device)) * 4 + slices - 1) / slices));
    const int64_t rows_per_chunk = (n + chunks - 1) / chunks;
    auto partial = at::empty({chunks, d, padded_K}, e.options().dtype(acc_type));

    dispatch_k_per_lane(K, [&](auto kpl) {
      constexpr int KPL = decltype(kpl)::value;
      const auto kernel = intent_assign_backward_rows_kernel<scalar_t, KPL>;
      const auto [bytes, w_shared, stride] = row_kernel_smem<scalar_t>(kernel, d, K, 2, device);
      kernel<<<row_blocks(n, device), kThreads, bytes, stream>>>(
          g_c.data_ptr<scalar_t>(), e_c.data_ptr<scalar_t>(), w_c.data_ptr<scalar_t>(),
          lse_c.data_ptr<scalar_t>(), grad_e.data_ptr<scalar_t>(), row_dot.data_ptr<acc_t>(), n,
          d, K, w_shared, stride);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });

    const auto grad_w_kernel = intent_assign_grad_w_kernel<scalar_t>;
    raise_shared_limit(grad_w_kernel, bytes);
    grad_w_kernel<<<dim3(unsigned(slices), unsigned(chunks)), kThreads, bytes, stream>>>(
        g_c.data_ptr<scalar_t>(), e_c.data_ptr<scalar_t>(), w_c.data_ptr<scalar_t>(),
        lse_c.data_ptr<scalar_t>(), row_dot.data_ptr<acc_t>(), partial.data_ptr<acc_t>(), n, d,
        K, rows_per_chunk, padded_K);
    C10_CUDA_KERNEL_LAUNCH_CHECK();

    reduce_partials<scalar_t>(partial, grad_w, chunks, d, K, padded_K, stream);
  });
  return {grad_e, grad_w};
}

}  // namespace
}  // namespace cuda
}  // namespace irllrec_fast

TORCH_LIBRARY_IMPL(irllrec_fast, CUDA, m) {
  m.impl("intent_assign", &irllrec_fast::cuda::intent_assign);
  m.impl("intent_assign_backward", &irllrec_fast::cuda::intent_assign_backward);
}
