// C++ test of the infonce CPU kernels, called directly and through the dispatcher, against the
// dense formula and its closed-form gradients. A plain executable: it prints what failed and
// exits non-zero.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdio>
#include <string>
#include <tuple>

#include "ops.h"

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

}  // namespace

int main() {
  at::manual_seed(0);
  for (auto dtype : {at::kFloat, at::kDouble}) {
    const double tol = dtype == at::kFloat ? 1e-4 : 1e-10;
    const std::string name = dtype == at::kFloat ? "float32" : "float64";
    for (auto shape : {std::make_tuple(1, 1, 1), std::make_tuple(37, 257, 3),
                       std::make_tuple(130, 600, 32), std::make_tuple(20, 300, 130)}) {
      const auto [B, M, d] = shape;
      const std::string what = name + " B=" + std::to_string(B) + " M=" + std::to_string(M) +
                               " d=" + std::to_string(d);
      const auto opts = at::TensorOptions().dtype(dtype);
      const auto a = at::randn({B, d}, opts) / std::sqrt(double(d));
      const auto b = at::randn({B, d}, opts) / std::sqrt(double(d));
      const auto c = at::randn({M, d}, opts) / std::sqrt(double(d));
      const double t = 0.2;
      // dense formula in float64
      const auto a64 = a.to(at::kDouble), b64 = b.to(at::kDouble), c64 = c.to(at::kDouble);
      const auto logits = at::mm(a64, c64.t()) / t;
      const auto lse_ref = at::logsumexp(logits, 1);
      const auto loss_ref = lse_ref - (a64 * b64).sum(1) / t;
      const auto p = at::exp(logits - lse_ref.unsqueeze(1));
      const auto g = at::randn({B}, at::kDouble);
      const auto ga_ref = (at::mm(p, c64) - b64) * g.unsqueeze(1) / t;
      const auto gb_ref = -a64 * g.unsqueeze(1) / t;
      const auto gc_ref = at::mm((p * g.unsqueeze(1)).t(), a64) / t;

      const auto [loss, lse] = irllrec_fast::cpu::infonce(a, b, c, t);
      expect(at::allclose(loss.to(at::kDouble), loss_ref, tol, tol), "loss " + what);
      expect(at::allclose(lse.to(at::kDouble), lse_ref, tol, tol), "lse " + what);
      const auto [ga, gb, gc] =
          irllrec_fast::cpu::infonce_backward(g.to(dtype), a, b, c, lse, t);
      expect(at::allclose(ga.to(at::kDouble), ga_ref, tol, 10 * tol), "grad_a " + what);
      expect(at::allclose(gb.to(at::kDouble), gb_ref, tol, 10 * tol), "grad_b " + what);
      expect(at::allclose(gc.to(at::kDouble), gc_ref, tol, 10 * tol), "grad_c " + what);

      static const auto op =
          c10::Dispatcher::singleton()
              .findSchemaOrThrow("irllrec_fast::infonce", "")
              .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                        const at::Tensor&, double)>();
      const auto dispatched = op.call(a, b, c, t);
      expect(at::equal(std::get<0>(dispatched), loss), "dispatched loss " + what);
    }
  }
  bool threw = false;
  try {
    irllrec_fast::cpu::infonce(at::randn({4, 3}), at::randn({4, 3}), at::randn({5, 2}), 0.2);
  } catch (const c10::Error& e) {
    threw = std::string(e.what()).find("c.size(1) must be 3") != std::string::npos;
  }
  expect(threw, "candidates of another width are refused with a message naming c");
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
