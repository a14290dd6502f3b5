// The prototypes of one intent_assign call, packed for the tile kernels of
// intent_assign_kernels.h, and a thread's scratch for its tiles. Shared by both SIMD variants.
#pragma once

#include <cstdint>
#include <memory>

namespace irllrec_fast {
namespace cpu {

// The tile kernels work on 32-byte vectors, two at a time; packed columns are padded to this.
template <typename scalar_t>
constexpr int64_t assign_column_block() { return 2 * 32 / int64_t(sizeof(scalar_t)); }

// wp [d, Kp] = w with zero columns up to Kp; wt [Kp, dp] = w^T with zero rows up to Kp and zero
// columns up to dp (K and d rounded up to the column block).
template <typename scalar_t>
struct AssignWeights {
  const scalar_t* wp;
  const scalar_t* wt;
  int64_t d, K, Kp, dp;
};

// Per-thread buffers for tiles of up to T rows: logits / probabilities, their gradient, and the
// padded output rows when d is not a multiple of the column block. Left uninitialised: the tile
// kernels write every entry before reading it.
template <typename scalar_t>
struct AssignScratch {
  struct Buffer {
    std::unique_ptr<scalar_t[]> values;
    explicit Buffer(int64_t size) : values(new scalar_t[size]) {}
    scalar_t* data() { return values.get(); }
  };
  Buffer z, dz, o;
  AssignScratch(int64_t T, const AssignWeights<scalar_t>& w)
      : z(T * w.Kp), dz(T * w.Kp), o(T * w.dp) {}
};

}  // namespace cpu
}  // namespace irllrec_fast
