#pragma once
// What travels between the nodes of a distributed run: a fixed 56-byte
// little-endian header and a payload whose size the header states. Every
// transport (emulated or MPI) carries the encoded bytes and decodes them on
// receipt, so a truncated, corrupted or inconsistent message is a
// dilemma::Error naming what is wrong, never a crash or a huge allocation.
// docs/runtime.md has the layout.

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <Eigen/Core>
#include <fmt/format.h>

#include "dilemma/error.hpp"
#include "dilemma/model/matrix.hpp"
#include "dilemma/token_id.hpp"

namespace dilemma::runtime {

static_assert(std::endian::native == std::endian::little, "dilemma::runtime encodes messages little-endian");

// An endpoint of a run: servers are 0 .. servers − 1 (the cluster's order),
// the user is `servers`.
using Address = std::uint32_t;

enum class MessageKind : std::uint8_t {
  prompt = 1,             // user → embedding node: the prompt's token ids
  prefill_activations,    // activations of the whole prompt entering `stage`
  decode_activation,      // one token's activations entering `stage`
  token,                  // a sampled token: head node → user, and → embedding node for the next step
  release,                // user → node: the request is over, drop its KV caches
  shutdown,               // user → node: stop serving
  error,                  // node → user: a UTF-8 message saying what went wrong where
  ping,                   // user → node: are you alive?
  pong,                   // node → user: yes
  report,                 // node → user at shutdown: the node's measurements as JSON text
};

// Control messages steer a run; the others carry a request's data (the
// cost model's traffic).
inline bool is_control(MessageKind kind) {
  return kind != MessageKind::prompt && kind != MessageKind::prefill_activations &&
         kind != MessageKind::decode_activation && kind != MessageKind::token;
}

inline constexpr std::uint8_t last_message_kind = static_cast<std::uint8_t>(MessageKind::report);

inline std::string_view kind_name(MessageKind kind) {
  switch (kind) {
    case MessageKind::prompt: return "prompt";
    case MessageKind::prefill_activations: return "prefill_activations";
    case MessageKind::decode_activation: return "decode_activation";
    case MessageKind::token: return "token";
    case MessageKind::release: return "release";
    case MessageKind::shutdown: return "shutdown";
    case MessageKind::error: return "error";
    case MessageKind::ping: return "ping";
    case MessageKind::pong: return "pong";
    case MessageKind::report: return "report";
  }
  return "unknown";
}

// How activations are encoded: float32 (exact) or float16 (half the bytes,
// rounded; the run reports the error it adds).
enum class WireFormat : std::uint8_t { f32 = 0, f16 = 1 };

inline std::string_view wire_format_name(WireFormat format) { return format == WireFormat::f32 ? "f32" : "f16"; }

inline WireFormat parse_wire_format(std::string_view name, std::string_view what) {
  if (name == "f32") return WireFormat::f32;
  if (name == "f16") return WireFormat::f16;
  dilemma::detail::fail("{}: unknown wire format \"{}\" (expected f32 or f16)", what, name);
}

inline std::size_t wire_value_bytes(WireFormat format) { return format == WireFormat::f32 ? 4 : 2; }

// Flags of a token message.
inline constexpr std::uint8_t flag_last_token = 1;  // the request generates nothing after this token

// Requests whose id has the top bit set are warm-ups: served like any other
// and left out of every measurement (stage times, traffic, link use), so
// that the first measured request meets warm allocators, caches and code.
inline constexpr std::uint64_t warm_up_request_bit = std::uint64_t{1} << 63;
inline bool is_warm_up(std::uint64_t request) { return (request & warm_up_request_bit) != 0; }
inline std::string request_name(std::uint64_t request) {
  return is_warm_up(request) ? std::string("the warm-up request") : fmt::format("request {}", request);
}

struct MessageHeader {
  MessageKind kind = MessageKind::shutdown;
  WireFormat wire = WireFormat::f32;
  std::uint8_t flags = 0;
  Address from = 0;
  Address to = 0;
  std::uint64_t request = 0;
  std::uint32_t stage = 0;     // the stage the payload enters (prompt: 0; token: the head, which sampled it)
  std::uint32_t sequence = 0;  // 0 = prefill / first token; k = decode step k / token k
  std::uint32_t rows = 0;      // activations: tokens; prompt / token: ids
  std::uint32_t cols = 0;      // activations: width; 0 otherwise
  std::uint64_t payload_bytes = 0;
};

struct Message {
  MessageHeader header;
  std::vector<std::byte> payload;
  // When the message reached its receiver: set by the receiving endpoint
  // (the emulated network's delivery time, or the moment MPI handed it
  // over), not sent. On the emulated cluster a receiver's thread may get the
  // CPU only later; what a user measures is the arrival.
  std::chrono::steady_clock::time_point arrived{};
};

inline constexpr std::array<char, 4> message_magic = {'D', 'L', 'M', 'A'};
inline constexpr std::uint16_t message_version = 1;
inline constexpr std::size_t header_bytes = 56;

namespace detail {

template <typename T>
void put(std::vector<std::byte>& out, std::size_t offset, T value) {
  std::memcpy(out.data() + offset, &value, sizeof value);
}

template <typename T>
T get(std::span<const std::byte> in, std::size_t offset) {
  T value;
  std::memcpy(&value, in.data() + offset, sizeof value);
  return value;
}

// Field offsets in the header (docs/runtime.md).
enum Offset : std::size_t {
  magic = 0,
  version = 4,
  kind = 6,
  wire = 7,
  flags = 8,
  // 9 .. 11 reserved, zero
  from = 12,
  to = 16,
  stage = 20,
  request = 24,
  sequence = 32,
  rows = 36,
  cols = 40,
  // 44 .. 47 reserved, zero
  payload_bytes = 48,
};

}  // namespace detail

inline std::size_t encoded_size(const Message& message) { return header_bytes + message.payload.size(); }

inline std::vector<std::byte> encode(const Message& message) {
  using namespace detail;
  std::vector<std::byte> out(header_bytes + message.payload.size(), std::byte{0});
  std::memcpy(out.data(), message_magic.data(), message_magic.size());
  const MessageHeader& h = message.header;
  put(out, Offset::version, message_version);
  put(out, Offset::kind, static_cast<std::uint8_t>(h.kind));
  put(out, Offset::wire, static_cast<std::uint8_t>(h.wire));
  put(out, Offset::flags, h.flags);
  put(out, Offset::from, h.from);
  put(out, Offset::to, h.to);
  put(out, Offset::stage, h.stage);
  put(out, Offset::request, h.request);
  put(out, Offset::sequence, h.sequence);
  put(out, Offset::rows, h.rows);
  put(out, Offset::cols, h.cols);
  put(out, Offset::payload_bytes, static_cast<std::uint64_t>(message.payload.size()));
  if (!message.payload.empty()) std::memcpy(out.data() + header_bytes, message.payload.data(), message.payload.size());
  return out;
}

// The payload size the header's kind and shape imply; nullopt for an error
// or report message (free text).
inline std::optional<std::uint64_t> expected_payload_bytes(const MessageHeader& h) {
  switch (h.kind) {
    case MessageKind::prompt:
    case MessageKind::token: return std::uint64_t{h.rows} * sizeof(TokenId);
    case MessageKind::prefill_activations:
    case MessageKind::decode_activation:
      return std::uint64_t{h.rows} * std::uint64_t{h.cols} * wire_value_bytes(h.wire);
    case MessageKind::release:
    case MessageKind::shutdown:
    case MessageKind::ping:
    case MessageKind::pong: return 0;
    case MessageKind::error:
    case MessageKind::report: return std::nullopt;
  }
  return 0;
}

// Decodes and checks one received message. `what` says where it arrived
// (e.g. `node "traffic-cam"`) and starts every error.
inline Message decode(std::span<const std::byte> bytes, std::string_view what) {
  using namespace detail;
  using dilemma::detail::fail;
  if (bytes.size() < header_bytes) {
    fail("{}: malformed message: {} bytes, shorter than the {}-byte header", what, bytes.size(), header_bytes);
  }
  if (std::memcmp(bytes.data(), message_magic.data(), message_magic.size()) != 0) {
    fail("{}: malformed message: bad magic (not a dilemma message)", what);
  }
  if (const auto version = get<std::uint16_t>(bytes, Offset::version); version != message_version) {
    fail("{}: malformed message: version {}, expected {}", what, version, message_version);
  }
  Message message;
  MessageHeader& h = message.header;
  const auto kind = get<std::uint8_t>(bytes, Offset::kind);
  if (kind == 0 || kind > last_message_kind) fail("{}: malformed message: unknown kind {}", what, kind);
  h.kind = static_cast<MessageKind>(kind);
  const auto wire = get<std::uint8_t>(bytes, Offset::wire);
  if (wire > 1) fail("{}: malformed {} message: unknown wire format {}", what, kind_name(h.kind), wire);
  h.wire = static_cast<WireFormat>(wire);
  h.flags = get<std::uint8_t>(bytes, Offset::flags);
  h.from = get<Address>(bytes, Offset::from);
  h.to = get<Address>(bytes, Offset::to);
  h.stage = get<std::uint32_t>(bytes, Offset::stage);
  h.request = get<std::uint64_t>(bytes, Offset::request);
  h.sequence = get<std::uint32_t>(bytes, Offset::sequence);
  h.rows = get<std::uint32_t>(bytes, Offset::rows);
  h.cols = get<std::uint32_t>(bytes, Offset::cols);
  h.payload_bytes = get<std::uint64_t>(bytes, Offset::payload_bytes);
  const std::uint64_t received = bytes.size() - header_bytes;
  if (h.payload_bytes != received) {
    fail("{}: malformed {} message from {}: the header announces {} payload bytes, {} arrived", what,
         kind_name(h.kind), h.from, h.payload_bytes, received);
  }
  if ((h.kind == MessageKind::prefill_activations || h.kind == MessageKind::decode_activation) &&
      std::uint64_t{h.rows} * std::uint64_t{h.cols} > std::numeric_limits<std::uint64_t>::max() / 4) {
    fail("{}: malformed {} message from {}: {} rows x {} cols is more than any message can carry", what,
         kind_name(h.kind), h.from, h.rows, h.cols);
  }
  if (const auto expected = expected_payload_bytes(h); expected && *expected != h.payload_bytes) {
    fail("{}: malformed {} message from {}: {} rows x {} cols need {} payload bytes, got {}", what,
         kind_name(h.kind), h.from, h.rows, h.cols, *expected, h.payload_bytes);
  }
  switch (h.kind) {
    case MessageKind::prompt:
      if (h.rows == 0) fail("{}: malformed prompt message from {}: no token ids", what, h.from);
      break;
    case MessageKind::token:
      if (h.rows != 1) fail("{}: malformed token message from {}: {} ids, expected 1", what, h.from, h.rows);
      break;
    case MessageKind::prefill_activations:
    case MessageKind::decode_activation:
      if (h.rows == 0 || h.cols == 0) {
        fail("{}: malformed {} message from {}: empty activations ({} x {})", what, kind_name(h.kind), h.from, h.rows,
             h.cols);
      }
      if (h.kind == MessageKind::decode_activation && h.rows != 1) {
        fail("{}: malformed decode_activation message from {}: {} rows, expected 1", what, h.from, h.rows);
      }
      break;
    default: break;
  }
  message.payload.assign(bytes.begin() + header_bytes, bytes.end());
  return message;
}

// Builders. `from` and `to` are filled in by the endpoint that sends.

inline Message make_ids_message(MessageKind kind, std::uint64_t request, std::uint32_t stage, std::uint32_t sequence,
                                std::span<const TokenId> ids, std::uint8_t flags = 0) {
  Message message;
  message.header = {kind, WireFormat::f32, flags, 0, 0, request, stage, sequence, static_cast<std::uint32_t>(ids.size()),
                    0, ids.size_bytes()};
  message.payload.resize(ids.size_bytes());
  if (!ids.empty()) std::memcpy(message.payload.data(), ids.data(), ids.size_bytes());
  return message;
}

// What encoding activations in f16 changed: the largest absolute rounding
// error and the RMS error relative to the RMS of the values.
struct WireError {
  double max_abs = 0.0;
  double relative_rms = 0.0;
};

inline Message make_activations_message(MessageKind kind, std::uint64_t request, std::uint32_t stage,
                                        std::uint32_t sequence, const model::Matrix& values, WireFormat wire,
                                        WireError* error = nullptr) {
  Message message;
  const auto count = static_cast<std::size_t>(values.size());
  message.header = {kind,
                    wire,
                    0,
                    0,
                    0,
                    request,
                    stage,
                    sequence,
                    static_cast<std::uint32_t>(values.rows()),
                    static_cast<std::uint32_t>(values.cols()),
                    count * wire_value_bytes(wire)};
  message.payload.resize(count * wire_value_bytes(wire));
  if (wire == WireFormat::f32) {
    std::memcpy(message.payload.data(), values.data(), count * sizeof(float));
    if (error) *error = {};
    return message;
  }
  double squared_error = 0.0, squared = 0.0, max_abs = 0.0;
  for (std::size_t i = 0; i < count; ++i) {
    const float value = values.data()[i];
    const Eigen::half half(value);
    const auto bits = Eigen::numext::bit_cast<std::uint16_t>(half);
    std::memcpy(message.payload.data() + 2 * i, &bits, sizeof bits);
    const double difference = static_cast<double>(static_cast<float>(half)) - value;
    squared_error += difference * difference;
    squared += static_cast<double>(value) * value;
    max_abs = std::max(max_abs, std::abs(difference));
  }
  if (error) *error = {max_abs, squared > 0.0 ? std::sqrt(squared_error / squared) : 0.0};
  return message;
}

inline Message make_text_message(MessageKind kind, std::uint64_t request, std::string_view text) {
  Message message;
  message.header.kind = kind;
  message.header.request = request;
  message.header.payload_bytes = text.size();
  message.payload.resize(text.size());
  if (!text.empty()) std::memcpy(message.payload.data(), text.data(), text.size());
  return message;
}

inline Message make_control_message(MessageKind kind, std::uint64_t request = 0) {
  Message message;
  message.header.kind = kind;
  message.header.request = request;
  return message;
}

// Readers of a decoded message's payload.

inline std::vector<TokenId> token_ids(const Message& message) {
  std::vector<TokenId> ids(message.header.rows);
  if (!ids.empty()) std::memcpy(ids.data(), message.payload.data(), ids.size() * sizeof(TokenId));
  return ids;
}

inline model::Matrix activations(const Message& message) {
  const MessageHeader& h = message.header;
  model::Matrix values(static_cast<Eigen::Index>(h.rows), static_cast<Eigen::Index>(h.cols));
  const auto count = static_cast<std::size_t>(values.size());
  if (h.wire == WireFormat::f32) {
    std::memcpy(values.data(), message.payload.data(), count * sizeof(float));
  } else {
    for (std::size_t i = 0; i < count; ++i) {
      std::uint16_t bits;
      std::memcpy(&bits, message.payload.data() + 2 * i, sizeof bits);
      values.data()[i] = static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(bits));
    }
  }
  return values;
}

// The payload of an error or report message, as the text it carries.
inline std::string payload_text(const Message& message) {
  return {reinterpret_cast<const char*>(message.payload.data()), message.payload.size()};
}

}  // namespace dilemma::runtime
