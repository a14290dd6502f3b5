// 2^x on a GCC vector of floats, shared by the kernels that keep their logits in base 2
// (infonce, intent_assign): included inside a SIMD variant's namespace by their kernel headers,
// so that it compiles to that variant's instructions (no include guard on purpose).
//
// 2^n * p(r) with n = round(x), r = x - n (exact), p a degree-5 polynomial fitted to 2^r on
// [-1/2, 1/2] for the least maximum relative error (9e-8; 2.4e-7 with float rounding), in
// Estrin's order, which shortens the dependency chain. Base 2 makes the range reduction three
// additions instead of two fused multiply-adds, which leaves the multiply units to the
// polynomial. The rounding adds and subtracts 1.5 * 2^23, which also leaves n in the low bits of
// the sum, so no float -> int conversion is needed.
//
// The caller clamps x to [-126, 0] first (or passes NaN, which stays NaN): below -126, 2^x leaves
// the normal floats and the bit construction of 2^n would wrap. The clamp is the caller's because
// the cheapest exact form (a max instruction that keeps NaN) depends on the vector width.
template <typename V, typename Bits>
inline __attribute__((always_inline)) V exp2_of_clamped(V x) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  const V t = x + kMagic;
  const V r = x - (t - kMagic);
  const V r2 = r * r;
  const V p01 = r * 0.693146978f + 1.0f;
  const V p23 = r * 0.0555073375f + 0.240222421f;
  const V p45 = r * 0.00132647271f + 0.00967151286f;
  const V p = (p01 + r2 * p23) + (r2 * r2) * p45;
  Bits t_bits;
  std::memcpy(&t_bits, &t, sizeof(t));
  // t's bits are 0x4B400000 + n; 2^n has the bits (n + 127) << 23
  const Bits e = (t_bits - (0x4B400000 - 127)) << 23;
  V scale;
  std::memcpy(&scale, &e, sizeof(e));
  return p * scale;
}
