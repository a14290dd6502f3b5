// CUDA kernels of `intent_propagate` (IRLLREC_SPEC.md section 2) and its backward for r and x.
//
// As on the CPU, nothing per edge is stored: alpha and its gradient are recomputed on every edge
// from per-node quantities (rhat, the row sums S, q = <g, out>). Per-node work (normalising r,
// preparing the backward, the norm's backward) is one warp per row. The edge passes walk the
// nonzeros in warp-sized segments (csr_segments.cuh), so power-law rows are spread over many
// warps: inside a warp, groups of LPE lanes each take one edge; a group's lanes hold the features
// of a row (VEC per lane, CH chunks when d exceeds a warp's worth), reduce dot products with
// shuffles inside the group, and the groups' accumulators are combined by shuffles at the end of
// a row. A row cut by segment boundaries leaves one partial result per segment, added in segment
// order by a fixup kernel. No atomics: the same inputs give bitwise the same results.
//
// Passes: forward (alpha, S and the weighted sum in one pass); backward over a general
// structure: rows of the graph (row part of dL/drhat), then rows of the transpose (dL/dx and the
// column part); over a symmetric structure both in one pass over the rows.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <initializer_list>
#include <tuple>

#include "../checks.h"
#include "../op_checks.h"
#include "csr_segments.cuh"
#include "launch_utils.cuh"

namespace irllrec_fast {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr double kNormEps = 1e-12;  // F.normalize's default, as the reference uses it

template <int LANES, typename T>
__device__ __forceinline__ T lanes_sum(T v) {  // over aligned groups of LANES lanes
#pragma unroll
  for (int off = 1; off < LANES; off <<= 1) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}

template <int LPE, typename T>
__device__ __forceinline__ T across_groups_sum(T v) {  // over the 32 / LPE groups of a warp
#pragma unroll
  for (int off = LPE; off < kWarpSize; off <<= 1) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}

// The features of one d-row held by one lane of an LPE-lane group: features
// (c * LPE + sub) * VEC + i for chunk c < CH and i < VEC.
template <typename scalar_t, int VEC, int LPE, int CH>
struct Frag {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t v[CH][VEC];

  __device__ __forceinline__ static int64_t feature(int c, int sub) {
    return (int64_t(c) * LPE + sub) * VEC;
  }
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int c = 0; c < CH; ++c)
#pragma unroll
      for (int i = 0; i < VEC; ++i) v[c][i] = 0;
  }
  // through the read-only cache: for arrays no thread writes during the kernel
  __device__ __forceinline__ void load(const scalar_t* __restrict__ row, int sub, int64_t d) {
#pragma unroll
    for (int c = 0; c < CH; ++c) {
      const int64_t f = feature(c, sub);
      if (f < d) {  // VEC > 1 only when d % VEC == 0: a pack is all in or all out
        const auto p = Pack<scalar_t, VEC>::load(row + f);
#pragma unroll
        for (int i = 0; i < VEC; ++i) v[c][i] = p.v[i];
      } else {
#pragma unroll
        for (int i = 0; i < VEC; ++i) v[c][i] = 0;
      }
    }
  }
  __device__ __forceinline__ void load_plain(const scalar_t* row, int sub, int64_t d) {
#pragma unroll
    for (int c = 0; c < CH; ++c) {
      const int64_t f = feature(c, sub);
#pragma unroll
      for (int i = 0; i < VEC; ++i) v[c][i] = f < d ? acc_t(row[f + i]) : acc_t(0);
    }
  }
  // this lane's share of <*this, o>; lanes_sum<LPE> completes it
  __device__ __forceinline__ acc_t dot(const Frag& o) const {
    acc_t s = 0;
#pragma unroll
    for (int c = 0; c < CH; ++c)
#pragma unroll
      for (int i = 0; i < VEC; ++i) s += v[c][i] * o.v[c][i];
    return s;
  }
  __device__ __forceinline__ void axpy(acc_t a, const Frag& o) {
#pragma unroll
    for (int c = 0; c < CH; ++c)
#pragma unroll
      for (int i = 0; i < VEC; ++i) v[c][i] += a * o.v[c][i];
  }
  __device__ __forceinline__ void add(const Frag& o) { axpy(acc_t(1), o); }
  __device__ __forceinline__ void reduce_groups() {
#pragma unroll
    for (int c = 0; c < CH; ++c)
#pragma unroll
      for (int i = 0; i < VEC; ++i) v[c][i] = across_groups_sum<LPE>(v[c][i]);
  }
  __device__ __forceinline__ void store(scalar_t* row, int sub, int64_t d, acc_t scale) const {
#pragma unroll
    for (int c = 0; c < CH; ++c) {
      const int64_t f = feature(c, sub);
      if (f < d) {
        acc_t s[VEC];
#pragma unroll
        for (int i = 0; i < VEC; ++i) s[i] = v[c][i] * scale;
        store_pack<acc_t, scalar_t, VEC>(row + f, s);
      }
    }
  }
};

// Where a segment's share of a row goes: the row itself when the segment holds all its edges,
// else the segment's partial slot (see csr_segments.cuh).
struct SegmentRow {
  int64_t begin, end;  // the row's edges inside this segment
  bool complete;
  int64_t slot;        // partial record index when !complete
};

// Walks the rows of segment s, calling row_fn(r, SegmentRow) for each row with edges in it.
template <typename RowFn>
__device__ __forceinline__ void for_segment_rows(const int32_t* __restrict__ rowptr, int32_t n,
                                                 int64_t num_edges, int64_t seg, int64_t s,
                                                 RowFn&& row_fn) {
  const int64_t e0 = s * seg;
  const int64_t e1 = min(num_edges, e0 + seg);
  for (int32_t r = row_of_edge(rowptr, n, e0); r < n; ++r) {
    const int64_t rs = __ldg(rowptr + r), re = __ldg(rowptr + r + 1);
    const int64_t a = max(rs, e0), b = min(re, e1);
    if (b > a)
      row_fn(r, SegmentRow{a, b, rs >= e0 && re <= e1, s * 2 + partial_slot(rs, e0)});
    if (re >= e1) break;
  }
}

// True when the fixup kernel must finish row r: it is empty or cut by a segment boundary;
// [sa, sb] are then the segments holding its edges (none when empty).
__device__ __forceinline__ bool needs_fixup(int64_t rs, int64_t re, int64_t seg, int64_t& sa,
                                            int64_t& sb) {
  sa = rs / seg;
  sb = rs < re ? (re - 1) / seg : sa - 1;
  return !(rs < re && sa == sb);
}

// ------------------------------------------------------------------ per-node kernels
// One warp per row, lanes over the features.

// norm = ||r||, rhat = r / max(norm, eps): the division as F.normalize does it.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
normalize_kernel(const scalar_t* __restrict__ r, scalar_t* __restrict__ rhat,
                 scalar_t* __restrict__ norm, int64_t n, int64_t d) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarpSize);
  for (int64_t v = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize; v < n; v += warps) {
    acc_t ss = 0;
    for (int64_t f = lane; f < d; f += kWarpSize) ss += acc_t(r[v * d + f]) * acc_t(r[v * d + f]);
    const scalar_t nv = static_cast<scalar_t>(sqrt(lanes_sum<kWarpSize>(ss)));
    const scalar_t denom = max(nv, static_cast<scalar_t>(kNormEps));
    for (int64_t f = lane; f < d; f += kWarpSize) rhat[v * d + f] = r[v * d + f] / denom;
    if (lane == 0) norm[v] = nv;
  }
}

// Backward preparation: rhat again (same division), q = <g, out>, inv = 1 / S (0 if S <= 0).
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
prepare_backward_kernel(const scalar_t* __restrict__ r, const scalar_t* __restrict__ norm,
                        const scalar_t* __restrict__ g, const scalar_t* __restrict__ out,
                        const scalar_t* __restrict__ row_sum, scalar_t* __restrict__ rhat,
                        scalar_t* __restrict__ q, scalar_t* __restrict__ inv_sum, int64_t n,
                        int64_t d) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarpSize);
  for (int64_t v = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize; v < n; v += warps) {
    const scalar_t denom = max(norm[v], static_cast<scalar_t>(kNormEps));
    acc_t dot = 0;
    for (int64_t f = lane; f < d; f += kWarpSize) {
      rhat[v * d + f] = r[v * d + f] / denom;
      dot += acc_t(g[v * d + f]) * acc_t(out[v * d + f]);
    }
    dot = lanes_sum<kWarpSize>(dot);
    if (lane == 0) {
      q[v] = static_cast<scalar_t>(dot);
      inv_sum[v] = row_sum[v] > 0 ? scalar_t(1) / row_sum[v] : scalar_t(0);
    }
  }
}

// grad_r = (drhat - rhat <rhat, drhat>) / ||r|| if ||r|| >= eps, else drhat / eps; in place.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
normalize_backward_kernel(const scalar_t* __restrict__ rhat, const scalar_t* __restrict__ norm,
                          scalar_t* __restrict__ grad_r, int64_t n, int64_t d) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarpSize);
  for (int64_t v = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize; v < n; v += warps) {
    const scalar_t nv = norm[v];
    if (nv >= static_cast<scalar_t>(kNormEps)) {
      acc_t proj = 0;
      for (int64_t f = lane; f < d; f += kWarpSize)
        proj += acc_t(rhat[v * d + f]) * acc_t(grad_r[v * d + f]);
      proj = lanes_sum<kWarpSize>(proj);
      const acc_t inv = acc_t(1) / acc_t(nv);
      for (int64_t f = lane; f < d; f += kWarpSize)
        grad_r[v * d + f] = static_cast<scalar_t>(
            (acc_t(grad_r[v * d + f]) - proj * acc_t(rhat[v * d + f])) * inv);
    } else {  // the clamp is active: rhat = r / eps and the norm passes no gradient
      const acc_t inv = acc_t(1) / acc_t(kNormEps);
      for (int64_t f = lane; f < d; f += kWarpSize)
        grad_r[v * d + f] = static_cast<scalar_t>(acc_t(grad_r[v * d + f]) * inv);
    }
  }
}

// ------------------------------------------------------------------ edge passes

struct SegmentGrid {
  int64_t seg, num_segments, num_edges;
};

__device__ __forceinline__ int64_t segment_of_warp() {
  return (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize;
}

// Forward: out[h] = sum_t alpha_ht x_t / S_h, row_sum[h] = S_h. Partial record: d sums, then S
// at offset dpad.
template <typename scalar_t, int VEC, int LPE, int CH>
__global__ void __launch_bounds__(kThreads)
forward_segment_kernel(const int32_t* __restrict__ rowptr, const int32_t* __restrict__ col,
                       const scalar_t* __restrict__ rhat, const scalar_t* __restrict__ x,
                       scalar_t* __restrict__ out, scalar_t* __restrict__ row_sum,
                       scalar_t* __restrict__ partial, int32_t n, int64_t d, int64_t dpad,
                       SegmentGrid grid) {
  using acc_t = at::opmath_type<scalar_t>;
  using F = Frag<scalar_t, VEC, LPE, CH>;
  constexpr int kGroups = kWarpSize / LPE;
  const int64_t s = segment_of_warp();
  if (s >= grid.num_segments) return;  // whole warps only: blockDim is a multiple of 32
  const int lane = threadIdx.x % kWarpSize, group = lane / LPE, sub = lane % LPE;
  const int64_t record = dpad + 4;
  for_segment_rows(rowptr, n, grid.num_edges, grid.seg, s, [&](int32_t h, SegmentRow row) {
    F rh;
    rh.load(rhat + int64_t(h) * d, sub, d);
    F acc;
    acc.zero();
    acc_t sum = 0;
    for (int64_t base = row.begin; base < row.end; base += kGroups) {  // same rounds for all lanes
      const int64_t e = base + group;
      const bool valid = e < row.end;
      const int64_t t = valid ? __ldg(col + e) : h;
      F rt, xt;
      rt.load(rhat + t * d, sub, d);
      xt.load(x + t * d, sub, d);
      const acc_t dot = lanes_sum<LPE>(rh.dot(rt));
      const acc_t alpha = valid ? (dot + acc_t(1)) * acc_t(0.5) : acc_t(0);
      acc.axpy(alpha, xt);
      sum += alpha;
    }
    acc.reduce_groups();
    sum = across_groups_sum<LPE>(sum);
    if (group != 0) return;
    if (row.complete) {
      acc.store(out + int64_t(h) * d, sub, d, sum > 0 ? acc_t(1) / sum : acc_t(0));
      if (sub == 0) row_sum[h] = static_cast<scalar_t>(sum);
    } else {
      scalar_t* dst = partial + row.slot * record;
      acc.store(dst, sub, d, acc_t(1));
      if (sub == 0) dst[dpad] = static_cast<scalar_t>(sum);
    }
  });
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
forward_fixup_kernel(const int32_t* __restrict__ rowptr, const scalar_t* __restrict__ partial,
                     scalar_t* __restrict__ out, scalar_t* __restrict__ row_sum, int32_t n,
                     int64_t d, int64_t dpad, int64_t seg) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t width = d > 0 ? d : 1;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t h = idx / width, f = idx % width;
  if (h >= n) return;
  const int64_t rs = rowptr[h], re = rowptr[h + 1];
  int64_t sa, sb;
  if (!needs_fixup(rs, re, seg, sa, sb)) return;
  const int64_t record = dpad + 4;
  acc_t acc = 0, sum = 0;
  for (int64_t s = sa; s <= sb; ++s) {
    const scalar_t* src = partial + (s * 2 + partial_slot(rs, s * seg)) * record;
    if (f < d) acc += acc_t(src[f]);
    sum += acc_t(src[dpad]);
  }
  if (f < d) out[h * d + f] = static_cast<scalar_t>(acc * (sum > 0 ? acc_t(1) / sum : acc_t(0)));
  if (f == 0) row_sum[h] = static_cast<scalar_t>(sum);
}

// Backward over a general structure, pass 1 (rows h of the graph): the row part of dL/drhat_h,
// (1 / 2 S_h) sum_t (<g_h, x_t> - q_h) rhat_t, into drhat. Partial record: d unscaled sums.
template <typename scalar_t, int VEC, int LPE, int CH>
__global__ void __launch_bounds__(kThreads)
row_part_segment_kernel(const int32_t* __restrict__ rowptr, const int32_t* __restrict__ col,
                        const scalar_t* __restrict__ rhat, const scalar_t* __restrict__ x,
                        const scalar_t* __restrict__ g, const scalar_t* __restrict__ q,
                        const scalar_t* __restrict__ inv_sum, scalar_t* __restrict__ drhat,
                        scalar_t* __restrict__ partial, int32_t n, int64_t d, int64_t dpad,
                        SegmentGrid grid) {
  using acc_t = at::opmath_type<scalar_t>;
  using F = Frag<scalar_t, VEC, LPE, CH>;
  constexpr int kGroups = kWarpSize / LPE;
  const int64_t s = segment_of_warp();
  if (s >= grid.num_segments) return;
  const int lane = threadIdx.x % kWarpSize, group = lane / LPE, sub = lane % LPE;
  for_segment_rows(rowptr, n, grid.num_edges, grid.seg, s, [&](int32_t h, SegmentRow row) {
    const acc_t inv_h = __ldg(inv_sum + h);
    F acc;
    acc.zero();
    if (inv_h != 0) {  // uniform over the warp
      F gh;
      gh.load(g + int64_t(h) * d, sub, d);
      const acc_t qh = __ldg(q + h);
      for (int64_t base = row.begin; base < row.end; base += kGroups) {
        const int64_t e = base + group;
        const bool valid = e < row.end;
        const int64_t t = valid ? __ldg(col + e) : h;
        F xt, rt;
        xt.load(x + t * d, sub, d);
        rt.load(rhat + t * d, sub, d);
        const acc_t dot = lanes_sum<LPE>(gh.dot(xt));
        acc.axpy(valid ? dot - qh : acc_t(0), rt);
      }
      acc.reduce_groups();
    }
    if (group != 0) return;
    if (row.complete) acc.store(drhat + int64_t(h) * d, sub, d, acc_t(0.5) * inv_h);
    else acc.store(partial + row.slot * dpad, sub, d, acc_t(1));
  });
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
row_part_fixup_kernel(const int32_t* __restrict__ rowptr, const scalar_t* __restrict__ partial,
                      const scalar_t* __restrict__ inv_sum, scalar_t* __restrict__ drhat,
                      int32_t n, int64_t d, int64_t dpad, int64_t seg) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t h = idx / d, f = idx % d;
  if (h >= n) return;
  const int64_t rs = rowptr[h], re = rowptr[h + 1];
  int64_t sa, sb;
  if (!needs_fixup(rs, re, seg, sa, sb)) return;
  acc_t acc = 0;
  for (int64_t s = sa; s <= sb; ++s)
    acc += acc_t(partial[(s * 2 + partial_slot(rs, s * seg)) * dpad + f]);
  drhat[h * d + f] = static_cast<scalar_t>(acc * acc_t(0.5) * acc_t(inv_sum[h]));
}

// Backward, the transpose's rows t (edges (h, t) of the graph): dL/dx_t = sum_h alpha_ht / S_h
// g_h and the column part of dL/drhat_t, sum_h (<g_h, x_t> - q_h) / (2 S_h) rhat_h, added to the
// row part already in drhat. SYMMETRIC: the structure is its own transpose, and the row part of
// t (edges (t, u) = the same list) is added here too instead of in a pass of its own.
// Partial record: d sums for dL/dx, then d for dL/drhat at offset dpad.
template <typename scalar_t, int VEC, int LPE, int CH, bool SYMMETRIC>
__global__ void __launch_bounds__(kThreads)
column_part_segment_kernel(const int32_t* __restrict__ t_rowptr, const int32_t* __restrict__ t_col,
                           const scalar_t* __restrict__ rhat, const scalar_t* __restrict__ x,
                           const scalar_t* __restrict__ g, const scalar_t* __restrict__ q,
                           const scalar_t* __restrict__ inv_sum, scalar_t* __restrict__ drhat,
                           scalar_t* __restrict__ grad_x, scalar_t* __restrict__ partial,
                           int32_t n, int64_t d, int64_t dpad, SegmentGrid grid) {
  using acc_t = at::opmath_type<scalar_t>;
  using F = Frag<scalar_t, VEC, LPE, CH>;
  constexpr int kGroups = kWarpSize / LPE;
  const int64_t s = segment_of_warp();
  if (s >= grid.num_segments) return;
  const int lane = threadIdx.x % kWarpSize, group = lane / LPE, sub = lane % LPE;
  for_segment_rows(t_rowptr, n, grid.num_edges, grid.seg, s, [&](int32_t t, SegmentRow row) {
    F rt, xt, gt;
    rt.load(rhat + int64_t(t) * d, sub, d);
    xt.load(x + int64_t(t) * d, sub, d);
    acc_t qt = 0, row_scale = 0;
    if (SYMMETRIC) {
      gt.load(g + int64_t(t) * d, sub, d);
      qt = __ldg(q + t);
      row_scale = acc_t(0.5) * acc_t(__ldg(inv_sum + t));
    }
    F acc_x, acc_r;
    acc_x.zero();
    acc_r.zero();
    for (int64_t base = row.begin; base < row.end; base += kGroups) {
      const int64_t e = base + group;
      const bool valid = e < row.end;
      const int64_t h = valid ? __ldg(t_col + e) : t;
      const acc_t inv_h = valid ? acc_t(__ldg(inv_sum + h)) : acc_t(0);
      const acc_t qh = __ldg(q + h);
      F rh, gh;
      rh.load(rhat + h * d, sub, d);
      gh.load(g + h * d, sub, d);
      const acc_t cos = lanes_sum<LPE>(rh.dot(rt));
      const acc_t gx = lanes_sum<LPE>(gh.dot(xt));
      acc_t coef = (gx - qh) * acc_t(0.5) * inv_h;
      if (SYMMETRIC) {
        F xh;
        xh.load(x + h * d, sub, d);
        const acc_t gtx = lanes_sum<LPE>(gt.dot(xh));
        if (valid) coef += (gtx - qt) * row_scale;
      }
      acc_x.axpy((cos + acc_t(1)) * acc_t(0.5) * inv_h, gh);
      acc_r.axpy(coef, rh);
    }
    acc_x.reduce_groups();
    acc_r.reduce_groups();
    if (group != 0) return;
    if (row.complete) {
      acc_x.store(grad_x + int64_t(t) * d, sub, d, acc_t(1));
      if (!SYMMETRIC) {  // drhat holds the row part of t, written by the previous pass
        F row_part;
        row_part.load_plain(drhat + int64_t(t) * d, sub, d);
        acc_r.add(row_part);
      }
      acc_r.store(drhat + int64_t(t) * d, sub, d, acc_t(1));
    } else {
      scalar_t* dst = partial + row.slot * 2 * dpad;
      acc_x.store(dst, sub, d, acc_t(1));
      acc_r.store(dst + dpad, sub, d, acc_t(1));
    }
  });
}

template <typename scalar_t, bool SYMMETRIC>
__global__ void __launch_bounds__(kThreads)
column_part_fixup_kernel(const int32_t* __restrict__ t_rowptr, const scalar_t* __restrict__ partial,
                         scalar_t* __restrict__ drhat, scalar_t* __restrict__ grad_x, int32_t n,
                         int64_t d, int64_t dpad, int64_t seg) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t t = idx / d, f = idx % d;
  if (t >= n) return;
  const int64_t rs = t_rowptr[t], re = t_rowptr[t + 1];
  int64_t sa, sb;
  if (!needs_fixup(rs, re, seg, sa, sb)) return;
  acc_t gx = 0, dr = 0;
  for (int64_t s = sa; s <= sb; ++s) {
    const scalar_t* src = partial + (s * 2 + partial_slot(rs, s * seg)) * 2 * dpad;
    gx += acc_t(src[f]);
    dr += acc_t(src[dpad + f]);
  }
  grad_x[t * d + f] = static_cast<scalar_t>(gx);
  drhat[t * d + f] = static_cast<scalar_t>((SYMMETRIC ? acc_t(0) : acc_t(drhat[t * d + f])) + dr);
}

// ------------------------------------------------------------------ launchers

int64_t blocks_for(int64_t threads) { return std::max<int64_t>(1, (threads + kThreads - 1) / kThreads); }

// Blocks for the one-warp-per-row kernels.
int64_t row_blocks(int64_t n, int device) {
  const int64_t warps_per_block = kThreads / kWarpSize;
  return std::max<int64_t>(1, std::min<int64_t>((n + warps_per_block - 1) / warps_per_block,
                                                int64_t(num_sms(device)) * 16));
}

// Calls f(VEC, LPE, CH) as integral constants: VEC = 4 for float rows of 16-byte aligned packs,
// LPE lanes per row (a power of two, at least 4), CH chunks when d exceeds a warp's worth.
template <typename scalar_t, typename F>
void dispatch_layout(int64_t d, bool vec4, F&& f) {
  const auto with_vec = [&](auto vec_c) {
    constexpr int VEC = decltype(vec_c)::value;
    const int64_t need = (d + VEC - 1) / VEC;
    using std::integral_constant;
    if (need <= 4) f(vec_c, integral_constant<int, 4>{}, integral_constant<int, 1>{});
    else if (need <= 8) f(vec_c, integral_constant<int, 8>{}, integral_constant<int, 1>{});
    else if (need <= 16) f(vec_c, integral_constant<int, 16>{}, integral_constant<int, 1>{});
    else if (need <= 32) f(vec_c, integral_constant<int, 32>{}, integral_constant<int, 1>{});
    else if (need <= 64) f(vec_c, integral_constant<int, 32>{}, integral_constant<int, 2>{});
    else if (need <= 128) f(vec_c, integral_constant<int, 32>{}, integral_constant<int, 4>{});
    else if (need <= 256) f(vec_c, integral_constant<int, 32>{}, integral_constant<int, 8>{});
    else if (need <= 512) f(vec_c, integral_constant<int, 32>{}, integral_constant<int, 16>{});
    else TORCH_CHECK(false, "intent_propagate on CUDA supports up to ", 512 * VEC,
                     " features, got d = ", d);
  };
  if constexpr (std::is_same<scalar_t, float>::value) {
    if (vec4) {
      with_vec(std::integral_constant<int, 4>{});
      return;
    }
  }
  with_vec(std::integral_constant<int, 1>{});
}

template <typename scalar_t>
bool use_vec4(int64_t d, std::initializer_list<const void*> ptrs) {
  if (!std::is_same<scalar_t, float>::value || d % 4 != 0) return false;
  for (const void* p : ptrs) if (!aligned16(p)) return false;
  return true;
}

bool same_tensor(const at::Tensor& a, const at::Tensor& b) {
  return a.data_ptr() == b.data_ptr() && a.sizes() == b.sizes() && a.strides() == b.strides();
}

int64_t round_up4(int64_t v) { return (v + 3) / 4 * 4; }

std::tuple<at::Tensor, at::Tensor, at::Tensor> intent_propagate(
    const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
    const at::Tensor& t_col, const at::Tensor& r, const at::Tensor& x) {
  check_intent_propagate_args(rowptr, col, t_rowptr, t_col, r, x, c10::DeviceType::CUDA);

  const c10::cuda::CUDAGuard guard(x.device());
  const auto rowptr_c = rowptr.contiguous();
  const auto col_c = col.contiguous();
  const auto r_c = r.contiguous();
  const auto x_c = x.contiguous();
  const int64_t n = rowptr.numel() - 1;
  const int64_t d = x.size(1);
  const int64_t num_edges = col.numel();
  auto out = at::empty({n, d}, x.options());
  auto row_sum = at::empty({n}, x.options());
  auto norm = at::empty({n}, x.options());
  if (n == 0) return {out, row_sum, norm};
  auto rhat = at::empty({n, d}, x.options());
  const int device = x.get_device();
  const int64_t seg = segment_length(num_edges, num_sms(device));
  const SegmentGrid grid{seg, (num_edges + seg - 1) / seg, num_edges};
  const int64_t dpad = round_up4(d);
  auto partial = at::empty({std::max<int64_t>(grid.num_segments, 1) * 2, dpad + 4}, x.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "irllrec_fast::intent_propagate (CUDA)", [&] {
    normalize_kernel<scalar_t><<<row_blocks(n, device), kThreads, 0, stream>>>(
        r_c.data_ptr<scalar_t>(), rhat.data_ptr<scalar_t>(), norm.data_ptr<scalar_t>(), n, d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const bool vec4 = use_vec4<scalar_t>(d, {x_c.data_ptr(), out.data_ptr(), rhat.data_ptr()});
    dispatch_layout<scalar_t>(d, vec4, [&](auto vec_c, auto lpe_c, auto ch_c) {
      constexpr int VEC = decltype(vec_c)::value, LPE = decltype(lpe_c)::value,
                    CH = decltype(ch_c)::value;
      if (grid.num_segments > 0) {
        forward_segment_kernel<scalar_t, VEC, LPE, CH>
            <<<blocks_for(grid.num_segments * kWarpSize), kThreads, 0, stream>>>(
                rowptr_c.data_ptr<int32_t>(), col_c.data_ptr<int32_t>(),
                rhat.data_ptr<scalar_t>(), x_c.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                row_sum.data_ptr<scalar_t>(), partial.data_ptr<scalar_t>(), int32_t(n), d, dpad,
                grid);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
    forward_fixup_kernel<scalar_t><<<blocks_for(n * std::max<int64_t>(d, 1)), kThreads, 0, stream>>>(
        rowptr_c.data_ptr<int32_t>(), partial.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
        row_sum.data_ptr<scalar_t>(), int32_t(n), d, dpad, seg);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, row_sum, norm};
}

std::tuple<at::Tensor, at::Tensor> intent_propagate_backward(
    const at::Tensor& grad, const at::Tensor& rowptr, const at::Tensor& col,
    const at::Tensor& t_rowptr, const at::Tensor& t_col, const at::Tensor& r, const at::Tensor& x,
    const at::Tensor& out, const at::Tensor& row_sum, const at::Tensor& norm) {
  check_intent_propagate_backward_args(grad, rowptr, col, t_rowptr, t_col, r, x, out, row_sum,
                                       norm, c10::DeviceType::CUDA);
  const auto dtype = x.scalar_type();
  const int64_t d = x.size(1);

  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t n = rowptr.numel() - 1;
  auto grad_r = at::empty({n, d}, x.options());
  auto grad_x = at::empty({n, d}, x.options());
  if (n == 0 || d == 0) return {grad_r, grad_x};
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
  const int device = x.get_device();
  const int64_t num_edges = col.numel();
  const int64_t seg = segment_length(num_edges, num_sms(device));
  const SegmentGrid grid{seg, (num_edges + seg - 1) / seg, num_edges};
  const int64_t dpad = round_up4(d);
  auto partial = at::empty({std::max<int64_t>(grid.num_segments, 1) * 2, 2 * dpad}, x.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES(dtype, "irllrec_fast::intent_propagate_backward (CUDA)", [&] {
    prepare_backward_kernel<scalar_t><<<row_blocks(n, device), kThreads, 0, stream>>>(
        r_c.data_ptr<scalar_t>(), norm_c.data_ptr<scalar_t>(), g_c.data_ptr<scalar_t>(),
        out_c.data_ptr<scalar_t>(), row_sum_c.data_ptr<scalar_t>(), rhat.data_ptr<scalar_t>(),
        q.data_ptr<scalar_t>(), inv_sum.data_ptr<scalar_t>(), n, d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const scalar_t* rhat_p = rhat.data_ptr<scalar_t>();
    const scalar_t* x_p = x_c.data_ptr<scalar_t>();
    const scalar_t* g_p = g_c.data_ptr<scalar_t>();
    const scalar_t* q_p = q.data_ptr<scalar_t>();
    const scalar_t* inv_p = inv_sum.data_ptr<scalar_t>();
    scalar_t* drhat_p = grad_r.data_ptr<scalar_t>();  // dL/drhat first, dL/dr at the end
    scalar_t* grad_x_p = grad_x.data_ptr<scalar_t>();
    scalar_t* partial_p = partial.data_ptr<scalar_t>();
    const bool vec4 = use_vec4<scalar_t>(d, {x_p, g_p, rhat_p, drhat_p, grad_x_p});
    const int64_t fixup_blocks = blocks_for(n * d);
    dispatch_layout<scalar_t>(d, vec4, [&](auto vec_c, auto lpe_c, auto ch_c) {
      constexpr int VEC = decltype(vec_c)::value, LPE = decltype(lpe_c)::value,
                    CH = decltype(ch_c)::value;
      const int64_t segment_blocks = blocks_for(grid.num_segments * kWarpSize);
      if (!symmetric) {
        if (grid.num_segments > 0) {
          row_part_segment_kernel<scalar_t, VEC, LPE, CH><<<segment_blocks, kThreads, 0, stream>>>(
              rowptr_c.data_ptr<int32_t>(), col_c.data_ptr<int32_t>(), rhat_p, x_p, g_p, q_p,
              inv_p, drhat_p, partial_p, int32_t(n), d, dpad, grid);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        row_part_fixup_kernel<scalar_t><<<fixup_blocks, kThreads, 0, stream>>>(
            rowptr_c.data_ptr<int32_t>(), partial_p, inv_p, drhat_p, int32_t(n), d, dpad, seg);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      const auto column_pass = [&](auto symmetric_c) {
        constexpr bool SYM = decltype(symmetric_c)::value;
        const int32_t* trp = (SYM ? rowptr_c : t_rowptr_c).data_ptr<int32_t>();
        const int32_t* tc = (SYM ? col_c : t_col_c).data_ptr<int32_t>();
        if (grid.num_segments > 0) {
          column_part_segment_kernel<scalar_t, VEC, LPE, CH, SYM>
              <<<segment_blocks, kThreads, 0, stream>>>(trp, tc, rhat_p, x_p, g_p, q_p, inv_p,
                                                        drhat_p, grad_x_p, partial_p, int32_t(n),
                                                        d, dpad, grid);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        column_part_fixup_kernel<scalar_t, SYM><<<fixup_blocks, kThreads, 0, stream>>>(
            trp, partial_p, drhat_p, grad_x_p, int32_t(n), d, dpad, seg);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      if (symmetric) column_pass(std::true_type{});
      else column_pass(std::false_type{});
    });
    normalize_backward_kernel<scalar_t><<<row_blocks(n, device), kThreads, 0, stream>>>(
        rhat_p, norm_c.data_ptr<scalar_t>(), drhat_p, n, d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_r, grad_x};
}

}  // namespace
}  // namespace cuda
}  // namespace irllrec_fast

TORCH_LIBRARY_IMPL(irllrec_fast, CUDA, m) {
  m.impl("intent_propagate", &irllrec_fast::cuda::intent_propagate);
  m.impl("intent_propagate_backward", &irllrec_fast::cuda::intent_propagate_backward);
}
