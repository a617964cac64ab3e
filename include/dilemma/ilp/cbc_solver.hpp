#pragma once
// Solves an ilp::Model with COIN-OR CBC through its C API, and its LP
// relaxation with CLP, whose optimum is the bound at the root before CBC adds
// cuts (how tight a formulation is shows in the gap between the two).
//
// CBC's tolerances are absolute (1e-7 on reduced costs and row activities,
// 1e-6 on integrality): express the objective in units where the differences
// that matter exceed them, e.g. scaled so that typical coefficients are ≥ 1.

#include <Cbc_C_Interface.h>
#include <Clp_C_Interface.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dilemma/error.hpp"
#include "dilemma/ilp/model.hpp"

namespace dilemma::ilp {

struct SolverOptions {
  double time_limit_seconds = infinity;
  // Stop once (objective − bound) / |objective| is at most this; 0 proves optimality.
  double relative_gap = 0.0;
  int threads = 1;              // more than one makes the search order, and so ties, nondeterministic
  int log_level = 0;            // 0 silent, 1 CBC's progress summary, up to 4 for detail
  bool root_relaxation = true;  // also solve the LP relaxation to report the root bound
  // Further CBC parameters, as on its command line without the dash, e.g.
  // {"cuts", "off"} or {"preprocess", "sos"}.
  std::vector<std::pair<std::string, std::string>> parameters;
  // A known solution for CBC to start from: its nonzero integer variables
  // (the others are taken as zero, the continuous ones completed by CBC).
  std::vector<std::pair<Variable, double>> start;
};

enum class Status {
  optimal,      // proven optimal (within relative_gap)
  feasible,     // stopped by the time limit with a solution; `gap` says how far from proven
  infeasible,   // proven to have no solution
  no_solution,  // stopped by the time limit before finding any solution
  unbounded,    // the LP relaxation is unbounded
};

inline std::string_view status_name(Status status) {
  switch (status) {
    case Status::optimal:
      return "optimal";
    case Status::feasible:
      return "feasible";
    case Status::infeasible:
      return "infeasible";
    case Status::no_solution:
      return "no_solution";
    case Status::unbounded:
      return "unbounded";
  }
  return "unknown";
}

struct Solution {
  Status status = Status::no_solution;
  double objective = std::numeric_limits<double>::quiet_NaN();   // of the best solution found
  double best_bound = std::numeric_limits<double>::quiet_NaN();  // proven bound on the optimum
  double gap = std::numeric_limits<double>::quiet_NaN();         // |objective − best_bound| / |objective|
  std::optional<double> root_bound;                              // optimum of the LP relaxation
  double solve_seconds = 0.0;                                    // CBC's branch and bound, wall clock
  double root_seconds = 0.0;                                     // the separate LP relaxation, wall clock
  std::int64_t nodes = 0;
  std::vector<double> values;  // one per variable; empty without a solution

  bool has_solution() const { return !values.empty(); }
  double value(Variable variable) const { return values.at(variable.index); }
};

namespace detail {

struct CbcDeleter {
  void operator()(Cbc_Model* model) const { Cbc_deleteModel(model); }
};
struct ClpDeleter {
  void operator()(Clp_Simplex* model) const { Clp_deleteModel(model); }
};

// The model in the column-major arrays both C APIs load.
struct ColumnMajor {
  std::vector<CoinBigIndex> starts;
  std::vector<int> rows;
  std::vector<double> coefficients;
  std::vector<double> column_lower, column_upper, objective;
  std::vector<double> row_lower, row_upper;
};

inline double to_coin(double bound) {
  // COIN's infinity is DBL_MAX, not IEEE infinity.
  if (bound == infinity) return std::numeric_limits<double>::max();
  if (bound == -infinity) return -std::numeric_limits<double>::max();
  return bound;
}

inline ColumnMajor column_major(const Model& model) {
  const auto& variables = model.variables();
  const auto& constraints = model.constraints();
  if (variables.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      constraints.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    dilemma::detail::fail("ilp: the model is too large for CBC ({} variables, {} constraints)", variables.size(),
                          constraints.size());
  }
  ColumnMajor matrix;
  std::vector<std::size_t> counts(variables.size() + 1, 0);
  for (const Constraint& constraint : constraints) {
    for (const auto& term : constraint.terms) ++counts[term.first + 1];
  }
  for (std::size_t j = 1; j < counts.size(); ++j) counts[j] += counts[j - 1];
  if (counts.back() > static_cast<std::size_t>(std::numeric_limits<CoinBigIndex>::max())) {
    dilemma::detail::fail("ilp: the model has too many nonzeros for CBC ({})", counts.back());
  }
  matrix.starts.assign(counts.begin(), counts.end());
  matrix.rows.resize(counts.back());
  matrix.coefficients.resize(counts.back());
  std::vector<std::size_t> next(counts.begin(), counts.end() - 1);
  for (std::size_t i = 0; i < constraints.size(); ++i) {
    const Constraint& constraint = constraints[i];
    for (const auto& [column, coefficient] : constraint.terms) {
      matrix.rows[next[column]] = static_cast<int>(i);
      matrix.coefficients[next[column]] = coefficient;
      ++next[column];
    }
    const double rhs = constraint.rhs;
    matrix.row_lower.push_back(constraint.sense == Sense::less_equal ? to_coin(-infinity) : rhs);
    matrix.row_upper.push_back(constraint.sense == Sense::greater_equal ? to_coin(infinity) : rhs);
  }
  matrix.objective.assign(variables.size(), 0.0);
  for (const auto& [column, coefficient] : model.objective_terms()) matrix.objective[column] = coefficient;
  for (const VariableInfo& variable : variables) {
    matrix.column_lower.push_back(to_coin(variable.lower));
    matrix.column_upper.push_back(to_coin(variable.upper));
  }
  return matrix;
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The LP relaxation, solved by CLP: the root bound of a MILP, or the whole
// answer for a model without integer variables.
struct Relaxation {
  Status status = Status::no_solution;
  double objective = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> values;
  double seconds = 0.0;
};

inline Relaxation solve_relaxation(const Model& model, ColumnMajor& matrix, double time_limit_seconds) {
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<Clp_Simplex, ClpDeleter> clp(Clp_newModel());
  if (!clp) dilemma::detail::fail("ilp: CLP could not create a model");
  Clp_setLogLevel(clp.get(), 0);
  Clp_loadProblem(clp.get(), static_cast<int>(model.variables().size()), static_cast<int>(model.constraints().size()),
                  matrix.starts.data(), matrix.rows.data(), matrix.coefficients.data(), matrix.column_lower.data(),
                  matrix.column_upper.data(), matrix.objective.data(), matrix.row_lower.data(),
                  matrix.row_upper.data());
  Clp_setObjSense(clp.get(), model.direction() == Direction::minimize ? 1.0 : -1.0);
  if (std::isfinite(time_limit_seconds)) Clp_setMaximumSeconds(clp.get(), time_limit_seconds);
  // The dual simplex, not CLP's automatic choice: on the planner's programs,
  // with several times more columns than rows, that choice is the primal
  // simplex with an idiot crash, which took 279 s on bench_planner's
  // opt-66b-16 throughput relaxation where the dual simplex takes 1 s (and is
  // no slower on the smaller ones; docs/performance.md, "Planner solve times").
  Clp_initialDualSolve(clp.get());
  Relaxation relaxation;
  relaxation.seconds = seconds_since(start);
  if (Clp_isProvenOptimal(clp.get())) {
    relaxation.status = Status::optimal;
    relaxation.objective = Clp_objectiveValue(clp.get()) + model.objective_constant();
    const double* values = Clp_getColSolution(clp.get());
    relaxation.values.assign(values, values + model.variables().size());
  } else if (Clp_isProvenPrimalInfeasible(clp.get())) {
    relaxation.status = Status::infeasible;
  } else if (Clp_isProvenDualInfeasible(clp.get())) {
    relaxation.status = Status::unbounded;
  }
  return relaxation;
}

}  // namespace detail

inline Solution solve(const Model& model, const SolverOptions& options = {}) {
  if (!(options.relative_gap >= 0.0))
    dilemma::detail::fail("ilp: relative_gap must be >= 0, got {}", options.relative_gap);
  if (!(options.time_limit_seconds > 0.0)) {
    dilemma::detail::fail("ilp: time_limit_seconds must be positive, got {}", options.time_limit_seconds);
  }
  if (options.threads < 1) dilemma::detail::fail("ilp: threads must be >= 1, got {}", options.threads);
  Solution solution;
  const auto& variables = model.variables();
  if (variables.empty()) dilemma::detail::fail("ilp: the model has no variables");
  detail::ColumnMajor matrix = detail::column_major(model);
  const bool integral = std::any_of(variables.begin(), variables.end(), [](const VariableInfo& variable) {
    return variable.kind == VariableKind::integer;
  });
  if (!integral || options.root_relaxation) {
    detail::Relaxation relaxation = detail::solve_relaxation(model, matrix, options.time_limit_seconds);
    solution.root_seconds = relaxation.seconds;
    if (relaxation.status == Status::optimal) solution.root_bound = relaxation.objective;
    if (!integral) {  // a linear program: the relaxation is the answer
      solution.status = relaxation.status;
      solution.objective = solution.best_bound = relaxation.objective;
      if (relaxation.status == Status::optimal) solution.gap = 0.0;
      solution.values = std::move(relaxation.values);
      return solution;
    }
  }

  std::unique_ptr<Cbc_Model, detail::CbcDeleter> cbc(Cbc_newModel());
  if (!cbc) dilemma::detail::fail("ilp: CBC could not create a model");
  Cbc_loadProblem(cbc.get(), static_cast<int>(variables.size()), static_cast<int>(model.constraints().size()),
                  matrix.starts.data(), matrix.rows.data(), matrix.coefficients.data(), matrix.column_lower.data(),
                  matrix.column_upper.data(), matrix.objective.data(), matrix.row_lower.data(),
                  matrix.row_upper.data());
  for (std::size_t j = 0; j < variables.size(); ++j) {
    if (variables[j].kind == VariableKind::integer) Cbc_setInteger(cbc.get(), static_cast<int>(j));
    if (!variables[j].name.empty()) Cbc_setColName(cbc.get(), static_cast<int>(j), variables[j].name.c_str());
  }
  for (std::size_t i = 0; i < model.constraints().size(); ++i) {
    const std::string& name = model.constraints()[i].name;
    if (!name.empty()) Cbc_setRowName(cbc.get(), static_cast<int>(i), name.c_str());
  }
  const double sense = model.direction() == Direction::minimize ? 1.0 : -1.0;
  Cbc_setObjSense(cbc.get(), sense);
  Cbc_setLogLevel(cbc.get(), options.log_level);
  if (std::isfinite(options.time_limit_seconds)) Cbc_setMaximumSeconds(cbc.get(), options.time_limit_seconds);
  Cbc_setAllowableFractionGap(cbc.get(), options.relative_gap);
  // By default CBC ignores solutions less than 1e-5 better than its incumbent,
  // which is a large relative error for objectives near 1.
  Cbc_setParameter(cbc.get(), "increment", "1e-9");
  if (options.threads > 1) Cbc_setParameter(cbc.get(), "threads", std::to_string(options.threads).c_str());
  for (const auto& [name, value] : options.parameters) Cbc_setParameter(cbc.get(), name.c_str(), value.c_str());
  if (!options.start.empty()) {
    std::vector<int> columns;
    std::vector<double> values;
    for (const auto& [variable, value] : options.start) {
      if (variable.index >= variables.size()) {
        dilemma::detail::fail("ilp: the start names variable {}, but the model has {}", variable.index,
                              variables.size());
      }
      columns.push_back(static_cast<int>(variable.index));
      values.push_back(value);
    }
    Cbc_setMIPStartI(cbc.get(), static_cast<int>(columns.size()), columns.data(), values.data());
  }

  const auto start = std::chrono::steady_clock::now();
  Cbc_solve(cbc.get());
  solution.solve_seconds = detail::seconds_since(start);
  solution.nodes = Cbc_getNodeCount(cbc.get());

  if (Cbc_isAbandoned(cbc.get())) dilemma::detail::fail("ilp: CBC abandoned the solve after numerical difficulties");
  const bool found = Cbc_bestSolution(cbc.get()) != nullptr;
  if (Cbc_isProvenInfeasible(cbc.get())) {
    solution.status = Status::infeasible;
  } else if (Cbc_isContinuousUnbounded(cbc.get())) {
    solution.status = Status::unbounded;
  } else if (found) {
    solution.status = Cbc_isProvenOptimal(cbc.get()) ? Status::optimal : Status::feasible;
  } else {
    solution.status = Status::no_solution;
  }
  if (found) {
    const double* values = Cbc_getColSolution(cbc.get());
    solution.values.assign(values, values + variables.size());
    solution.objective = Cbc_getObjValue(cbc.get()) + model.objective_constant();
  }
  if (solution.status == Status::optimal || solution.status == Status::feasible ||
      solution.status == Status::no_solution) {
    const double bound = Cbc_getBestPossibleObjValue(cbc.get());
    if (std::abs(bound) < std::numeric_limits<double>::max() / 2)
      solution.best_bound = bound + model.objective_constant();
  }
  if (found && !std::isnan(solution.best_bound)) {
    solution.gap = std::abs(solution.objective - solution.best_bound) / std::max(std::abs(solution.objective), 1e-300);
  }
  return solution;
}

}  // namespace dilemma::ilp
