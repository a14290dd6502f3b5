// CUDA kernels of `spmm`: out = A x for a CSR matrix A, and the per-edge value gradient.
//
// Both walk the edges in warp-sized segments (csr_segments.cuh) so that long rows of power-law
// graphs are shared by many warps; inside a warp, LPE lanes cover one row of features with
// 16-byte loads and the 32 / LPE lane groups take different edges, reduced by shuffles in a
// fixed order. Nothing uses float atomics: the same inputs give bitwise the same output.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <initializer_list>

#include "../checks.h"
#include "../op_checks.h"
#include "csr_segments.cuh"
#include "launch_utils.cuh"

namespace irllrec_fast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t, int VEC, int LPE>
__global__ void __launch_bounds__(kThreads)
spmm_segment_kernel(const int32_t* __restrict__ rowptr, const int32_t* __restrict__ col,
                    const scalar_t* __restrict__ value, const scalar_t* __restrict__ x,
                    scalar_t* __restrict__ out, scalar_t* __restrict__ partial, int32_t n,
                    int64_t num_edges, int64_t seg, int64_t num_segments, int64_t d) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kGroups = kWarpSize / LPE;
  const int64_t s = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
  if (s >= num_segments) return;  // whole warps only: blockDim is a multiple of 32
  const int lane = threadIdx.x % kWarpSize;
  const int group = lane / LPE;
  const int sub = lane % LPE;
  const int64_t e0 = s * seg;
  const int64_t e1 = min(num_edges, e0 + seg);

  for (int32_t r = row_of_edge(rowptr, n, e0); r < n; ++r) {
    const int64_t rs = __ldg(rowptr + r), re = __ldg(rowptr + r + 1);
    const int64_t a = max(rs, e0), b = min(re, e1);
    if (b > a) {
      const bool complete = rs >= e0 && re <= e1;
      scalar_t* dst = complete ? out + int64_t(r) * d
                               : partial + (s * 2 + partial_slot(rs, e0)) * d;
      for (int64_t f0 = 0; f0 < d; f0 += LPE * VEC) {
        const int64_t f = f0 + sub * VEC;
        acc_t acc[VEC];
#pragma unroll
        for (int i = 0; i < VEC; ++i) acc[i] = 0;
        if (f < d) {
          int64_t e = a + group;
          // Four edges per step with unconditional loads, so four gathers are in flight per lane
          // (a guarded loop would issue them one at a time).
          for (; e + 3 * kGroups < b; e += 4 * kGroups) {
            int32_t c[4];
            acc_t v[4];
#pragma unroll
            for (int u = 0; u < 4; ++u) {
              c[u] = __ldg(col + e + u * kGroups);
              v[u] = __ldg(value + e + u * kGroups);
            }
            Pack<scalar_t, VEC> p[4];
#pragma unroll
            for (int u = 0; u < 4; ++u) p[u] = Pack<scalar_t, VEC>::load(x + int64_t(c[u]) * d + f);
#pragma unroll
            for (int u = 0; u < 4; ++u) {
#pragma unroll
              for (int i = 0; i < VEC; ++i) acc[i] += v[u] * acc_t(p[u].v[i]);
            }
          }
          for (; e < b; e += kGroups) {
            const acc_t v = __ldg(value + e);
            const auto p = Pack<scalar_t, VEC>::load(x + int64_t(__ldg(col + e)) * d + f);
#pragma unroll
            for (int i = 0; i < VEC; ++i) acc[i] += v * acc_t(p.v[i]);
          }
        }
#pragma unroll
        for (int off = LPE; off < kWarpSize; off <<= 1) {
#pragma unroll
          for (int i = 0; i < VEC; ++i) acc[i] += __shfl_xor_sync(kFullMask, acc[i], off);
        }
        if (group == 0 && f < d) store_pack<acc_t, scalar_t, VEC>(dst + f, acc);
      }
    }
    if (re >= e1) break;
  }
}

// Finishes the rows the segment kernel left: empty rows become zero, and rows cut by segment
// boundaries get the sum of their partials in segment order.
template <typename scalar_t, int VEC, int LPE>
__global__ void __launch_bounds__(kThreads)
spmm_fixup_kernel(const int32_t* __restrict__ rowptr, scalar_t* __restrict__ out,
                  const scalar_t* __restrict__ partial, int32_t n, int64_t seg, int64_t d) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t r = t / LPE;
  const int sub = t % LPE;
  if (r >= n) return;
  const int64_t rs = __ldg(rowptr + r), re = __ldg(rowptr + r + 1);
  const int64_t sa = rs / seg, sb = rs < re ? (re - 1) / seg : sa - 1;  // sb < sa: empty row
  if (rs < re && sa == sb) return;  // finished by the segment kernel
  for (int64_t f = sub * VEC; f < d; f += LPE * VEC) {
    acc_t acc[VEC];
#pragma unroll
    for (int i = 0; i < VEC; ++i) acc[i] = 0;
    for (int64_t s = sa; s <= sb; ++s) {
      const auto p = Pack<scalar_t, VEC>::load(partial + (s * 2 + partial_slot(rs, s * seg)) * d + f);
#pragma unroll
      for (int i = 0; i < VEC; ++i) acc[i] += acc_t(p.v[i]);
    }
    store_pack<acc_t, scalar_t, VEC>(out + r * d + f, acc);
  }
}

template <typename scalar_t, int VEC, int LPE>
__global__ void __launch_bounds__(kThreads)
spmm_value_grad_kernel(const int32_t* __restrict__ rowptr, const int32_t* __restrict__ col,
                       const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ x,
                       scalar_t* __restrict__ grad_value, int32_t n, int64_t num_edges,
                       int64_t seg, int64_t num_segments, int64_t d) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kGroups = kWarpSize / LPE;
  const int64_t s = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
  if (s >= num_segments) return;
  const int lane = threadIdx.x % kWarpSize;
  const int group = lane / LPE;
  const int sub = lane % LPE;
  const int64_t e0 = s * seg;
  const int64_t e1 = min(num_edges, e0 + seg);
  int32_t r = row_of_edge(rowptr, n, e0);
  // Every lane runs the same number of rounds so that the shuffles below see the full warp.
  for (int64_t base = e0; base < e1; base += kGroups) {
    const int64_t e = base + group;
    const bool valid = e < e1;
    acc_t dot = 0;
    if (valid) {
      while (__ldg(rowptr + r + 1) <= e) ++r;
      const scalar_t* g_row = grad_out + int64_t(r) * d;
      const scalar_t* x_row = x + int64_t(__ldg(col + e)) * d;
      for (int64_t f = sub * VEC; f < d; f += LPE * VEC) {
        const auto pg = Pack<scalar_t, VEC>::load(g_row + f);
        const auto px = Pack<scalar_t, VEC>::load(x_row + f);
#pragma unroll
        for (int i = 0; i < VEC; ++i) dot += acc_t(pg.v[i]) * acc_t(px.v[i]);
      }
    }
#pragma unroll
    for (int off = 1; off < LPE; off <<= 1) dot += __shfl_xor_sync(kFullMask, dot, off);
    if (valid && sub == 0) grad_value[e] = static_cast<scalar_t>(dot);
  }
}

// Float rows whose width is a multiple of 4 and whose base is 16-byte aligned use float4 loads.
template <typename scalar_t>
bool use_vec4(int64_t d, std::initializer_list<const void*> ptrs) {
  if (!std::is_same<scalar_t, float>::value || d % 4 != 0) return false;
  for (const void* p : ptrs) if (!aligned16(p)) return false;
  return true;
}

template <typename F>
void dispatch_vec(bool vec4, F&& f) {
  if (vec4) f(std::integral_constant<int, 4>{});
  else f(std::integral_constant<int, 1>{});
}

int64_t blocks_for(int64_t threads) { return (threads + kThreads - 1) / kThreads; }

at::Tensor spmm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& value,
                const at::Tensor& t_rowptr, const at::Tensor& t_col, const at::Tensor& t_perm,
                const at::Tensor& x) {
  (void)t_rowptr, (void)t_col, (void)t_perm;  // consumed by autograd only
  check_spmm_args(rowptr, col, value, x, c10::DeviceType::CUDA);

  const c10::cuda::CUDAGuard guard(x.device());
  const auto rowptr_c = rowptr.contiguous();
  const auto col_c = col.contiguous();
  const auto value_c = value.contiguous();
  const auto x_c = x.contiguous();
  const int64_t n = rowptr.numel() - 1;
  const int64_t d = x.size(1);
  const int64_t num_edges = col.numel();
  auto out = at::empty({n, d}, x.options());
  if (n == 0 || d == 0) return out;

  const int64_t seg = segment_length(num_edges, num_sms(x.get_device()));
  const int64_t num_segments = (num_edges + seg - 1) / seg;
  auto partial = at::empty({std::max<int64_t>(num_segments, 1) * 2, d}, x.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "irllrec_fast::spmm (CUDA)", [&] {
    const bool vec4 = use_vec4<scalar_t>(d, {x_c.data_ptr()});
    dispatch_vec(vec4, [&](auto vec_c) {
      constexpr int VEC = decltype(vec_c)::value;
      dispatch_lanes(lanes_per_row(d, VEC), [&](auto lanes_c) {
        constexpr int LPE = decltype(lanes_c)::value;
        if (num_segments > 0) {
          spmm_segment_kernel<scalar_t, VEC, LPE>
              <<<blocks_for(num_segments * kWarpSize), kThreads, 0, stream>>>(
                  rowptr_c.data_ptr<int32_t>(), col_c.data_ptr<int32_t>(),
                  value_c.data_ptr<scalar_t>(), x_c.data_ptr<scalar_t>(),
                  out.data_ptr<scalar_t>(), partial.data_ptr<scalar_t>(), int32_t(n), num_edges,
                  seg, num_segments, d);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        spmm_fixup_kernel<scalar_t, VEC, LPE><<<blocks_for(n * LPE), kThreads, 0, stream>>>(
            rowptr_c.data_ptr<int32_t>(), out.data_ptr<scalar_t>(), partial.data_ptr<scalar_t>(),
            int32_t(n), seg, d);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return out;
}

at::Tensor spmm_backward_value(const at::Tensor& rowptr, const at::Tensor& col,
                               const at::Tensor& grad_out, const at::Tensor& x) {
  check_spmm_backward_value_args(rowptr, col, grad_out, x, c10::DeviceType::CUDA);

  const c10::cuda::CUDAGuard guard(x.device());
  const auto rowptr_c = rowptr.contiguous();
  const auto col_c = col.contiguous();
  const auto g_c = grad_out.contiguous();
  const auto x_c = x.contiguous();
  const int64_t n = rowptr.numel() - 1;
  const int64_t d = x.size(1);
  const int64_t num_edges = col.numel();
  auto grad_value = at::empty({num_edges}, x.options());
  if (num_edges == 0) return grad_value;
  if (d == 0) return grad_value.zero_();

  const int64_t seg = segment_length(num_edges, num_sms(x.get_device()));
  const int64_t num_segments = (num_edges + seg - 1) / seg;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "irllrec_fast::spmm_backward_value (CUDA)", [&] {
    const bool vec4 = use_vec4<scalar_t>(d, {x_c.data_ptr(), g_c.data_ptr()});
    dispatch_vec(vec4, [&](auto vec_c) {
      constexpr int VEC = decltype(vec_c)::value;
      dispatch_lanes(lanes_per_row(d, VEC), [&](auto lanes_c) {
        constexpr int LPE = decltype(lanes_c)::value;
        spmm_value_grad_kernel<scalar_t, VEC, LPE>
            <<<blocks_for(num_segments * kWarpSize), kThreads, 0, stream>>>(
                rowptr_c.data_ptr<int32_t>(), col_c.data_ptr<int32_t>(),
                g_c.data_ptr<scalar_t>(), x_c.data_ptr<scalar_t>(),
                grad_value.data_ptr<scalar_t>(), int32_t(n), num_edges, seg, num_segments, d);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return grad_value;
}

}  // namespace
}  // namespace cuda
}  // namespace irllrec_fast

TORCH_LIBRARY_IMPL(irllrec_fast, CUDA, m) {
  m.impl("spmm", &irllrec_fast::cuda::spmm);
  m.impl("spmm_backward_value", &irllrec_fast::cuda::spmm_backward_value);
}
