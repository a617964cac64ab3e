#include <doctest/doctest.h>

#include <deque>
#include <string>
#include <vector>

#include "dilemma/runtime/node.hpp"
#include "runtime_test_support.hpp"

using namespace dilemma;
using namespace dilemma::runtime;
using quant::Format;

namespace {

// Feeds a node scripted messages (through the encoding, as a transport
// would) and keeps what it sends. Ends with a shutdown from the user.
class ScriptedEndpoint final : public Endpoint {
 public:
  ScriptedEndpoint(Address self, Address user) : self_(self), user_(user) {}
  void push(Address from, Message message) {
    message.header.from = from;
    message.header.to = self_;
    inbox_.push_back(encode(message));
  }
  void push_bytes(std::vector<std::byte> bytes) { inbox_.push_back(std::move(bytes)); }
  Address address() const override { return self_; }
  void send(Address to, Message message) override {
    message.header.from = self_;
    message.header.to = to;
    sent.push_back(decode(encode(message), "test"));
  }
  std::optional<Message> receive(Clock::duration) override {
    if (inbox_.empty()) {
      Message shutdown = make_control_message(MessageKind::shutdown);
      shutdown.header.from = user_;
      return shutdown;
    }
    auto bytes = std::move(inbox_.front());
    inbox_.pop_front();
    return decode(bytes, "node under test");
  }
  std::vector<Message> sent;

 private:
  Address self_, user_;
  std::deque<std::vector<std::byte>> inbox_;
};

std::vector<std::string> errors(const std::vector<Message>& sent) {
  std::vector<std::string> texts;
  for (const Message& m : sent) {
    if (m.header.kind == MessageKind::error) texts.push_back(payload_text(m));
  }
  return texts;
}

struct Fixture {
  // layer.7 and the head on beta (address 1), the rest on alpha (address 0),
  // which sends layer.7's input.
  plan::Plan plan = testing::hand_plan(
      testing::test_cluster(), {"alpha", "alpha", "alpha", "alpha", "alpha", "alpha", "alpha", "alpha", "beta", "beta"},
      testing::all_f32());
  model::OptCheckpoint checkpoint = model::OptCheckpoint::open(testing::tiny_opt());
  Deployment deployment = deploy(plan, checkpoint.config(), {12, 4, 1}, {0, std::nullopt, testing::test_scheme()});
  Node node{deployment, 1, load_node_stages(checkpoint, deployment, 1), NodeOptions{{4, false}, WireFormat::f32, false, {}}};
  ScriptedEndpoint endpoint{1, deployment.user()};

  Message prefill(std::uint64_t request, Eigen::Index rows = 12, std::uint32_t stage = 8) const {
    model::Matrix values = model::Matrix::Constant(rows, 192, 0.1f);
    return make_activations_message(MessageKind::prefill_activations, request, stage, 0, values, WireFormat::f32);
  }
  Message decode_step(std::uint64_t request, std::uint32_t sequence) const {
    model::Matrix values = model::Matrix::Constant(1, 192, 0.2f);
    return make_activations_message(MessageKind::decode_activation, request, 8, sequence, values, WireFormat::f32);
  }
};

}  // namespace

TEST_CASE("a node runs its consecutive stages and sends the sampled token to the embedding and the user") {
  Fixture f;
  f.endpoint.push(0, f.prefill(5));
  f.node.serve(f.endpoint, true);
  CHECK(errors(f.endpoint.sent).empty());
  REQUIRE(f.endpoint.sent.size() == 3);  // token to alpha (embedding), token to the user, report
  CHECK(f.endpoint.sent[0].header.kind == MessageKind::token);
  CHECK(f.endpoint.sent[0].header.to == 0);
  CHECK(f.endpoint.sent[0].header.sequence == 1);  // decode step 1 comes next
  CHECK(f.endpoint.sent[1].header.to == f.deployment.user());
  CHECK(f.endpoint.sent[1].header.sequence == 0);  // the first generated token
  CHECK(f.endpoint.sent[1].header.flags == 0);
  CHECK(token_ids(f.endpoint.sent[0]) == token_ids(f.endpoint.sent[1]));
  CHECK(f.endpoint.sent[2].header.kind == MessageKind::report);
  const NodeReport report = NodeReport::from_json(nlohmann::json::parse(payload_text(f.endpoint.sent[2])));
  CHECK(report.server == "beta");
  REQUIRE(report.stages.size() == 2);
  for (const StageTiming& t : report.stages) {
    CHECK(t.prefill_calls == 1);
    CHECK(t.decode_calls == 0);
  }
  CHECK(f.node.requests_held() == 1);
}

TEST_CASE("the last token carries the last-token flag and is not fed back") {
  Fixture f;
  f.endpoint.push(0, f.prefill(5));
  for (std::uint32_t step = 1; step < 4; ++step) f.endpoint.push(0, f.decode_step(5, step));
  f.node.serve(f.endpoint, false);
  CHECK(errors(f.endpoint.sent).empty());
  REQUIRE(f.endpoint.sent.size() == 7);  // three tokens fed back and sent; the fourth only sent
  CHECK(f.endpoint.sent.back().header.flags == flag_last_token);
  CHECK(f.endpoint.sent.back().header.sequence == 3);
}

TEST_CASE("messages that break the protocol are answered with errors naming the node, and the node serves on") {
  Fixture f;
  SUBCASE("decode before prefill") {
    f.endpoint.push(0, f.decode_step(5, 1));
    f.node.serve(f.endpoint, false);
    CHECK(errors(f.endpoint.sent) ==
          std::vector<std::string>{"node \"beta\": request 5: decode_activation message for stage layer.7 before any prefill"});
  }
  SUBCASE("a sequence number out of order") {
    f.endpoint.push(0, f.prefill(5));
    f.endpoint.push(0, f.decode_step(5, 2));
    f.node.serve(f.endpoint, false);
    CHECK(errors(f.endpoint.sent) ==
          std::vector<std::string>{"node \"beta\": request 5: stage layer.7: sequence 2 arrived, expected 1"});
    CHECK(f.node.requests_held() == 0);  // the failed request's caches are dropped
  }
  SUBCASE("a stage the node does not run") {
    Message wrong = f.prefill(5);
    wrong.header.stage = 1;
    f.endpoint.push(0, wrong);
    f.node.serve(f.endpoint, false);
    CHECK(errors(f.endpoint.sent) == std::vector<std::string>{
                                         "node \"beta\": request 5: prefill_activations message from node \"alpha\" "
                                         "for stage layer.0, which this node does not run"});
  }
  SUBCASE("a stage index beyond the model") {
    Message wrong = f.prefill(5);
    wrong.header.stage = 99;
    f.endpoint.push(0, wrong);
    f.node.serve(f.endpoint, false);
    CHECK(errors(f.endpoint.sent) == std::vector<std::string>{
                                         "node \"beta\": request 5: prefill_activations message from node \"alpha\" "
                                         "for stage #99, which this node does not run"});
  }
  SUBCASE("a stage whose input comes from this node itself") {
    Message wrong = f.prefill(5, 12, 9);
    f.endpoint.push(0, wrong);
    f.node.serve(f.endpoint, false);
    CHECK(errors(f.endpoint.sent) == std::vector<std::string>{
                                         "node \"beta\": request 5: prefill_activations message for stage head from "
                                         "node \"alpha\"; its input comes from this node"});
  }
  SUBCASE("the wrong sender") {
    f.endpoint.push(2, f.prefill(5));
    f.node.serve(f.endpoint, false);
    CHECK(errors(f.endpoint.sent) == std::vector<std::string>{
                                         "node \"beta\": request 5: prefill_activations message for stage layer.7 from "
                                         "node \"gamma\"; its input comes from node \"alpha\""});
  }
  SUBCASE("activations of the wrong width") {
    model::Matrix narrow = model::Matrix::Constant(12, 96, 0.1f);
    f.endpoint.push(0, make_activations_message(MessageKind::prefill_activations, 5, 8, 0, narrow, WireFormat::f32));
    f.node.serve(f.endpoint, false);
    CHECK(errors(f.endpoint.sent) ==
          std::vector<std::string>{"node \"beta\": request 5: stage layer.7 expects activations of width 192, got 96"});
  }
  SUBCASE("more tokens than the context holds") {
    f.endpoint.push(0, f.prefill(5, 257));
    f.node.serve(f.endpoint, false);
    CHECK(errors(f.endpoint.sent) == std::vector<std::string>{
                                         "node \"beta\": request 5: stage layer.7: 257 more tokens after 0 exceed the "
                                         "model's context of 256"});
  }
  SUBCASE("a second prefill for the same request") {
    f.endpoint.push(0, f.prefill(5));
    f.endpoint.push(0, f.prefill(5));
    f.node.serve(f.endpoint, false);
    CHECK(errors(f.endpoint.sent) ==
          std::vector<std::string>{"node \"beta\": request 5: a second prefill for stage layer.7"});
  }
  SUBCASE("a malformed message") {
    auto bytes = encode(f.prefill(5));
    bytes.resize(bytes.size() - 4);
    f.endpoint.push_bytes(bytes);
    f.endpoint.push(0, f.prefill(6));  // the node serves on
    f.node.serve(f.endpoint, false);
    CHECK(errors(f.endpoint.sent) ==
          std::vector<std::string>{"node under test: malformed prefill_activations message from 0: the header "
                                   "announces 9216 payload bytes, 9212 arrived"});
    CHECK(f.node.requests_held() == 1);
  }
  SUBCASE("a kind nodes do not take") {
    Message pong = make_control_message(MessageKind::pong, 5);
    f.endpoint.push(3, pong);
    f.node.serve(f.endpoint, false);
    CHECK(errors(f.endpoint.sent) ==
          std::vector<std::string>{"node \"beta\": request 5: unexpected pong message from the user \"phone\""});
  }
}

TEST_CASE("ping is answered, release drops a request's caches") {
  Fixture f;
  f.endpoint.push(0, f.prefill(5));
  f.endpoint.push(3, make_control_message(MessageKind::ping));
  f.endpoint.push(3, make_control_message(MessageKind::release, 5));
  f.node.serve(f.endpoint, false);
  REQUIRE(f.endpoint.sent.size() == 3);
  CHECK(f.endpoint.sent[2].header.kind == MessageKind::pong);
  CHECK(f.endpoint.sent[2].header.to == 3);
  CHECK(f.node.requests_held() == 0);
}
