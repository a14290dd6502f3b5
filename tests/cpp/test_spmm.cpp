// C++ test of the spmm CPU kernel, called directly and through the dispatcher, against a dense
// product. A plain executable: it prints what failed and exits non-zero.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdio>
#include <string>

#include "ops.h"

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// A random directed graph with empty rows, as CSR and as a dense matrix.
struct Csr {
  at::Tensor rowptr, col, value, dense;
};

Csr random_csr(int64_t n, double density, at::ScalarType dtype) {
  auto dense = at::rand({n, n}, at::kDouble);
  dense = at::where(dense < density, at::rand({n, n}, at::kDouble), at::zeros({n, n}, at::kDouble));
  dense.index_put_({at::indexing::Slice(0, n, 5)}, 0.0);  // every fifth row empty
  const auto nz = dense.nonzero();                          // row-major order
  Csr g;
  g.col = nz.select(1, 1).to(at::kInt).contiguous();
  g.value = dense.index({nz.select(1, 0), nz.select(1, 1)}).to(dtype).contiguous();
  const auto counts = at::bincount(nz.select(1, 0), {}, n);
  g.rowptr = at::cat({at::zeros({1}, at::kLong), counts.cumsum(0)}).to(at::kInt);
  g.dense = dense.to(dtype);
  return g;
}

}  // namespace

int main() {
  at::manual_seed(0);
  for (auto dtype : {at::kFloat, at::kDouble}) {
    const double tol = dtype == at::kFloat ? 1e-4 : 1e-10;
    const std::string name = dtype == at::kFloat ? "float32" : "float64";
    for (int64_t d : {1, 3, 32, 64, 130}) {
      const auto g = random_csr(97, 0.1, dtype);
      const auto x = at::randn({97, d}, at::TensorOptions().dtype(dtype));
      const auto none = at::empty({0}, at::kInt);
      const auto expected = at::mm(g.dense, x);

      const auto direct = irllrec_fast::cpu::spmm(g.rowptr, g.col, g.value, g.rowptr, g.col, none, x);
      expect(at::allclose(direct, expected, tol, tol), "direct spmm " + name + " d=" + std::to_string(d));

      static const auto op = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("irllrec_fast::spmm", "")
                                 .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                                   const at::Tensor&, const at::Tensor&,
                                                   const at::Tensor&, const at::Tensor&,
                                                   const at::Tensor&)>();
      const auto dispatched = op.call(g.rowptr, g.col, g.value, g.rowptr, g.col, none, x);
      expect(at::equal(dispatched, direct), "dispatched spmm " + name + " d=" + std::to_string(d));

      // grad_value[e] = <grad[row(e)], x[col(e)]>, checked against the dense outer product
      const auto grad = at::randn({97, d}, x.options());
      const auto gv = irllrec_fast::cpu::spmm_backward_value(g.rowptr, g.col, grad, x);
      const auto full = at::mm(grad, x.t());
      const auto rows = at::repeat_interleave(at::arange(97), (g.rowptr.slice(0, 1) - g.rowptr.slice(0, 0, 97)).to(at::kLong));
      const auto expected_gv = full.index({rows, g.col.to(at::kLong)});
      expect(at::allclose(gv, expected_gv, tol, tol), "value gradient " + name + " d=" + std::to_string(d));
    }
  }
  bool threw = false;
  try {
    const auto g = random_csr(10, 0.3, at::kFloat);
    irllrec_fast::cpu::spmm(g.rowptr, g.col, g.value, g.rowptr, g.col, at::empty({0}, at::kInt),
                            at::randn({9, 4}));
  } catch (const c10::Error& e) {
    threw = std::string(e.what()).find("x.size(0) must be 10") != std::string::npos;
  }
  expect(threw, "a wrong number of rows in x is refused with a message naming x");
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
