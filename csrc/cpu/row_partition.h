// Splitting CSR rows into contiguous chunks of balanced work, for at::parallel_for.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace irllrec_fast {
namespace cpu {

// Returns boundaries b[0] = 0 < ... < b[k] = n such that rows [b[i], b[i+1]) carry about the same
// cost, counting each row as 1 and each nonzero as 1 (a row costs d either way). Few chunks for
// small problems, so tiny calls stay on one thread; several per thread for large ones so that
// the scheduler can even out what the estimate misses.
inline std::vector<int64_t> balanced_row_chunks(const int32_t* rowptr, int64_t n, int64_t d) {
  const int64_t nnz = rowptr[n];
  const int64_t total = n + nnz;
  constexpr int64_t kMinWorkPerChunk = 1 << 15;  // multiply-adds; below this threading costs more
  const int64_t by_work = std::max<int64_t>(1, total * std::max<int64_t>(d, 1) / kMinWorkPerChunk);
  const int64_t chunks = std::min<int64_t>({by_work, int64_t(at::get_num_threads()) * 8, n});
  std::vector<int64_t> bounds(chunks + 1, n);
  bounds[0] = 0;
  int64_t row = 0;
  for (int64_t k = 1; k < chunks; ++k) {
    const int64_t target = total * k / chunks;
    // first row whose cumulative cost (rows before it + nonzeros before it) reaches target
    int64_t lo = row, hi = n;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (mid + rowptr[mid] < target) lo = mid + 1; else hi = mid;
    }
    row = lo;
    bounds[k] = row;
  }
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  if (bounds.size() < 2) bounds.push_back(n);
  return bounds;
}

}  // namespace cpu
}  // namespace irllrec_fast
