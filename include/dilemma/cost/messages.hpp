#pragma once
// The messages one request sends between nodes, and what they cost on a link.
// A request sends the prompt from the user to the embedding's server; across
// every boundary between two stages, the prefill's rows once and then one
// token's activations in each decode step; in each decode step, the new token
// from the head back to the embedding; and every generated token from the head
// to the user. The evaluation, the integer program and the other planners all
// price these messages here, so that they agree on what a plan's links cost.

#include <cstddef>
#include <optional>

#include "dilemma/cost/instance.hpp"
#include "dilemma/cost/model_costs.hpp"
#include "dilemma/error.hpp"

namespace dilemma::cost {

// One kind of message of a request.
struct Message {
  double bytes = 0.0;  // per message
  double count = 1.0;  // messages per request
  // Whether the request waits for one of them in every decode step, or only
  // once, before its first token (the prompt, the prefill's activations) or
  // at its end (the last generated token).
  bool every_decode_step = false;

  // How many of the messages hold the request up: one, or one per decode step.
  double critical() const { return every_decode_step ? count : 1.0; }
};

inline Message prompt_message(const ModelCosts& costs) {
  return {static_cast<double>(costs.request.prompt_tokens) * costs.token_id_bytes, 1.0, false};
}
// The prefill's activations into stage `stage` (≥ 1).
inline Message prefill_activations_message(const ModelCosts& costs, std::size_t stage) {
  return {static_cast<double>(costs.prefill_rows_into(stage)) * costs.activation_bytes, 1.0, false};
}
// One token's activations across a boundary, in each decode step.
inline Message decode_activations_message(const ModelCosts& costs) {
  return {costs.activation_bytes, static_cast<double>(costs.request.decode_steps()), true};
}
// The new token from the head back to the embedding, in each decode step.
inline Message fed_back_token_message(const ModelCosts& costs) {
  return {costs.token_id_bytes, static_cast<double>(costs.request.decode_steps()), true};
}
// Every generated token to the user; only the last one's trip ends the
// request, the earlier ones overlap with the next decode step.
inline Message generated_tokens_message(const ModelCosts& costs) {
  return {costs.token_id_bytes, static_cast<double>(costs.request.new_tokens), false};
}

// What a kind of message costs a request on one link.
struct LinkCost {
  double seconds = 0.0;  // on the request's critical path
  double busy = 0.0;     // the link's occupancy (throughput)
};

inline LinkCost operator+(const LinkCost& a, const LinkCost& b) { return {a.seconds + b.seconds, a.busy + b.busy}; }

// Nothing on one node or for no messages (a request of one new token feeds
// nothing back); nullopt when there is no link from `from` to `to`.
inline std::optional<LinkCost> link_cost(const LinkTable& links, std::size_t from, std::size_t to,
                                         const Message& message) {
  if (from == to || message.count == 0.0) return LinkCost{};
  const std::optional<double> seconds = links.transfer_seconds(from, to, message.bytes);
  if (!seconds) return std::nullopt;
  return LinkCost{message.critical() * *seconds, message.count * *links.busy_seconds(from, to, message.bytes)};
}

// The activations passing from node `from` to node `to` into stage `stage`
// (≥ 1): the prefill's rows, then one row in each decode step; nullopt
// without a link. The planners price every step of a chain between two
// servers with it.
inline std::optional<LinkCost> boundary_link_cost(const LinkTable& links, const ModelCosts& costs, std::size_t from,
                                                  std::size_t to, std::size_t stage) {
  const std::optional<LinkCost> prefill = link_cost(links, from, to, prefill_activations_message(costs, stage));
  if (!prefill) return std::nullopt;
  return *prefill + *link_cost(links, from, to, decode_activations_message(costs));
}

// The same, for a step the caller knows has its link.
inline LinkCost boundary_cost(const LinkTable& links, const ModelCosts& costs, std::size_t from, std::size_t to,
                              std::size_t stage) {
  const std::optional<LinkCost> price = boundary_link_cost(links, costs, from, to, stage);
  if (!price) {
    dilemma::detail::fail("cost: no link from node {} to node {} for the step into stage {}", from, to, stage);
  }
  return *price;
}

}  // namespace dilemma::cost
