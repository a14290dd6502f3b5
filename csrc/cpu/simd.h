// Compiling a CPU kernel twice: once for the baseline x86-64 the wheel targets, once with AVX2 and
// FMA, chosen at run time. A kernel header written against the macro IRLLREC_SIMD_NS is included
// once per variant through simd_variants.inc; plain loops over compile-time widths then vectorise to the
// widest registers the variant allows.
#pragma once

#include <cstdint>
#include <type_traits>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define IRLLREC_HAVE_AVX2_VARIANT 1
#else
#define IRLLREC_HAVE_AVX2_VARIANT 0
#endif

namespace irllrec_fast {
namespace cpu {

inline bool cpu_has_avx2_fma() {
#if IRLLREC_HAVE_AVX2_VARIANT
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

// Calls f(W) with the widest compile-time chunk width W in {64, 32, 16, 8} dividing d, or
// f(0) (a run-time width) when d is not a multiple of 8.
template <typename F>
void dispatch_chunk_width(int64_t d, F&& f) {
  if (d % 64 == 0) f(std::integral_constant<int, 64>{});
  else if (d % 32 == 0) f(std::integral_constant<int, 32>{});
  else if (d % 16 == 0) f(std::integral_constant<int, 16>{});
  else if (d % 8 == 0) f(std::integral_constant<int, 8>{});
  else f(std::integral_constant<int, 0>{});
}

}  // namespace cpu
}  // namespace irllrec_fast
