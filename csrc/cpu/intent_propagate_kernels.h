// Row kernels of intent_propagate, compiled once per SIMD variant: included by
// intent_propagate.cpp through simd_variants.inc, with IRLLREC_SIMD_NS set (no include guard on
// purpose).
//
// D is the feature width when it is one of the compile-time widths (then the loops unroll and the
// row accumulators live in registers or L1), or 0 for a run-time width d. Per edge the kernels
// gather a few rows of n x d arrays; those gathers set the pace, so the next edges' rows are
// prefetched.
//
// Notation (IRLLREC_SPEC.md section 2): rhat = r / max(||r||, eps), alpha_ht = (<rhat_h, rhat_t>
// + 1) / 2, S_h = sum_t alpha_ht, out_h = sum_t alpha_ht x_t / S_h (0 when S_h <= 0). With g the
// upstream gradient, q_h = <g_h, out_h> and inv_h = 1 / S_h (0 when S_h <= 0):
//   dL/dx_t     = sum_h alpha_ht inv_h g_h                              (over the transpose)
//   dL/dalpha_ht = (<g_h, x_t> - q_h) inv_h                              (call it c_ht)
//   dL/drhat_h  = sum_t c_ht / 2 rhat_t  (row part)  +  sum_h' c_h'h / 2 rhat_h'  (column part)
//   dL/dr       = (drhat - rhat <rhat, drhat>) / ||r||  if ||r|| >= eps, else drhat / eps
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace irllrec_fast {
namespace cpu {
namespace IRLLREC_SIMD_NS {

constexpr int64_t kEdgePrefetch = 8;
constexpr int kDotLanes = 8;

template <typename scalar_t>
inline void prefetch_row(const scalar_t* p, int64_t d) {
  const char* c = reinterpret_cast<const char*>(p);
  const int64_t bytes = std::min<int64_t>(d * int64_t(sizeof(scalar_t)), 256);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
}

// <a, b> over d = D (or the run-time d when D == 0) features, in kDotLanes partial sums.
template <int D, typename acc_t, typename a_t, typename b_t>
inline acc_t dot(const a_t* __restrict__ a, const b_t* __restrict__ b, int64_t d) {
  const int64_t width = D > 0 ? D : d;
  acc_t part[kDotLanes] = {};
  int64_t f = 0;
  for (; f + kDotLanes <= width; f += kDotLanes)
    for (int k = 0; k < kDotLanes; ++k) part[k] += acc_t(a[f + k]) * acc_t(b[f + k]);
  acc_t tail = 0;
  if constexpr (D % kDotLanes != 0 || D == 0)
    for (; f < width; ++f) tail += acc_t(a[f]) * acc_t(b[f]);
  for (int half = kDotLanes / 2; half > 0; half /= 2)
    for (int k = 0; k < half; ++k) part[k] += part[k + half];
  return part[0] + tail;
}

// Scratch rows of width d: on the stack for compile-time widths, on the heap otherwise.
template <typename acc_t, int D, int ROWS>
struct RowScratch {
  acc_t stack[D > 0 ? D * ROWS : 1];
  std::vector<acc_t> heap;
  explicit RowScratch(int64_t d) { if (D == 0) heap.resize(d * ROWS); }
  acc_t* row(int i, int64_t d) { return D > 0 ? stack + i * D : heap.data() + i * d; }
};

// rhat rows and ||r|| per row: rhat = r / max(||r||, eps), the division as the reference's
// F.normalize does it, so that exactly opposite intents give alpha exactly 0 here too.
template <typename scalar_t, int D>
void normalize_rows(const scalar_t* __restrict__ r, scalar_t* __restrict__ rhat,
                    scalar_t* __restrict__ norm, int64_t row_begin, int64_t row_end, int64_t d,
                    double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t width = D > 0 ? D : d;
  for (int64_t v = row_begin; v < row_end; ++v) {
    const scalar_t* rv = r + v * width;
    const scalar_t nv = static_cast<scalar_t>(std::sqrt(dot<D, acc_t>(rv, rv, width)));
    const scalar_t denom = std::max(nv, static_cast<scalar_t>(eps));
    for (int64_t f = 0; f < width; ++f) rhat[v * width + f] = rv[f] / denom;
    norm[v] = nv;
  }
}

template <typename scalar_t, int D>
void forward_rows(const int32_t* rowptr, const int32_t* col, const scalar_t* __restrict__ rhat,
                  const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                  scalar_t* __restrict__ row_sum, int64_t row_begin, int64_t row_end, int64_t d,
                  int64_t num_edges) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t width = D > 0 ? D : d;
  RowScratch<acc_t, D, 1> scratch(width);
  acc_t* __restrict__ acc = scratch.row(0, width);
  for (int64_t h = row_begin; h < row_end; ++h) {
    const scalar_t* rh = rhat + h * width;
    for (int64_t f = 0; f < width; ++f) acc[f] = 0;
    acc_t sum = 0;
    for (int64_t e = rowptr[h]; e < rowptr[h + 1]; ++e) {
      if (e + kEdgePrefetch < num_edges) {
        const int64_t ahead = col[e + kEdgePrefetch];
        prefetch_row(rhat + ahead * width, width);
        prefetch_row(x + ahead * width, width);
      }
      const int64_t t = col[e];
      const acc_t alpha = (dot<D, acc_t>(rh, rhat + t * width, width) + acc_t(1)) * acc_t(0.5);
      sum += alpha;
      const scalar_t* xt = x + t * width;
      for (int64_t f = 0; f < width; ++f) acc[f] += alpha * acc_t(xt[f]);
    }
    scalar_t* oh = out + h * width;
    if (sum > 0) {
      const acc_t inv = acc_t(1) / sum;
      for (int64_t f = 0; f < width; ++f) oh[f] = static_cast<scalar_t>(acc[f] * inv);
    } else {
      for (int64_t f = 0; f < width; ++f) oh[f] = 0;
    }
    row_sum[h] = static_cast<scalar_t>(sum);
  }
}

// Backward preparation per row: rhat again (same division as the forward), q = <g, out> and
// inv = 1 / S (0 for rows without weight, which then pass no gradient).
template <typename scalar_t, int D>
void backward_prepare_rows(const scalar_t* __restrict__ r, const scalar_t* __restrict__ norm,
                           const scalar_t* __restrict__ g, const scalar_t* __restrict__ out,
                           const scalar_t* __restrict__ row_sum, scalar_t* __restrict__ rhat,
                           scalar_t* __restrict__ q, scalar_t* __restrict__ inv_sum,
                           int64_t row_begin, int64_t row_end, int64_t d, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t width = D > 0 ? D : d;
  for (int64_t v = row_begin; v < row_end; ++v) {
    const scalar_t denom = std::max(norm[v], static_cast<scalar_t>(eps));
    for (int64_t f = 0; f < width; ++f) rhat[v * width + f] = r[v * width + f] / denom;
    q[v] = static_cast<scalar_t>(dot<D, acc_t>(g + v * width, out + v * width, width));
    inv_sum[v] = row_sum[v] > 0 ? scalar_t(1) / row_sum[v] : scalar_t(0);
  }
}

// dL/dr of one row from dL/drhat (accumulated in drhat), through rhat = r / max(||r||, eps).
template <typename scalar_t, int D, typename acc_t>
inline void normalize_backward_row(const acc_t* __restrict__ drhat,
                                   const scalar_t* __restrict__ rhat, scalar_t norm,
                                   scalar_t* __restrict__ grad_r, int64_t d, double eps) {
  const int64_t width = D > 0 ? D : d;
  if (norm >= static_cast<scalar_t>(eps)) {
    const acc_t proj = dot<D, acc_t>(rhat, drhat, width);
    const acc_t inv = acc_t(1) / acc_t(norm);
    for (int64_t f = 0; f < width; ++f)
      grad_r[f] = static_cast<scalar_t>((drhat[f] - proj * acc_t(rhat[f])) * inv);
  } else {  // the clamp is active: rhat = r / eps, the norm passes no gradient
    const acc_t inv = acc_t(1) / acc_t(eps);
    for (int64_t f = 0; f < width; ++f) grad_r[f] = static_cast<scalar_t>(drhat[f] * inv);
  }
}

// Symmetric structure (each row's edges are also its transpose row's): one pass. For row v and
// neighbour u, the edge (v, u) gives the row part of v, the edge (u, v) the column part of v and
// v's share of dL/dx; both move along rhat_u, so they share one update.
template <typename scalar_t, int D>
void backward_symmetric_rows(const int32_t* rowptr, const int32_t* col,
                             const scalar_t* __restrict__ rhat, const scalar_t* __restrict__ x,
                             const scalar_t* __restrict__ g, const scalar_t* __restrict__ q,
                             const scalar_t* __restrict__ inv_sum,
                             const scalar_t* __restrict__ norm, scalar_t* __restrict__ grad_r,
                             scalar_t* __restrict__ grad_x, int64_t row_begin, int64_t row_end,
                             int64_t d, int64_t num_edges, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t width = D > 0 ? D : d;
  RowScratch<acc_t, D, 2> scratch(width);
  acc_t* __restrict__ acc_r = scratch.row(0, width);
  acc_t* __restrict__ acc_x = scratch.row(1, width);
  for (int64_t v = row_begin; v < row_end; ++v) {
    const scalar_t* rv = rhat + v * width;
    const scalar_t* xv = x + v * width;
    const scalar_t* gv = g + v * width;
    const acc_t row_scale = acc_t(0.5) * acc_t(inv_sum[v]);
    const acc_t qv = q[v];
    for (int64_t f = 0; f < width; ++f) acc_r[f] = 0, acc_x[f] = 0;
    for (int64_t e = rowptr[v]; e < rowptr[v + 1]; ++e) {
      if (e + kEdgePrefetch < num_edges) {
        const int64_t ahead = col[e + kEdgePrefetch];
        prefetch_row(rhat + ahead * width, width);
        prefetch_row(x + ahead * width, width);
        prefetch_row(g + ahead * width, width);
      }
      const int64_t u = col[e];
      const scalar_t* ru = rhat + u * width;
      acc_t coef = 0;
      if (row_scale != 0) coef = (dot<D, acc_t>(gv, x + u * width, width) - qv) * row_scale;
      const acc_t inv_u = inv_sum[u];
      if (inv_u != 0) {
        const scalar_t* gu = g + u * width;
        const acc_t alpha = (dot<D, acc_t>(ru, rv, width) + acc_t(1)) * acc_t(0.5);
        coef += (dot<D, acc_t>(gu, xv, width) - acc_t(q[u])) * (acc_t(0.5) * inv_u);
        const acc_t weight = alpha * inv_u;
        for (int64_t f = 0; f < width; ++f) acc_x[f] += weight * acc_t(gu[f]);
      }
      for (int64_t f = 0; f < width; ++f) acc_r[f] += coef * acc_t(ru[f]);
    }
    for (int64_t f = 0; f < width; ++f) grad_x[v * width + f] = static_cast<scalar_t>(acc_x[f]);
    normalize_backward_row<scalar_t, D>(acc_r, rv, norm[v], grad_r + v * width, width, eps);
  }
}

// General structure, pass 1 over the rows h: the row part of dL/drhat_h, into drhat.
template <typename scalar_t, int D>
void backward_row_part_rows(const int32_t* rowptr, const int32_t* col,
                            const scalar_t* __restrict__ rhat, const scalar_t* __restrict__ x,
                            const scalar_t* __restrict__ g, const scalar_t* __restrict__ q,
                            const scalar_t* __restrict__ inv_sum, scalar_t* __restrict__ drhat,
                            int64_t row_begin, int64_t row_end, int64_t d, int64_t num_edges) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t width = D > 0 ? D : d;
  RowScratch<acc_t, D, 1> scratch(width);
  acc_t* __restrict__ acc = scratch.row(0, width);
  for (int64_t h = row_begin; h < row_end; ++h) {
    const acc_t scale = acc_t(0.5) * acc_t(inv_sum[h]);
    for (int64_t f = 0; f < width; ++f) acc[f] = 0;
    if (scale != 0) {
      const scalar_t* gh = g + h * width;
      const acc_t qh = q[h];
      for (int64_t e = rowptr[h]; e < rowptr[h + 1]; ++e) {
        if (e + kEdgePrefetch < num_edges) {
          const int64_t ahead = col[e + kEdgePrefetch];
          prefetch_row(rhat + ahead * width, width);
          prefetch_row(x + ahead * width, width);
        }
        const int64_t t = col[e];
        const acc_t coef = dot<D, acc_t>(gh, x + t * width, width) - qh;
        const scalar_t* rt = rhat + t * width;
        for (int64_t f = 0; f < width; ++f) acc[f] += coef * acc_t(rt[f]);
      }
    }
    for (int64_t f = 0; f < width; ++f) drhat[h * width + f] = static_cast<scalar_t>(acc[f] * scale);
  }
}

// General structure, pass 2 over the transpose's rows t (edges (h, t) of the graph): dL/dx_t and
// the column part of dL/drhat_t, added to the row part already in grad_r, then through the norm.
template <typename scalar_t, int D>
void backward_column_part_rows(const int32_t* t_rowptr, const int32_t* t_col,
                               const scalar_t* __restrict__ rhat, const scalar_t* __restrict__ x,
                               const scalar_t* __restrict__ g, const scalar_t* __restrict__ q,
                               const scalar_t* __restrict__ inv_sum,
                               const scalar_t* __restrict__ norm, scalar_t* __restrict__ grad_r,
                               scalar_t* __restrict__ grad_x, int64_t row_begin, int64_t row_end,
                               int64_t d, int64_t num_edges, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t width = D > 0 ? D : d;
  RowScratch<acc_t, D, 2> scratch(width);
  acc_t* __restrict__ acc_r = scratch.row(0, width);
  acc_t* __restrict__ acc_x = scratch.row(1, width);
  for (int64_t t = row_begin; t < row_end; ++t) {
    const scalar_t* rt = rhat + t * width;
    const scalar_t* xt = x + t * width;
    for (int64_t f = 0; f < width; ++f) acc_r[f] = grad_r[t * width + f], acc_x[f] = 0;
    for (int64_t k = t_rowptr[t]; k < t_rowptr[t + 1]; ++k) {
      if (k + kEdgePrefetch < num_edges) {
        const int64_t ahead = t_col[k + kEdgePrefetch];
        prefetch_row(rhat + ahead * width, width);
        prefetch_row(g + ahead * width, width);
      }
      const int64_t h = t_col[k];
      const acc_t inv_h = inv_sum[h];
      if (inv_h == 0) continue;
      const scalar_t* rh = rhat + h * width;
      const scalar_t* gh = g + h * width;
      const acc_t alpha = (dot<D, acc_t>(rh, rt, width) + acc_t(1)) * acc_t(0.5);
      const acc_t coef = (dot<D, acc_t>(gh, xt, width) - acc_t(q[h])) * (acc_t(0.5) * inv_h);
      const acc_t weight = alpha * inv_h;
      for (int64_t f = 0; f < width; ++f) {
        acc_x[f] += weight * acc_t(gh[f]);
        acc_r[f] += coef * acc_t(rh[f]);
      }
    }
    for (int64_t f = 0; f < width; ++f) grad_x[t * width + f] = static_cast<scalar_t>(acc_x[f]);
    normalize_backward_row<scalar_t, D>(acc_r, rt, norm[t], grad_r + t * width, width, eps);
  }
}

}  // namespace IRLLREC_SIMD_NS
}  // namespace cpu
}  // namespace irllrec_fast
