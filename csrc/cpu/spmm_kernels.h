// Row kernels of spmm, compiled once per SIMD variant: included by spmm.cpp through
// simd_variants.inc, with IRLLREC_SIMD_NS set to the variant's namespace (no include guard on
// purpose).
//
// Each output row is accumulated in a register-sized chunk of W features over all its edges, then
// stored once; the gathered rows of x are prefetched a few edges ahead, since on the real graphs
// the gathers (not the arithmetic) set the pace.
namespace irllrec_fast {
namespace cpu {
namespace IRLLREC_SIMD_NS {

constexpr int64_t kPrefetchDistance = 8;

template <typename scalar_t, int W>
void spmm_rows(const int32_t* rowptr, const int32_t* col, const scalar_t* value,
               const scalar_t* __restrict__ x, scalar_t* __restrict__ out, int64_t row_begin,
               int64_t row_end, int64_t d, int64_t num_edges) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t r = row_begin; r < row_end; ++r) {
    scalar_t* __restrict__ out_row = out + r * d;
    const int64_t eb = rowptr[r], ee = rowptr[r + 1];
    if constexpr (W > 0) {
      for (int64_t f0 = 0; f0 < d; f0 += W) {
        acc_t acc[W] = {};
        for (int64_t e = eb; e < ee; ++e) {
          if (e + kPrefetchDistance < num_edges)
            __builtin_prefetch(x + int64_t(col[e + kPrefetchDistance]) * d + f0);
          const acc_t v = value[e];
          const scalar_t* __restrict__ x_row = x + int64_t(col[e]) * d + f0;
          for (int k = 0; k < W; ++k) acc[k] += v * acc_t(x_row[k]);
        }
        for (int k = 0; k < W; ++k) out_row[f0 + k] = static_cast<scalar_t>(acc[k]);
      }
    } else {
      for (int64_t k = 0; k < d; ++k) out_row[k] = 0;
      for (int64_t e = eb; e < ee; ++e) {
        const scalar_t v = value[e];
        const scalar_t* __restrict__ x_row = x + int64_t(col[e]) * d;
        for (int64_t k = 0; k < d; ++k) out_row[k] += v * x_row[k];
      }
    }
  }
}

template <typename scalar_t, int W>
void value_grad_rows(const int32_t* rowptr, const int32_t* col, const scalar_t* __restrict__ g,
                     const scalar_t* __restrict__ x, scalar_t* grad_value, int64_t row_begin,
                     int64_t row_end, int64_t d, int64_t num_edges) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const scalar_t* __restrict__ g_row = g + r * d;
    for (int64_t e = rowptr[r]; e < rowptr[r + 1]; ++e) {
      if (e + kPrefetchDistance < num_edges)
        __builtin_prefetch(x + int64_t(col[e + kPrefetchDistance]) * d);
      const scalar_t* __restrict__ x_row = x + int64_t(col[e]) * d;
      acc_t dot = 0;
      if constexpr (W > 0) {
        // W independent partial sums vectorise without reassociating one running sum.
        acc_t part[W] = {};
        for (int64_t f0 = 0; f0 < d; f0 += W)
          for (int k = 0; k < W; ++k) part[k] += acc_t(g_row[f0 + k]) * acc_t(x_row[f0 + k]);
        // pairwise (tree) sum: log2(W) dependent adds instead of W
        for (int half = W / 2; half > 0; half /= 2)
          for (int k = 0; k < half; ++k) part[k] += part[k + half];
        dot = part[0];
      } else {
        for (int64_t k = 0; k < d; ++k) dot += acc_t(g_row[k]) * acc_t(x_row[k]);
      }
      grad_value[e] = static_cast<scalar_t>(dot);
    }
  }
}

}  // namespace IRLLREC_SIMD_NS
}  // namespace cpu
}  // namespace irllrec_fast
