// Dynamic scheduling of independent work items over at::parallel_for's threads.
//
// at::parallel_for hands each thread one fixed, contiguous share of the range. On a machine
// whose cores are shared with other work (CI, a laptop, the 2-core boxes this project is timed
// on) one descheduled thread then holds up the whole call. Here every thread takes the next
// unclaimed item until none is left, so a slow thread simply does fewer items. Which thread runs
// an item never changes what the item computes, so results stay deterministic.
#pragma once

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>

namespace irllrec_fast {
namespace cpu {

// Calls f(item) once for every item in [0, count), on up to at::get_num_threads() threads.
template <typename F>
void parallel_for_each_item(int64_t count, const F& f) {
  if (count <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(count, at::get_num_threads());
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t item = next.fetch_add(1); item < count; item = next.fetch_add(1)) f(item);
  });
}

}  // namespace cpu
}  // namespace irllrec_fast
