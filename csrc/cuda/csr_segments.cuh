// Edge-balanced work split for CSR kernels on CUDA, shared by the kernels that walk edges.
//
// The nonzeros are cut into segments of `seg` consecutive edges, one warp per segment, so a
// power-law row with a million edges is spread over many warps instead of serialising one.
// A row that lies inside one segment is finished by that warp. A row cut by segment boundaries
// gets one partial result per segment it touches, in slot 0 (the segment's first row, which
// contains the segment's first edge) or slot 1 (its last row); a second kernel adds those
// partials in segment order. No float atomics anywhere, so results are bitwise reproducible.
#pragma once

#include <cstdint>

namespace irllrec_fast {
namespace cuda {

// Largest r with rowptr[r] <= e, i.e. the row that holds edge e (rows may be empty).
__device__ __forceinline__ int32_t row_of_edge(const int32_t* __restrict__ rowptr, int32_t n,
                                               int64_t e) {
  int32_t lo = 0, hi = n;  // answer in [0, n - 1]
  while (lo < hi) {
    const int32_t mid = (lo + hi + 1) >> 1;
    if (__ldg(rowptr + mid) <= e) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// Segment length for E edges: enough warps to fill the GPU, capped so that the partial buffer
// stays small (2 rows of d values per segment).
inline int64_t segment_length(int64_t num_edges, int num_sms) {
  const int64_t target_warps = int64_t(num_sms) * 64;
  int64_t seg = (num_edges + target_warps - 1) / target_warps;
  seg = seg < 32 ? 32 : seg;
  seg = seg > 2048 ? 2048 : seg;
  return seg;
}

// Partial slot of row r inside segment s (see the file comment).
__device__ __forceinline__ int partial_slot(int64_t row_start, int64_t segment_start) {
  return row_start <= segment_start ? 0 : 1;
}

}  // namespace cuda
}  // namespace irllrec_fast
