#include <doctest/doctest.h>

#include <vector>

#include "dilemma/ilp/model.hpp"

using namespace dilemma;

TEST_CASE("linear expressions merge repeated variables and move constants to the right-hand side") {
  ilp::Model model;
  const auto x = model.add_variable("x", 0.0, 10.0);
  const auto y = model.add_binary("y");
  // 2x + 3 + y - x - y ≤ 7  →  x ≤ 4 (y cancels)
  const auto row = model.add_constraint("row", 2.0 * x + 3.0 + y - x - y, ilp::Sense::less_equal, 7.0);
  const auto& constraint = model.constraints()[row];
  CHECK(constraint.name == "row");
  REQUIRE(constraint.terms.size() == 1);
  CHECK(constraint.terms[0].first == x.index);
  CHECK(constraint.terms[0].second == 1.0);
  CHECK(constraint.rhs == 4.0);

  // Variables on both sides: x ≥ 2y + 1  →  x − 2y ≥ 1.
  model.add_constraint("both", x, ilp::Sense::greater_equal, 2.0 * y + 1.0);
  const auto& both = model.constraints()[1];
  REQUIRE(both.terms.size() == 2);
  CHECK(both.terms[1].second == -2.0);
  CHECK(both.rhs == 1.0);

  model.maximize(x * 1.5 + y + 2.0);
  CHECK(model.direction() == ilp::Direction::maximize);
  CHECK(model.objective_constant() == 2.0);
  CHECK(model.objective_terms().size() == 2);
  const std::vector<double> values{4.0, 1.0};
  CHECK((x * 1.5 + y + 2.0).value(values) == 9.0);
}

TEST_CASE("the builder rejects bad bounds, coefficients and foreign variables") {
  ilp::Model model;
  CHECK_THROWS_WITH_AS(model.add_variable("z", 2.0, 1.0), "ilp: variable \"z\" has invalid bounds [2, 1]", Error);
  const auto x = model.add_variable("x", 0.0, ilp::infinity);
  CHECK_THROWS_WITH_AS(model.add_constraint("nan", x * std::numeric_limits<double>::quiet_NaN(), ilp::Sense::equal),
                       "ilp: variable \"x\" has a non-finite coefficient nan", Error);
  CHECK_THROWS_WITH_AS(model.add_constraint("foreign", ilp::Variable{7}, ilp::Sense::equal),
                       "ilp: an expression uses a variable of another model", Error);
}
