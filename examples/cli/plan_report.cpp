// The plan as a table for people: every stage's server, format, memory,
// error and times; the predicted delays, links and servers.

#include "plan_report.hpp"

#include <cmath>
#include <string>

#include <fmt/format.h>

#include "dilemma/edge/units.hpp"

namespace dilemma::cli {

namespace {

std::string percent(double fraction) { return fmt::format("{:.1f}%", 100.0 * fraction); }

}  // namespace

void print_plan(const plan::Plan& plan) {
  const cost::Instance& instance = plan.problem.instance;
  const edge::Cluster& cluster = instance.cluster;
  const plan::SolverReport& solver = plan.solver;
  std::string solver_line = fmt::format("{}, {}, {}", solver.solver, solver.status, edge::format_seconds(solver.seconds));
  if (solver.nodes > 0 || solver.variables > 0) solver_line += fmt::format(", {} nodes", solver.nodes);
  if (solver.gap) solver_line += fmt::format(", gap {}", percent(*solver.gap));
  if (solver.root_gap) solver_line += fmt::format(", root LP gap {}", percent(*solver.root_gap));
  if (solver.variables > 0) {
    solver_line += fmt::format(", {} variables, {} constraints", solver.variables, solver.constraints);
  }
  fmt::print("plan: {} on cluster \"{}\", {} ({})\n", plan.method, cluster.name, plan::status_name(plan.status),
             solver_line);
  if (!plan.has_plan()) {
    fmt::print("no plan:\n");
    for (const std::string& reason : plan.reasons) fmt::print("  - {}\n", reason);
    return;
  }
  const cost::Evaluation& evaluation = plan.evaluation;
  for (std::size_t m = 0; m < plan.assignments.size(); ++m) {
    const cost::Workload& workload = instance.workloads[m];
    const cost::ModelCosts& costs = workload.costs;
    const cost::ModelEvaluation& model = evaluation.models[m];
    fmt::print("\nmodel \"{}\" ({} prompt + {} new tokens, costs {}, weight {:g})\n", costs.name,
               costs.request.prompt_tokens, costs.request.new_tokens, costs.source, workload.weight);
    fmt::print("  {:<12} {:<20} {:<6} {:>11} {:>11} {:>10} {:>10}\n", "stage", "server", "format", "memory", "error",
               "prefill", "decode");
    for (std::size_t s = 0; s < plan.assignments[m].size(); ++s) {
      const auto [server, format] = plan.assignments[m][s];
      const auto& times = costs.stages[s].time(server, format);
      fmt::print("  {:<12} {:<20} {:<6} {:>11} {:>11.3e} {:>10} {:>10}\n", costs.stages[s].name,
                 cluster.servers[server].name, quant::format_name(format),
                 edge::format_bytes(costs.memory_bytes(s, format)), costs.error(s, format),
                 edge::format_seconds(times->prefill_seconds), edge::format_seconds(times->decode_seconds));
    }
    double prefill_compute = 0.0, step_compute = 0.0;
    for (const cost::ServerUse& use : model.servers) {
      prefill_compute += use.prefill_seconds;
      step_compute += use.decode_step_seconds;
    }
    fmt::print("  time to first token {} (compute {}, transfers {})\n", edge::format_seconds(model.first_token_seconds),
               edge::format_seconds(prefill_compute), edge::format_seconds(model.first_token_seconds - prefill_compute));
    fmt::print("  per generated token {} (compute {}, transfers {})\n", edge::format_seconds(model.decode_step_seconds),
               edge::format_seconds(step_compute), edge::format_seconds(model.decode_step_seconds - step_compute));
    fmt::print("  completion          {} (compute {}, transfers {})\n", edge::format_seconds(model.completion_seconds),
               edge::format_seconds(model.compute_seconds), edge::format_seconds(model.transfer_seconds));
    fmt::print("  throughput          {:.3g} requests/s (bottleneck {} per request)\n",
               model.bottleneck_seconds > 0.0 ? 1.0 / model.bottleneck_seconds : 0.0,
               edge::format_seconds(model.bottleneck_seconds));
    const bool budgeted = std::isfinite(workload.accuracy_budget);
    fmt::print("  accuracy error      {:.4g}{}\n", model.error,
               budgeted ? fmt::format(" of the budget {:.4g} ({} used)", workload.accuracy_budget,
                                      workload.accuracy_budget > 0.0 ? percent(model.error / workload.accuracy_budget)
                                                                     : std::string("-"))
                        : std::string(" (no budget)"));
    fmt::print("  quantization ratio  {} ({} of {} in f32)\n", percent(model.quantization_ratio),
               edge::format_bytes(model.weight_bytes), edge::format_bytes(costs.f32_weight_bytes()));
    for (const cost::LinkUse& link : model.links) {
      fmt::print("  link {} -> {}: {} before the first token, {} per token, {} per request\n",
                 cluster.node_name(link.from), cluster.node_name(link.to), edge::format_seconds(link.first_token_seconds),
                 edge::format_seconds(link.decode_step_seconds), edge::format_bytes(link.bytes));
    }
  }
  fmt::print("\n  {:<20} {:>8} {:>23} {:>12}\n", "server", "stages", "memory used / capacity", "busy/request");
  for (std::size_t j = 0; j < cluster.servers.size(); ++j) {
    std::size_t stages = 0;
    for (const cost::ModelEvaluation& model : evaluation.models) stages += model.servers[j].stages.size();
    fmt::print("  {:<20} {:>8} {:>23} {:>12}\n", cluster.servers[j].name, stages,
               fmt::format("{} / {}", edge::format_bytes(evaluation.server_memory_bytes[j]),
                           edge::format_bytes(cluster.servers[j].memory_bytes)),
               edge::format_seconds(evaluation.server_busy_seconds[j]));
  }
  fmt::print("\nobjective ({}): {}\n", cost::objective_name(instance.objective),
             edge::format_seconds(evaluation.objective));
}

}  // namespace dilemma::cli
