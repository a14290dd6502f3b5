// Tile kernels of `infonce`, compiled once per SIMD variant: included by infonce.cpp through
// simd_variants.inc, with IRLLREC_SIMD_NS (the variant's namespace) and IRLLREC_VEC_BYTES (its
// register width) set, no include guard on purpose.
//
// Everything works on one tile of candidates stored transposed, ct[f][j] (f < d, j < width, row
// stride ldct), so that consecutive candidates sit in one vector register: the logits of R anchor
// rows against 2 vectors of candidates accumulate in 2R registers while d streams past, the
// classic register-blocked matrix product, written with GCC vector extensions so that one source
// gives SSE2 code in the base variant and AVX2+FMA code in the other (GCC and Clang; the AVX2
// variant is GCC only, see simd.h). The tile's width is a multiple of 16 (two vectors of any
// variant); logits past the real candidates are set to -inf, so their softmax weight is at most
// 2^-126 (see vexp2) against a row sum >= 1, and it multiplies zero padding in the products.
namespace irllrec_fast {
namespace cpu {
namespace IRLLREC_SIMD_NS {
namespace infonce_tiles {

template <typename scalar_t>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(IRLLREC_VEC_BYTES)));
  typedef int32_t bits __attribute__((vector_size(IRLLREC_VEC_BYTES)));
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(IRLLREC_VEC_BYTES)));
};

template <typename scalar_t>
using vec_t = typename Vec<scalar_t>::type;
template <typename scalar_t>
constexpr int kLanes = IRLLREC_VEC_BYTES / int(sizeof(scalar_t));

template <typename scalar_t>
inline __attribute__((always_inline)) vec_t<scalar_t> load(const scalar_t* p) {
  vec_t<scalar_t> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename scalar_t>
inline __attribute__((always_inline)) void store(scalar_t* p, vec_t<scalar_t> v) {
  std::memcpy(p, &v, sizeof(v));
}

// x in every lane; x - 0 is exactly x for every x (x + 0 is not, for -0), so it folds away.
template <typename scalar_t>
inline __attribute__((always_inline)) vec_t<scalar_t> splat(scalar_t x) {
  return x - vec_t<scalar_t>{};
}

template <typename scalar_t>
inline scalar_t horizontal_sum(vec_t<scalar_t> v) {
  scalar_t s = v[0];
  for (int i = 1; i < kLanes<scalar_t>; ++i) s += v[i];
  return s;
}

// lo > x ? lo : x per lane, which keeps a NaN in x; x86's max instruction is exactly this (GCC
// does not see it in the ternary). 32-byte vectors only exist in the AVX2 variant.
inline vec_t<float> clamp_below(vec_t<float> x, vec_t<float> lo) {
#if IRLLREC_VEC_BYTES == 32 && IRLLREC_HAVE_AVX2_VARIANT
  return __builtin_ia32_maxps256(lo, x);
#elif IRLLREC_VEC_BYTES == 16 && defined(__SSE__)
  return __builtin_ia32_maxps(lo, x);
#else
  return lo > x ? lo : x;
#endif
}

// 2^x per lane for x <= 0 (exp2_polynomial.h). The logits are kept in base 2 (the anchors are
// scaled by log2(e) / tau beforehand); every argument is a logit minus its row's maximum or its
// log-sum-exp. Below -126 the argument is clamped, so the result is about 1e-38 instead of 0:
// invisible next to the row's largest term, 2^0 = 1. NaN stays NaN.
// double (gradcheck, tests): std::exp2 per lane.
#include "exp2_polynomial.h"

inline vec_t<float> vexp2(vec_t<float> x) {
  return exp2_of_clamped<vec_t<float>, typename Vec<float>::bits>(
      clamp_below(x, splat(-126.0f)));
}

inline vec_t<double> vexp2(vec_t<double> x) {
  vec_t<double> y;
  for (int i = 0; i < kLanes<double>; ++i) y[i] = std::exp2(x[i]);
  return y;
}

// out[r][j] = sum_f a[r][f] * ct[f][j] for r < R, j < width (a multiple of 2 lanes).
template <typename scalar_t, int R>
void logits_rows(const scalar_t* __restrict__ a, int64_t d, const scalar_t* __restrict__ ct,
                 int64_t ldct, int64_t width, scalar_t* __restrict__ out, int64_t ldo) {
  using V = vec_t<scalar_t>;
  constexpr int L = kLanes<scalar_t>;
  for (int64_t j = 0; j < width; j += 2 * L) {
    V acc[R][2] = {};
    const scalar_t* cp = ct + j;
    for (int64_t f = 0; f < d; ++f, cp += ldct) {
      const V c0 = load(cp), c1 = load(cp + L);
      for (int r = 0; r < R; ++r) {
        const V ar = splat(a[r * d + f]);
        acc[r][0] += ar * c0;
        acc[r][1] += ar * c1;
      }
    }
    for (int r = 0; r < R; ++r) {
      store(out + r * ldo + j, acc[r][0]);
      store(out + r * ldo + j + L, acc[r][1]);
    }
  }
}

constexpr int kLogitRows = 6;  // 12 accumulators + 2 candidate vectors + 1 broadcast <= 16

// The logits of `rows` anchor rows (row-major, width d) against one candidate tile, with the
// columns from `valid` to `width` set to -inf.
template <typename scalar_t>
void logits_tile(const scalar_t* a, int64_t rows, int64_t d, const scalar_t* ct, int64_t ldct,
                 int64_t valid, int64_t width, scalar_t* out, int64_t ldo) {
  int64_t r = 0;
  for (; r + kLogitRows <= rows; r += kLogitRows)
    logits_rows<scalar_t, kLogitRows>(a + r * d, d, ct, ldct, width, out + r * ldo, ldo);
  switch (rows - r) {
    case 5: logits_rows<scalar_t, 5>(a + r * d, d, ct, ldct, width, out + r * ldo, ldo); break;
    case 4: logits_rows<scalar_t, 4>(a + r * d, d, ct, ldct, width, out + r * ldo, ldo); break;
    case 3: logits_rows<scalar_t, 3>(a + r * d, d, ct, ldct, width, out + r * ldo, ldo); break;
    case 2: logits_rows<scalar_t, 2>(a + r * d, d, ct, ldct, width, out + r * ldo, ldo); break;
    case 1: logits_rows<scalar_t, 1>(a + r * d, d, ct, ldct, width, out + r * ldo, ldo); break;
    default: break;
  }
  if (valid < width) {
    for (int64_t i = 0; i < rows; ++i)
      std::fill(out + i * ldo + valid, out + i * ldo + width,
                -std::numeric_limits<scalar_t>::infinity());
  }
}

// Online log-sum-exp in base 2: folds one tile of logits (rows x width) into the running
// maximum m and the running sum l of 2^(logit - m) of each row.
template <typename scalar_t>
void online_lse(const scalar_t* s, int64_t rows, int64_t width, int64_t lds, scalar_t* m,
                scalar_t* l) {
  using V = vec_t<scalar_t>;
  constexpr int L = kLanes<scalar_t>;
  for (int64_t i = 0; i < rows; ++i) {
    const scalar_t* row = s + i * lds;
    V mx = splat(-std::numeric_limits<scalar_t>::infinity());
    for (int64_t j = 0; j < width; j += L) {
      const V v = load(row + j);
      mx = v > mx ? v : mx;
    }
    scalar_t tile_max = mx[0];
    for (int k = 1; k < L; ++k) tile_max = std::max(tile_max, mx[k]);
    const scalar_t m_new = std::max(m[i], tile_max);
    const V shift = splat(m_new);
    V sum0 = {}, sum1 = {};  // two chains hide the add latency; width is a multiple of 2L
    for (int64_t j = 0; j < width; j += 2 * L) {
      sum0 += vexp2(load(row + j) - shift);
      sum1 += vexp2(load(row + j + L) - shift);
    }
    // The maximum rarely moves after the first tiles: skip the scalar exp2 then. Before the first
    // tile m[i] = -inf and l[i] = 0, and exp2(-inf) = 0.
    const scalar_t rescale = m_new == m[i] ? scalar_t(1) : std::exp2(m[i] - m_new);
    l[i] = l[i] * rescale + horizontal_sum<scalar_t>(sum0 + sum1);
    m[i] = m_new;
  }
}

// In place: s[i][j] = 2^(s[i][j] - lse2[i]) * coef[i], the softmax weights (logits and lse in
// base 2) times a per-row factor.
template <typename scalar_t>
void weights_tile(scalar_t* s, int64_t rows, int64_t width, int64_t lds, const scalar_t* lse2,
                  const scalar_t* coef) {
  using V = vec_t<scalar_t>;
  constexpr int L = kLanes<scalar_t>;
  for (int64_t i = 0; i < rows; ++i) {
    scalar_t* row = s + i * lds;
    const V shift = splat(lse2[i]);
    const V factor = splat(coef[i]);
    for (int64_t j = 0; j < width; j += L) store(row + j, vexp2(load(row + j) - shift) * factor);
  }
}

// ga[r][v*L ..] += sum_j q[r][j] * cr[j][v*L ..] for r < R, v < DV: cr holds the tile's candidates
// as rows (row stride ldc), so each weight q[r][j] is one broadcast against DV vectors of c_j.
template <typename scalar_t, int R, int DV>
void weighted_candidates_block(const scalar_t* __restrict__ q, int64_t ldq,
                               const scalar_t* __restrict__ cr, int64_t ldc, int64_t width,
                               scalar_t* __restrict__ ga, int64_t ldga) {
  using V = vec_t<scalar_t>;
  constexpr int L = kLanes<scalar_t>;
  V acc[R][DV] = {};
  for (int64_t j = 0; j < width; ++j) {
    V cv[DV];
    for (int v = 0; v < DV; ++v) cv[v] = load(cr + j * ldc + v * L);
    for (int r = 0; r < R; ++r) {
      const V w = splat(q[r * ldq + j]);
      for (int v = 0; v < DV; ++v) acc[r][v] += w * cv[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < DV; ++v) {
      scalar_t* g = ga + r * ldga + v * L;
      store(g, load(g) + acc[r][v]);
    }
}

template <typename scalar_t, int R>
void weighted_candidates_rows(const scalar_t* q, int64_t ldq, const scalar_t* cr, int64_t ldc,
                              int64_t width, int64_t vectors, scalar_t* ga) {
  constexpr int L = kLanes<scalar_t>;
  int64_t v = 0;
  for (; v + 2 <= vectors; v += 2)
    weighted_candidates_block<scalar_t, R, 2>(q, ldq, cr + v * L, ldc, width, ga + v * L, ldc);
  if (v < vectors)
    weighted_candidates_block<scalar_t, R, 1>(q, ldq, cr + v * L, ldc, width, ga + v * L, ldc);
}

// ga (rows x dp, row-major) += q (rows x width) cr, cr: width x dp row-major; dp, the padded
// feature count, is a multiple of the lane count. Blocks of 6 rows x 2 vectors: the same
// 12 accumulators + 2 loads + 1 broadcast as the logit kernel.
template <typename scalar_t>
void weighted_candidates(const scalar_t* q, int64_t rows, int64_t ldq, const scalar_t* cr,
                         int64_t width, int64_t dp, scalar_t* ga) {
  const int64_t vectors = dp / kLanes<scalar_t>;
  int64_t r = 0;
  for (; r + 6 <= rows; r += 6)
    weighted_candidates_rows<scalar_t, 6>(q + r * ldq, ldq, cr, dp, width, vectors, ga + r * dp);
  const scalar_t* qr = q + r * ldq;
  scalar_t* gr = ga + r * dp;
  switch (rows - r) {
    case 5: weighted_candidates_rows<scalar_t, 5>(qr, ldq, cr, dp, width, vectors, gr); break;
    case 4: weighted_candidates_rows<scalar_t, 4>(qr, ldq, cr, dp, width, vectors, gr); break;
    case 3: weighted_candidates_rows<scalar_t, 3>(qr, ldq, cr, dp, width, vectors, gr); break;
    case 2: weighted_candidates_rows<scalar_t, 2>(qr, ldq, cr, dp, width, vectors, gr); break;
    case 1: weighted_candidates_rows<scalar_t, 1>(qr, ldq, cr, dp, width, vectors, gr); break;
    default: break;
  }
}

// gct[f][j] += sum_r a[r][f] * q[r][j] for f < F, j < width, r < rows.
template <typename scalar_t, int F>
void weighted_anchors_block(const scalar_t* __restrict__ a, int64_t d,
                            const scalar_t* __restrict__ q, int64_t ldq, int64_t rows,
                            int64_t width, scalar_t* __restrict__ gct, int64_t ldg) {
  using V = vec_t<scalar_t>;
  constexpr int L = kLanes<scalar_t>;
  for (int64_t j = 0; j < width; j += 2 * L) {
    V acc[F][2] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const V q0 = load(q + r * ldq + j), q1 = load(q + r * ldq + j + L);
      for (int f = 0; f < F; ++f) {
        const V av = splat(a[r * d + f]);
        acc[f][0] += av * q0;
        acc[f][1] += av * q1;
      }
    }
    for (int f = 0; f < F; ++f) {
      scalar_t* g = gct + f * ldg + j;
      store(g, load(g) + acc[f][0]);
      store(g + L, load(g + L) + acc[f][1]);
    }
  }
}

// gct (d x width, row stride ldg) += a^T q, a: rows x d row-major, q: rows x width.
template <typename scalar_t>
void weighted_anchors(const scalar_t* a, int64_t rows, int64_t d, const scalar_t* q, int64_t ldq,
                      int64_t width, scalar_t* gct, int64_t ldg) {
  constexpr int F = 6;  // 12 accumulators + 2 weight vectors + 1 broadcast
  int64_t f = 0;
  for (; f + F <= d; f += F)
    weighted_anchors_block<scalar_t, F>(a + f, d, q, ldq, rows, width, gct + f * ldg, ldg);
  switch (d - f) {
    case 5: weighted_anchors_block<scalar_t, 5>(a + f, d, q, ldq, rows, width, gct + f * ldg, ldg); break;
    case 4: weighted_anchors_block<scalar_t, 4>(a + f, d, q, ldq, rows, width, gct + f * ldg, ldg); break;
    case 3: weighted_anchors_block<scalar_t, 3>(a + f, d, q, ldq, rows, width, gct + f * ldg, ldg); break;
    case 2: weighted_anchors_block<scalar_t, 2>(a + f, d, q, ldq, rows, width, gct + f * ldg, ldg); break;
    case 1: weighted_anchors_block<scalar_t, 1>(a + f, d, q, ldq, rows, width, gct + f * ldg, ldg); break;
    default: break;
  }
}

}  // namespace infonce_tiles
}  // namespace IRLLREC_SIMD_NS
}  // namespace cpu
}  // namespace irllrec_fast
