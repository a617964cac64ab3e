#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "dilemma/runtime/message.hpp"

using namespace dilemma;
using namespace dilemma::runtime;

namespace {

std::string decode_error(const std::vector<std::byte>& bytes) {
  try {
    decode(bytes, "node \"beta\"");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

template <typename T>
void overwrite(std::vector<std::byte>& bytes, std::size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof value);
}

model::Matrix sample_activations(Eigen::Index rows, Eigen::Index cols) {
  model::Matrix values(rows, cols);
  for (Eigen::Index i = 0; i < values.size(); ++i) values.data()[i] = 0.37f * static_cast<float>(i) - 5.1f;
  return values;
}

}  // namespace

TEST_CASE("messages round-trip through their encoding, header fields and payloads intact") {
  const model::Matrix values = sample_activations(3, 5);
  Message message = make_activations_message(MessageKind::prefill_activations, 42, 4, 0, values, WireFormat::f32);
  message.header.from = 1;
  message.header.to = 2;
  const auto bytes = encode(message);
  CHECK(bytes.size() == header_bytes + 15 * 4);
  const Message back = decode(bytes, "test");
  CHECK(back.header.kind == MessageKind::prefill_activations);
  CHECK(back.header.from == 1);
  CHECK(back.header.to == 2);
  CHECK(back.header.request == 42);
  CHECK(back.header.stage == 4);
  CHECK(back.header.rows == 3);
  CHECK(back.header.cols == 5);
  CHECK(activations(back) == values);  // f32 on the wire is exact

  const TokenId ids[] = {2, 100, 8263};
  Message prompt = make_ids_message(MessageKind::prompt, 7, 0, 0, ids);
  const Message prompt_back = decode(encode(prompt), "test");
  CHECK(token_ids(prompt_back) == std::vector<TokenId>{2, 100, 8263});

  const TokenId one[] = {5};
  const Message token = decode(encode(make_ids_message(MessageKind::token, 7, 9, 3, one, flag_last_token)), "test");
  CHECK(token.header.sequence == 3);
  CHECK(token.header.flags == flag_last_token);

  const Message error = decode(encode(make_text_message(MessageKind::error, 7, "node \"x\": broken")), "test");
  CHECK(payload_text(error) == "node \"x\": broken");
}

TEST_CASE("f16 on the wire halves the payload and reports its rounding error") {
  const model::Matrix values = sample_activations(2, 64);
  WireError error;
  const Message message =
      make_activations_message(MessageKind::prefill_activations, 1, 2, 0, values, WireFormat::f16, &error);
  CHECK(message.payload.size() == 2 * 64 * 2);
  const model::Matrix back = activations(decode(encode(message), "test"));
  const double max_abs = (back - values).cwiseAbs().maxCoeff();
  CHECK(max_abs > 0.0);
  CHECK(error.max_abs == doctest::Approx(max_abs));
  // f16 keeps 11 significant bits: a relative error of at most 2^-11 per value.
  CHECK(error.relative_rms > 0.0);
  CHECK(error.relative_rms < std::pow(2.0, -11));
  CHECK(max_abs <= values.cwiseAbs().maxCoeff() * std::pow(2.0, -11));
}

TEST_CASE("malformed messages are errors naming the receiver and what is wrong") {
  const model::Matrix values = sample_activations(1, 4);
  Message message = make_activations_message(MessageKind::decode_activation, 9, 3, 2, values, WireFormat::f32);
  message.header.from = 1;
  const auto good = encode(message);

  CHECK(decode_error(std::vector<std::byte>(good.begin(), good.begin() + 10)) ==
        "node \"beta\": malformed message: 10 bytes, shorter than the 56-byte header");
  auto bytes = good;
  bytes[0] = std::byte{'X'};
  CHECK(decode_error(bytes) == "node \"beta\": malformed message: bad magic (not a dilemma message)");
  bytes = good;
  overwrite<std::uint16_t>(bytes, 4, 7);
  CHECK(decode_error(bytes) == "node \"beta\": malformed message: version 7, expected 1");
  bytes = good;
  overwrite<std::uint8_t>(bytes, 6, 0);
  CHECK(decode_error(bytes) == "node \"beta\": malformed message: unknown kind 0");
  overwrite<std::uint8_t>(bytes, 6, 200);
  CHECK(decode_error(bytes) == "node \"beta\": malformed message: unknown kind 200");
  bytes = good;
  overwrite<std::uint8_t>(bytes, 7, 3);
  CHECK(decode_error(bytes) == "node \"beta\": malformed decode_activation message: unknown wire format 3");
  bytes = good;
  bytes.pop_back();  // truncated payload
  CHECK(decode_error(bytes) ==
        "node \"beta\": malformed decode_activation message from 1: the header announces 16 payload bytes, 15 "
        "arrived");
  bytes = good;
  overwrite<std::uint32_t>(bytes, 40, 5);  // cols 5: 20 bytes expected
  CHECK(decode_error(bytes) ==
        "node \"beta\": malformed decode_activation message from 1: 1 rows x 5 cols need 20 payload bytes, got 16");
  bytes = good;
  overwrite<std::uint32_t>(bytes, 36, 0xFFFFFFFFu);  // absurd shapes are checked without allocating
  overwrite<std::uint32_t>(bytes, 40, 0xFFFFFFFFu);
  CHECK(decode_error(bytes) ==
        "node \"beta\": malformed decode_activation message from 1: 4294967295 rows x 4294967295 cols is more "
        "than any message can carry");

  // Shapes that contradict the kind.
  const model::Matrix two_rows = sample_activations(2, 2);
  Message decode_two = make_activations_message(MessageKind::decode_activation, 9, 3, 2, two_rows, WireFormat::f32);
  decode_two.header.from = 1;
  CHECK(decode_error(encode(decode_two)) ==
        "node \"beta\": malformed decode_activation message from 1: 2 rows, expected 1");
  const TokenId two[] = {3, 4};
  Message token = make_ids_message(MessageKind::token, 9, 9, 1, two);
  token.header.from = 2;
  CHECK(decode_error(encode(token)) == "node \"beta\": malformed token message from 2: 2 ids, expected 1");
  Message empty_prompt = make_ids_message(MessageKind::prompt, 9, 0, 0, {});
  empty_prompt.header.from = 3;
  CHECK(decode_error(encode(empty_prompt)) == "node \"beta\": malformed prompt message from 3: no token ids");
  Message shutdown = make_control_message(MessageKind::shutdown);
  shutdown.payload.resize(3);
  CHECK(decode_error(encode(shutdown)) ==
        "node \"beta\": malformed shutdown message from 0: 0 rows x 0 cols need 0 payload bytes, got 3");
}

TEST_CASE("wire formats parse by name") {
  CHECK(parse_wire_format("f16", "--wire") == WireFormat::f16);
  CHECK_THROWS_WITH_AS(parse_wire_format("int8", "--wire"),
                       "--wire: unknown wire format \"int8\" (expected f32 or f16)", Error);
}
