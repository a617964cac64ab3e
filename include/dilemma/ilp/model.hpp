#pragma once
// A small mixed-integer linear program builder: variables with bounds and
// integrality, linear expressions, named constraints and one objective. It
// holds the problem only; ilp/cbc_solver.hpp solves it.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dilemma/error.hpp"

namespace dilemma::ilp {

inline constexpr double infinity = std::numeric_limits<double>::infinity();

// A handle to a variable of one Model.
struct Variable {
  std::size_t index = 0;
};

// Σ coefficient · variable + constant. Terms may repeat a variable; the
// model merges them when a constraint or objective is added.
class LinearExpr {
 public:
  LinearExpr() = default;
  LinearExpr(double constant) : constant_(constant) {}  // NOLINT: implicit, so that `x + 1` reads naturally
  LinearExpr(Variable variable) { terms_.emplace_back(variable.index, 1.0); }  // NOLINT

  LinearExpr& add(Variable variable, double coefficient) {
    if (coefficient != 0.0) terms_.emplace_back(variable.index, coefficient);
    return *this;
  }
  LinearExpr& operator+=(const LinearExpr& other) {
    terms_.insert(terms_.end(), other.terms_.begin(), other.terms_.end());
    constant_ += other.constant_;
    return *this;
  }
  LinearExpr& operator-=(const LinearExpr& other) {
    for (const auto& [index, coefficient] : other.terms_) terms_.emplace_back(index, -coefficient);
    constant_ -= other.constant_;
    return *this;
  }
  LinearExpr& operator*=(double factor) {
    for (auto& term : terms_) term.second *= factor;
    constant_ *= factor;
    return *this;
  }
  const std::vector<std::pair<std::size_t, double>>& terms() const { return terms_; }
  double constant() const { return constant_; }
  double value(std::span<const double> values) const {
    double sum = constant_;
    for (const auto& [index, coefficient] : terms_) sum += coefficient * values[index];
    return sum;
  }

 private:
  std::vector<std::pair<std::size_t, double>> terms_;
  double constant_ = 0.0;
};

// Free functions rather than hidden friends, so that `x + y` on two Variables
// converts both operands.
inline LinearExpr operator+(LinearExpr left, const LinearExpr& right) { return left += right; }
inline LinearExpr operator-(LinearExpr left, const LinearExpr& right) { return left -= right; }
inline LinearExpr operator*(LinearExpr expr, double factor) { return expr *= factor; }
inline LinearExpr operator*(double factor, LinearExpr expr) { return expr *= factor; }
inline LinearExpr operator*(Variable variable, double coefficient) { return LinearExpr().add(variable, coefficient); }
inline LinearExpr operator*(double coefficient, Variable variable) { return LinearExpr().add(variable, coefficient); }

enum class VariableKind { continuous, integer };
enum class Sense { less_equal, greater_equal, equal };
enum class Direction { minimize, maximize };

struct VariableInfo {
  std::string name;
  double lower = 0.0;
  double upper = infinity;
  VariableKind kind = VariableKind::continuous;
};

// Σ terms (sense) rhs, with the expression's constant moved to the right.
struct Constraint {
  std::string name;
  std::vector<std::pair<std::size_t, double>> terms;  // merged: one per variable, no zeros
  Sense sense = Sense::less_equal;
  double rhs = 0.0;
};

class Model {
 public:
  Variable add_variable(std::string name, double lower, double upper, VariableKind kind = VariableKind::continuous) {
    if (std::isnan(lower) || std::isnan(upper) || lower > upper || lower == infinity || upper == -infinity) {
      dilemma::detail::fail("ilp: variable \"{}\" has invalid bounds [{}, {}]", name, lower, upper);
    }
    variables_.push_back({std::move(name), lower, upper, kind});
    return {variables_.size() - 1};
  }
  Variable add_binary(std::string name) { return add_variable(std::move(name), 0.0, 1.0, VariableKind::integer); }

  // Adds `left (sense) right`; returns the constraint's index.
  std::size_t add_constraint(std::string name, const LinearExpr& left, Sense sense, const LinearExpr& right = {}) {
    LinearExpr difference = left - right;
    Constraint constraint{std::move(name), merged(difference), sense, -difference.constant()};
    if (!std::isfinite(constraint.rhs)) {
      dilemma::detail::fail("ilp: constraint \"{}\" has a non-finite right-hand side", constraint.name);
    }
    constraints_.push_back(std::move(constraint));
    return constraints_.size() - 1;
  }

  void set_objective(Direction direction, const LinearExpr& objective) {
    direction_ = direction;
    objective_terms_ = merged(objective);
    objective_constant_ = objective.constant();
  }
  void minimize(const LinearExpr& objective) { set_objective(Direction::minimize, objective); }
  void maximize(const LinearExpr& objective) { set_objective(Direction::maximize, objective); }

  const std::vector<VariableInfo>& variables() const { return variables_; }
  const std::vector<Constraint>& constraints() const { return constraints_; }
  Direction direction() const { return direction_; }
  const std::vector<std::pair<std::size_t, double>>& objective_terms() const { return objective_terms_; }
  double objective_constant() const { return objective_constant_; }

 private:
  std::vector<std::pair<std::size_t, double>> merged(const LinearExpr& expr) const {
    std::vector<std::pair<std::size_t, double>> terms = expr.terms();
    for (const auto& [index, coefficient] : terms) {
      if (index >= variables_.size()) dilemma::detail::fail("ilp: an expression uses a variable of another model");
      if (!std::isfinite(coefficient)) {
        dilemma::detail::fail("ilp: variable \"{}\" has a non-finite coefficient {}", variables_[index].name,
                              coefficient);
      }
    }
    std::stable_sort(terms.begin(), terms.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<std::pair<std::size_t, double>> result;
    for (const auto& [index, coefficient] : terms) {
      if (!result.empty() && result.back().first == index) {
        result.back().second += coefficient;
      } else {
        result.emplace_back(index, coefficient);
      }
    }
    std::erase_if(result, [](const auto& term) { return term.second == 0.0; });
    return result;
  }

  std::vector<VariableInfo> variables_;
  std::vector<Constraint> constraints_;
  Direction direction_ = Direction::minimize;
  std::vector<std::pair<std::size_t, double>> objective_terms_;
  double objective_constant_ = 0.0;
};

}  // namespace dilemma::ilp
