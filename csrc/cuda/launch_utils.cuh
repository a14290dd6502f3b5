// Small helpers shared by the CUDA launchers: device properties without cuBLAS/cuSPARSE headers,
// a kernel's shared-memory limit, vector loads, and compile-time dispatch of lane counts.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <type_traits>
#include <utility>

namespace irllrec_fast {
namespace cuda {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

inline int num_sms(int device) {
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

// Raises `kernel`'s dynamic shared memory limit on the current device to at least `bytes` when
// that is above the 48 KB every kernel gets. The limit belongs to the kernel, not to a launch, so
// it is only ever raised: setting it to each call's size would let a host thread launching a
// smaller case lower it between another thread's raise and that thread's larger launch.
template <typename Kernel>
void raise_shared_limit(Kernel kernel, int64_t bytes) {
  if (bytes <= 48 * 1024) return;
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, int64_t> raised;
  const std::lock_guard<std::mutex> lock(mutex);
  int64_t& limit = raised[{reinterpret_cast<const void*>(kernel), device}];
  if (bytes <= limit) return;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(bytes)));
  limit = bytes;
}

// VEC contiguous values, loaded as one 16-byte transaction when VEC == 4 and scalar_t is float.
template <typename scalar_t, int VEC>
struct Pack {
  scalar_t v[VEC];

  __device__ __forceinline__ static Pack load(const scalar_t* __restrict__ p) {
    Pack r;
    if constexpr (VEC == 4 && std::is_same<scalar_t, float>::value) {
      const float4 t = __ldg(reinterpret_cast<const float4*>(p));
      r.v[0] = t.x; r.v[1] = t.y; r.v[2] = t.z; r.v[3] = t.w;
    } else {
#pragma unroll
      for (int i = 0; i < VEC; ++i) r.v[i] = __ldg(p + i);
    }
    return r;
  }
};

template <typename acc_t, typename scalar_t, int VEC>
__device__ __forceinline__ void store_pack(scalar_t* __restrict__ p, const acc_t (&v)[VEC]) {
  if constexpr (VEC == 4 && std::is_same<scalar_t, float>::value) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) p[i] = static_cast<scalar_t>(v[i]);
  }
}

// Lanes that share one row of d features when each lane holds `vec` of them: the next power of
// two of d / vec, at most a warp. The remaining lanes of the warp work on other edges.
inline int lanes_per_row(int64_t d, int vec) {
  const int64_t need = (d + vec - 1) / vec;
  int lanes = 1;
  while (lanes < need && lanes < kWarpSize) lanes <<= 1;
  return lanes;
}

// Calls f(std::integral_constant<int, L>{}) for L = lanes in {1, 2, ..., 32}.
template <typename F>
void dispatch_lanes(int lanes, F&& f) {
  switch (lanes) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 8: f(std::integral_constant<int, 8>{}); break;
    case 16: f(std::integral_constant<int, 16>{}); break;
    default: f(std::integral_constant<int, 32>{}); break;
  }
}

inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

}  // namespace cuda
}  // namespace irllrec_fast
