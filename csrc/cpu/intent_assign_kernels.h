// Tile kernels of intent_assign, compiled once per SIMD variant: included by intent_assign.cpp
// through simd_variants.inc, with IRLLREC_SIMD_NS set (no include guard on purpose).
//
// A tile is a few dozen rows. Its products with the prototypes ([rows, d] x [d, K] and
// [rows, K] x [K, d]) and its share of grad_w ([d, rows] x [rows, K]) are all "a few rows times a
// small matrix", done by one register-blocked kernel on 32-byte vectors (GCC vector extensions:
// one AVX register in the AVX2 variant, two SSE registers in the baseline). The prototypes are
// packed once per call with K and d padded with zeros to a multiple of two vectors
// (intent_assign_pack.h), so the kernels need no column tails: padded logits are exactly 0 and
// meet only zero rows of w^T, and the softmax masks them out. The float exp is a vector
// polynomial (libm's expf does not vectorise, and there are n * K of them per pass).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "intent_assign_pack.h"

namespace irllrec_fast {
namespace cpu {
namespace IRLLREC_SIMD_NS {

template <typename scalar_t>
struct Vec {
  static constexpr int kWidth = 32 / int(sizeof(scalar_t));
  typedef scalar_t type __attribute__((vector_size(32)));
  typedef std::conditional_t<sizeof(scalar_t) == 4, int32_t, int64_t> index_t;
  typedef index_t index_type __attribute__((vector_size(32)));

  // Loads and stores through an unaligned, may_alias vector type rather than memcpy: with memcpy,
  // GCC stored block_product's accumulators to the stack and copied them out in 16-byte pieces
  // (the products ran 10-20% slower, measured in isolation).
  typedef scalar_t unaligned __attribute__((vector_size(32), aligned(sizeof(scalar_t)), may_alias));
  static type load(const scalar_t* p) { return *reinterpret_cast<const unaligned*>(p); }
  static void store(scalar_t* p, const type& v) { *reinterpret_cast<unaligned*>(p) = v; }
  static type broadcast(scalar_t s) { return type{} + s; }
  // a where mask (all bits set), else b; comparisons of vectors give such masks. Written with
  // bit operations, which every compiler with GNU vectors supports (the vector ?: is GCC's).
  static type select(index_type mask, type a, type b) {
    return (type)((mask & (index_type)a) | (~mask & (index_type)b));
  }
  // all bits set in the lanes below `count`, none above
  static index_type head_lanes(int64_t count) {
    index_type lane;
    for (int l = 0; l < kWidth; ++l) lane[l] = l;
    return lane < index_t(count);
  }
};

// C[r, c] (+)= sum_i A[r * sa + i * si] * B[i * ldb + c]  (and + A2[...] * B2[...] with TWO)
// for r < R, c < ncols, a multiple of assign_column_block. R x 2 vector accumulators: 12 of the 16
// AVX registers for R = 6.
template <typename scalar_t, int R, bool ACCUMULATE, bool TWO>
void block_product(const scalar_t* __restrict__ A, const scalar_t* __restrict__ A2, int64_t sa,
                   int64_t si, const scalar_t* __restrict__ B, const scalar_t* __restrict__ B2,
                   int64_t ldb, int64_t inner, int64_t ncols, scalar_t* __restrict__ C,
                   int64_t ldc) {
  using V = Vec<scalar_t>;
  using vec = typename V::type;
  constexpr int W = V::kWidth;
  for (int64_t c = 0; c < ncols; c += 2 * W) {
    vec acc[R][2];
    for (int r = 0; r < R; ++r) {
      acc[r][0] = ACCUMULATE ? V::load(C + r * ldc + c) : vec{};
      acc[r][1] = ACCUMULATE ? V::load(C + r * ldc + c + W) : vec{};
    }
    for (int64_t i = 0; i < inner; ++i) {
      const vec b0 = V::load(B + i * ldb + c);
      const vec b1 = V::load(B + i * ldb + c + W);
      for (int r = 0; r < R; ++r) {
        const scalar_t a = A[r * sa + i * si];
        acc[r][0] += a * b0;
        acc[r][1] += a * b1;
      }
      if constexpr (TWO) {
        const vec d0 = V::load(B2 + i * ldb + c);
        const vec d1 = V::load(B2 + i * ldb + c + W);
        for (int r = 0; r < R; ++r) {
          const scalar_t a = A2[r * sa + i * si];
          acc[r][0] += a * d0;
          acc[r][1] += a * d1;
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      V::store(C + r * ldc + c, acc[r][0]);
      V::store(C + r * ldc + c + W, acc[r][1]);
    }
  }
}

// The same for M rows, in blocks of at most 6 rows of near-equal size (32 rows: 6 6 5 5 5 5, not
// 6 6 6 6 6 2, whose last block would keep few accumulators busy).
template <typename scalar_t, bool ACCUMULATE, bool TWO = false>
void small_product(int64_t M, const scalar_t* A, const scalar_t* A2, int64_t sa, int64_t si,
                   const scalar_t* B, const scalar_t* B2, int64_t ldb, int64_t inner,
                   int64_t ncols, scalar_t* C, int64_t ldc) {
  constexpr int kRows = 6;
  const int64_t blocks = (M + kRows - 1) / kRows;
  int64_t r = 0;
  const auto block = [&](auto rows) {
    constexpr int kBlock = decltype(rows)::value;
    block_product<scalar_t, kBlock, ACCUMULATE, TWO>(A + r * sa, TWO ? A2 + r * sa : nullptr, sa,
                                                     si, B, B2, ldb, inner, ncols, C + r * ldc,
                                                     ldc);
  };
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t rows = (M - r + (blocks - b) - 1) / (blocks - b);
    switch (rows) {
      case 1: block(std::integral_constant<int, 1>{}); break;
      case 2: block(std::integral_constant<int, 2>{}); break;
      case 3: block(std::integral_constant<int, 3>{}); break;
      case 4: block(std::integral_constant<int, 4>{}); break;
      case 5: block(std::integral_constant<int, 5>{}); break;
      default: block(std::integral_constant<int, kRows>{}); break;
    }
    r += rows;
  }
}

#include "exp2_polynomial.h"

// exp of 8 floats for x <= 0, as 2^(x log2(e)) (exp2_polynomial.h). The logits stay in natural
// units, so that a row's largest logit minus its log-sum-exp is exactly 0 (or nearly) as it was
// computed, whatever its size: base-2 logits with a natural lse would lose that at large logits.
// The product x log2(e) adds a relative error of 6e-8 * |x|, which matters only for terms far
// below the row's largest. Below 2^-126 (x < -87.3) the result is 2^-126 instead of 0, invisible
// next to the row's largest term, 1; NaN stays NaN (NaN < -126 is false).
inline Vec<float>::type exp_vec(Vec<float>::type x) {
  using V = Vec<float>;
  x = x * 1.44269504088896341f;
  x = V::select(x < -126.0f, V::broadcast(-126.0f), x);
  return exp2_of_clamped<V::type, V::index_type>(x);
}

inline Vec<double>::type exp_vec(Vec<double>::type x) {
  for (int l = 0; l < Vec<double>::kWidth; ++l) x[l] = std::exp(x[l]);
  return x;
}

// The three per-row helpers below are forced inline: GCC kept exp_shifted out of line, so every
// row paid a call through the PLT and re-broadcast the polynomial's constants (forward and
// backward measured ~5% slower).

// max over the first K entries of a row padded to whole vectors
template <typename scalar_t>
inline __attribute__((always_inline)) scalar_t row_max(const scalar_t* __restrict__ z, int64_t K) {
  using V = Vec<scalar_t>;
  using vec = typename V::type;
  constexpr int W = V::kWidth;
  vec m = V::broadcast(-std::numeric_limits<scalar_t>::infinity());
  int64_t k = 0;
  for (; k + W <= K; k += W) {
    const vec v = V::load(z + k);
    m = V::select(v > m, v, m);
  }
  scalar_t best = m[0];
  for (int l = 1; l < W; ++l) best = m[l] > best ? m[l] : best;
  for (; k < K; ++k) best = z[k] > best ? z[k] : best;
  return best;
}

// z[k] <- exp(z[k] - shift) for k < K and 0 for K <= k < padded end; returns the sum.
template <typename scalar_t>
inline __attribute__((always_inline)) scalar_t exp_shifted(scalar_t* __restrict__ z, scalar_t shift,
                                                            int64_t K, int64_t Kp) {
  using V = Vec<scalar_t>;
  using vec = typename V::type;
  constexpr int W = V::kWidth;
  vec sum{};
  int64_t k = 0;
  for (; k + W <= K; k += W) {
    const vec v = exp_vec(V::load(z + k) - shift);
    V::store(z + k, v);
    sum += v;
  }
  if (k < K) {
    // select, not a multiplication by a 0/1 mask: the padding's logits are 0, and exp(0 - shift)
    // overflows when the row's logits all lie below the exp's range (about -709 in double), where
    // inf * 0 would be NaN
    const vec v = V::select(V::head_lanes(K - k), exp_vec(V::load(z + k) - shift), vec{});
    V::store(z + k, v);
    sum += v;
    k += W;
  }
  for (; k < Kp; k += W) V::store(z + k, vec{});
  scalar_t s = 0;
  for (int l = 0; l < W; ++l) s += sum[l];
  return s;
}

// dz <- p * (dz - <p, dz>) over a padded row (p is 0 in the padding)
template <typename scalar_t>
inline __attribute__((always_inline)) void softmax_grad_row(const scalar_t* __restrict__ p,
                                                            scalar_t* __restrict__ dz, int64_t Kp) {
  using V = Vec<scalar_t>;
  using vec = typename V::type;
  constexpr int W = V::kWidth;
  vec acc{};
  for (int64_t k = 0; k < Kp; k += W) acc += V::load(p + k) * V::load(dz + k);
  scalar_t dot = 0;
  for (int l = 0; l < W; ++l) dot += acc[l];
  for (int64_t k = 0; k < Kp; k += W) {
    const vec pv = V::load(p + k);
    V::store(dz + k, pv * (V::load(dz + k) - dot));
  }
}

// rows [m, Kp] x w^T -> rows [m, d] of `out`: straight into out when d is a multiple of the
// column block, else through the scratch. Each row i is then scaled by scale[i] if given.
template <typename scalar_t>
void times_wt(const scalar_t* a, int64_t m, const AssignWeights<scalar_t>& w,
              scalar_t* o_scratch, scalar_t* out, const scalar_t* scale) {
  const bool direct = w.dp == w.d;
  scalar_t* dst = direct ? out : o_scratch;
  small_product<scalar_t, false>(m, a, nullptr, w.Kp, 1, w.wt, nullptr, w.dp, w.Kp, w.dp, dst,
                                 w.dp);
  if (direct && !scale) return;
  for (int64_t i = 0; i < m; ++i) {
    const scalar_t s = scale ? scale[i] : scalar_t(1);
    const scalar_t* src = dst + i * w.dp;
    for (int64_t j = 0; j < w.d; ++j) out[i * w.d + j] = src[j] * s;
  }
}

// Forward of m rows: out = softmax(e w) w^T, lse = logsumexp(e w). The softmax's division is
// applied to the d outputs of a row rather than its K probabilities.
template <typename scalar_t>
void forward_tile(const scalar_t* e, int64_t m, const AssignWeights<scalar_t>& w,
                  AssignScratch<scalar_t>& s, scalar_t* out, scalar_t* lse) {
  scalar_t* z = s.z.data();
  scalar_t* inv = s.dz.data();  // m values, the backward's buffer is free here
  small_product<scalar_t, false>(m, e, nullptr, w.d, 1, w.wp, nullptr, w.Kp, w.d, w.Kp, z, w.Kp);
  for (int64_t i = 0; i < m; ++i) {
    scalar_t* row = z + i * w.Kp;
    const scalar_t mx = row_max(row, w.K);
    const scalar_t sum = exp_shifted(row, mx, w.K, w.Kp);
    inv[i] = scalar_t(1) / sum;
    lse[i] = mx + std::log(sum);
  }
  times_wt(z, m, w, s.o.data(), out, inv);
}

// Backward of m rows: grad_e = dZ w^T and partial [d, Kp] += g^T P + e^T dZ, with
// P = exp(e w - lse) and dZ = P * (g w - <P, g w>) the gradient of the logits.
template <typename scalar_t>
void backward_tile(const scalar_t* e, const scalar_t* g, const scalar_t* lse, int64_t m,
                   const AssignWeights<scalar_t>& w, AssignScratch<scalar_t>& s,
                   scalar_t* grad_e, scalar_t* partial) {
  scalar_t* p = s.z.data();
  scalar_t* dz = s.dz.data();
  small_product<scalar_t, false>(m, e, nullptr, w.d, 1, w.wp, nullptr, w.Kp, w.d, w.Kp, p, w.Kp);
  small_product<scalar_t, false>(m, g, nullptr, w.d, 1, w.wp, nullptr, w.Kp, w.d, w.Kp, dz, w.Kp);
  for (int64_t i = 0; i < m; ++i) {
    exp_shifted(p + i * w.Kp, lse[i], w.K, w.Kp);
    softmax_grad_row(p + i * w.Kp, dz + i * w.Kp, w.Kp);
  }
  times_wt(dz, m, w, s.o.data(), grad_e, static_cast<const scalar_t*>(nullptr));
  // rows of this product are the d features: A[j, i] = g[i * d + j]
  small_product<scalar_t, true, true>(w.d, g, e, 1, w.d, p, dz, w.Kp, m, w.Kp, partial, w.Kp);
}

}  // namespace IRLLREC_SIMD_NS
}  // namespace cpu
}  // namespace irllrec_fast
