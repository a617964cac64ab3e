#pragma once
// A plan checked against the model that is about to run and the cluster it
// runs on, turned into what the nodes need: which node runs each stage in
// which format, and the addresses of the embedding, the head and the user.
// Every mismatch (stage count, unknown server, a format a server cannot run
// or a stage cannot be stored in, a missing link, memory over capacity, a
// request longer than the context) is rejected here, before any weight is
// loaded, with the reason and the numbers.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dilemma/cost/evaluate.hpp"
#include "dilemma/cost/stage_work.hpp"
#include "dilemma/edge/cluster.hpp"
#include "dilemma/edge/units.hpp"
#include "dilemma/error.hpp"
#include "dilemma/model/config.hpp"
#include "dilemma/plan/plan.hpp"
#include "dilemma/quant/format.hpp"
#include "dilemma/runtime/message.hpp"

namespace dilemma::runtime {

// The requests a deployment must hold at once: the longest prompt and the
// most new tokens of any of them, and how many are in flight together.
struct RequestShape {
  std::int64_t prompt_tokens = 1;
  std::int64_t new_tokens = 1;
  std::int64_t requests_in_flight = 1;
};

struct DeploymentOptions {
  std::size_t model = 0;                // which model of the plan
  std::optional<edge::Cluster> cluster;  // run on this cluster instead of the plan's own
  quant::QuantScheme scheme;            // how integer formats are laid out
};

struct Deployment {
  edge::Cluster cluster;                  // the cluster the run uses
  std::string model_name;                 // the plan's name for the model
  model::OptConfig config;                // the model's
  quant::QuantScheme scheme;
  RequestShape shape;
  std::vector<cost::Placement> stages;    // per stage: server index in `cluster`, format
  std::vector<std::string> stage_names;   // "embedding", "layer.<i>", "head"

  std::size_t stage_count() const { return stages.size(); }
  Address user() const { return static_cast<Address>(cluster.servers.size()); }
  Address node_of_stage(std::size_t stage) const { return static_cast<Address>(stages.at(stage).server); }
  Address embedding_node() const { return node_of_stage(0); }
  Address head_node() const { return node_of_stage(stages.size() - 1); }
  // The cluster node (cost model numbering) an address sits on: the user is
  // on its access point server, or on its own node.
  std::size_t cluster_node(Address address) const {
    return address == user() ? cluster.user_node() : static_cast<std::size_t>(address);
  }
  // A server's name, or the user's.
  std::string name(Address address) const {
    return address == user() ? cluster.user.name : cluster.servers.at(address).name;
  }
  std::string label(Address address) const {
    return address == user() ? fmt::format("the user \"{}\"", cluster.user.name)
                             : fmt::format("node \"{}\"", cluster.servers.at(address).name);
  }
  // Servers holding at least one stage, in cluster order.
  std::vector<Address> nodes() const {
    std::vector<Address> used;
    for (const cost::Placement& placement : stages) used.push_back(static_cast<Address>(placement.server));
    std::sort(used.begin(), used.end());
    used.erase(std::unique(used.begin(), used.end()), used.end());
    return used;
  }
  std::vector<std::size_t> stages_on(Address node) const {
    std::vector<std::size_t> result;
    for (std::size_t s = 0; s < stages.size(); ++s) {
      if (stages[s].server == node) result.push_back(s);
    }
    return result;
  }
  // The bytes the planned formats take on `node`: weights as the cost model
  // lays them out, plus one KV cache per request in flight.
  double planned_memory_bytes(Address node) const {
    double bytes = 0.0;
    for (std::size_t s : stages_on(node)) {
      bytes += cost::weight_bytes(cost::stage_shape(config, s), stages[s].format, scheme);
      bytes += kv_cache_bytes(s);
    }
    return bytes;
  }
  double kv_cache_bytes(std::size_t stage) const {
    return cost::kv_cache_bytes(config, stage, shape.prompt_tokens + shape.new_tokens) *
           static_cast<double>(shape.requests_in_flight);
  }
};

namespace detail {

inline std::string format_list(const std::vector<quant::Format>& formats) {
  std::string list;
  for (quant::Format format : formats) list += (list.empty() ? "" : ", ") + std::string(quant::format_name(format));
  return list;
}

inline std::string stage_list(const Deployment& deployment, const std::vector<std::size_t>& stages) {
  std::string list;
  for (std::size_t s : stages) list += (list.empty() ? "" : ", ") + deployment.stage_names[s];
  return list;
}

}  // namespace detail

inline Deployment deploy(const plan::Plan& plan, const model::OptConfig& config, const RequestShape& shape,
                         const DeploymentOptions& options = {}) {
  using dilemma::detail::fail;
  if (!plan.has_plan()) {
    std::string reasons;
    for (const std::string& reason : plan.reasons) reasons += "; " + reason;
    fail("the plan has no assignment to run (status {}{})", plan::status_name(plan.status), reasons);
  }
  if (options.model >= plan.assignments.size()) {
    fail("the plan places {} model(s); there is no model {} in it", plan.assignments.size(), options.model);
  }
  const cost::ModelCosts& costs = plan.problem.instance.workloads.at(options.model).costs;
  const cost::Assignment& assignment = plan.assignments[options.model];
  const edge::Cluster& planned = plan.problem.instance.cluster;

  Deployment deployment;
  deployment.cluster = options.cluster ? *options.cluster : planned;
  deployment.cluster.validate(deployment.cluster.name.empty() ? "cluster" : deployment.cluster.name);
  deployment.model_name = costs.name;
  deployment.config = config;
  deployment.scheme = options.scheme;
  deployment.shape = shape;
  const edge::Cluster& cluster = deployment.cluster;

  const auto stage_count = static_cast<std::size_t>(config.num_stages());
  if (assignment.size() != stage_count) {
    fail("the plan's model \"{}\" has {} stages, but the model to run has {} (embedding, {} layers, head)", costs.name,
         assignment.size(), stage_count, config.num_hidden_layers);
  }
  for (std::size_t s = 0; s < stage_count; ++s) {
    deployment.stage_names.push_back(cost::stage_name(config, s));
    if (costs.stages[s].name != deployment.stage_names[s]) {
      fail("the plan's stage {} is \"{}\", the model's is \"{}\"", s, costs.stages[s].name, deployment.stage_names[s]);
    }
  }
  if (shape.prompt_tokens < 1 || shape.new_tokens < 1 || shape.requests_in_flight < 1) {
    fail("a request needs at least 1 prompt token and 1 new token, and at least 1 request in flight (got {}, {}, {})",
         shape.prompt_tokens, shape.new_tokens, shape.requests_in_flight);
  }
  if (shape.prompt_tokens + shape.new_tokens > config.max_position_embeddings) {
    fail("a prompt of {} tokens and {} new tokens exceed the model's context of {} positions", shape.prompt_tokens,
         shape.new_tokens, config.max_position_embeddings);
  }

  for (std::size_t s = 0; s < stage_count; ++s) {
    const std::string& planned_server = planned.servers.at(assignment[s].server).name;
    const std::string what = fmt::format("plan: stage {}", deployment.stage_names[s]);
    const std::size_t server = cluster.server_index(planned_server, what);
    const quant::Format format = assignment[s].format;
    const edge::Server& spec = cluster.servers[server];
    if (!spec.runs(format)) {
      fail("{} is planned on server \"{}\" in {}, which that server cannot run (it runs {})", what, spec.name,
           quant::format_name(format), detail::format_list(spec.formats));
    }
    if (!cost::can_store(cost::stage_shape(config, s), format, options.scheme)) {
      fail("{} cannot be stored in {} with groups of {}: the group size must be a multiple of 32 dividing the "
           "columns of every matrix of the stage",
           what, quant::format_name(format), options.scheme.group_size);
    }
    deployment.stages.push_back({server, format});
  }

  // Every message of a request needs a link (the cost model's list).
  auto require_link = [&](Address from, Address to, const std::string& what) {
    const std::size_t a = deployment.cluster_node(from), b = deployment.cluster_node(to);
    if (a != b && !cluster.link(a, b)) {
      fail("no link from \"{}\" to \"{}\" in cluster \"{}\" for {}", cluster.node_name(a), cluster.node_name(b),
           cluster.name, what);
    }
  };
  require_link(deployment.user(), deployment.embedding_node(), "the prompt");
  for (std::size_t s = 0; s + 1 < stage_count; ++s) {
    require_link(deployment.node_of_stage(s), deployment.node_of_stage(s + 1),
                 fmt::format("the activations from {} to {}", deployment.stage_names[s], deployment.stage_names[s + 1]));
  }
  require_link(deployment.head_node(), deployment.embedding_node(), "the tokens fed back to the embedding");
  require_link(deployment.head_node(), deployment.user(), "the generated tokens");

  for (Address node : deployment.nodes()) {
    const double needed = deployment.planned_memory_bytes(node);
    const double capacity = cluster.servers[node].memory_bytes;
    if (needed > capacity * (1.0 + cost::feasibility_tolerance)) {
      fail("server \"{}\": the stages planned on it ({}) need {} in their formats with {} request(s) of {} + {} "
           "tokens in flight, it has {}",
           cluster.servers[node].name, detail::stage_list(deployment, deployment.stages_on(node)),
           edge::format_bytes(needed), shape.requests_in_flight, shape.prompt_tokens, shape.new_tokens,
           edge::format_bytes(capacity));
    }
  }
  return deployment;
}

}  // namespace dilemma::runtime
