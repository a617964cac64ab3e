#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "dilemma/ilp/cbc_solver.hpp"

using namespace dilemma;

TEST_CASE("CBC solves a small knapsack to optimality and reports the LP bound at the root") {
  // max 5a + 4b + 3c  s.t.  2a + 3b + c ≤ 5,  4a + b + 2c ≤ 11,  3a + 4b + 2c ≤ 8, binary.
  ilp::Model model;
  const auto a = model.add_binary("a"), b = model.add_binary("b"), c = model.add_binary("c");
  model.add_constraint("r1", 2.0 * a + 3.0 * b + c, ilp::Sense::less_equal, 5.0);
  model.add_constraint("r2", 4.0 * a + b + 2.0 * c, ilp::Sense::less_equal, 11.0);
  model.add_constraint("r3", 3.0 * a + 4.0 * b + 2.0 * c, ilp::Sense::less_equal, 8.0);
  model.maximize(5.0 * a + 4.0 * b + 3.0 * c);
  const auto solution = ilp::solve(model);
  REQUIRE(solution.status == ilp::Status::optimal);
  CHECK(solution.objective == doctest::Approx(9.0));  // a = b = 1 uses r3 fully (7 ≤ 8); a + c = 8, a + b = 9
  CHECK(std::round(solution.value(a)) == 1.0);
  CHECK(std::round(solution.value(b)) == 1.0);
  CHECK(std::round(solution.value(c)) == 0.0);
  CHECK(solution.best_bound == doctest::Approx(9.0));
  CHECK(solution.gap == doctest::Approx(0.0));
  REQUIRE(solution.root_bound.has_value());
  CHECK(*solution.root_bound >= 9.0 - 1e-9);  // a relaxation of a maximization bounds it from above
}

TEST_CASE("CBC reports infeasibility, and the objective constant is kept") {
  ilp::Model model;
  const auto x = model.add_variable("x", 0.0, 3.0, ilp::VariableKind::integer);
  const auto y = model.add_variable("y", 0.0, 3.0, ilp::VariableKind::integer);
  model.add_constraint("sum", x + y, ilp::Sense::equal, 2.5);
  model.minimize(x + y + 10.0);
  auto solution = ilp::solve(model);
  CHECK(solution.status == ilp::Status::infeasible);
  CHECK_FALSE(solution.has_solution());

  ilp::Model shifted;
  const auto z = shifted.add_variable("z", 1.5, 3.0, ilp::VariableKind::integer);
  shifted.minimize(2.0 * z + 10.0);
  solution = ilp::solve(shifted);
  REQUIRE(solution.status == ilp::Status::optimal);
  CHECK(solution.objective == doctest::Approx(14.0));
  CHECK(solution.root_bound.value() == doctest::Approx(13.0));
}

TEST_CASE("a start is CBC's first solution; a start that names no variable of the model is an error") {
  ilp::Model model;
  const auto a = model.add_binary("a"), b = model.add_binary("b"), c = model.add_binary("c");
  model.add_constraint("r1", 2.0 * a + 3.0 * b + c, ilp::Sense::less_equal, 5.0);
  model.add_constraint("r3", 3.0 * a + 4.0 * b + 2.0 * c, ilp::Sense::less_equal, 8.0);
  model.maximize(5.0 * a + 4.0 * b + 3.0 * c);
  ilp::SolverOptions options;
  options.start = {{a, 1.0}, {c, 1.0}};  // 8, one short of the optimum
  const auto solution = ilp::solve(model, options);
  REQUIRE(solution.status == ilp::Status::optimal);
  CHECK(solution.objective == doctest::Approx(9.0));

  options.start = {{ilp::Variable{5}, 1.0}};
  CHECK_THROWS_WITH_AS(ilp::solve(model, options), "ilp: the start names variable 5, but the model has 3", Error);
}
