#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "dilemma/io/npy.hpp"
#include "test_support.hpp"

using dilemma::io::read_npy;
using dilemma::io::write_npy;
using dilemma::testing::ScratchDir;

namespace {

nlohmann::json reference_json(const std::string& model) {
  return nlohmann::json::parse(dilemma::testing::read_file(dilemma::testing::model_dir(model) / "reference.json"));
}

// A .npy file of the given version with `header` verbatim and `data` after it.
std::string npy_bytes(int major, const std::string& header, const std::string& data = {}) {
  std::string bytes = "\x93NUMPY";
  bytes.push_back(static_cast<char>(major));
  bytes.push_back('\0');
  const auto length = static_cast<std::uint32_t>(header.size());
  bytes.append(reinterpret_cast<const char*>(&length), major == 1 ? 2 : 4);
  return bytes + header + data;
}

// The message of the dilemma::Error that read_npy<T> throws for `bytes`,
// without the "<path>: " prefix.
template <typename T>
std::string read_error(const std::string& bytes) {
  const ScratchDir scratch;
  const auto path = scratch / "broken.npy";
  dilemma::testing::write_file(path, bytes);
  try {
    read_npy<T>(path);
  } catch (const dilemma::Error& error) {
    const std::string message = error.what();
    const std::string prefix = path.string() + ": ";
    if (message.rfind(prefix, 0) != 0) return "(message does not start with the path) " + message;
    return message.substr(prefix.size());
  }
  return "(read without error)";
}

const std::string float_data(8, '\0');

}  // namespace

TEST_CASE("read_npy reads tiny-opt's reference logits and ids") {
  const auto reference_dir = dilemma::testing::model_dir("tiny-opt") / "reference";
  const nlohmann::json prompt = reference_json("tiny-opt")["prompts"][2];

  const auto logits = read_npy<float>(reference_dir / "prompt2_logits.npy");
  CHECK(logits.shape == std::vector<std::int64_t>{17, 8264});
  REQUIRE(logits.data.size() == 17u * 8264u);
  // Values decoded with Python's struct module.
  CHECK(logits.data[0] == 0.6828091144561768f);
  CHECK(logits.data[2] == 4.428943157196045f);
  CHECK(logits.data[16 * 8264 + 100] == -0.36514848470687866f);
  CHECK(logits.data.back() == -12.261824607849121f);
  const auto last_row = logits.data.begin() + 16 * 8264;
  CHECK(std::max_element(last_row, logits.data.end()) - last_row == prompt["last_token_argmax"].get<std::int64_t>());

  const auto ids = read_npy<std::int32_t>(reference_dir / "prompt2_ids.npy");
  CHECK(ids.shape == std::vector<std::int64_t>{17});
  CHECK(ids.data == prompt["ids"].get<std::vector<std::int32_t>>());
}

TEST_CASE("every reference file of the bundled models has the shape reference.json gives") {
  for (const std::string model : {"tiny-opt", "tiny-opt-preln", "tiny-opt-preln-bf16"}) {
    const nlohmann::json reference = reference_json(model);
    for (const nlohmann::json& prompt : reference["prompts"]) {
      CAPTURE(model);
      CAPTURE(prompt["index"].get<int>());
      const auto dir = dilemma::testing::model_dir(model);
      const auto ids = read_npy<std::int32_t>(dir / prompt["ids_file"].get<std::string>());
      CHECK(ids.data == prompt["ids"].get<std::vector<std::int32_t>>());
      const auto logits = read_npy<float>(dir / prompt["logits_file"].get<std::string>());
      CHECK(logits.shape == prompt["logits_shape"].get<std::vector<std::int64_t>>());
    }
  }
}

TEST_CASE("write_npy writes what numpy writes") {
  const auto original = dilemma::testing::model_dir("tiny-opt") / "reference" / "prompt2_logits.npy";
  const auto logits = read_npy<float>(original);
  const ScratchDir scratch;
  write_npy<float>(scratch / "copy.npy", logits.shape, logits.data);
  CHECK(dilemma::testing::read_file(scratch / "copy.npy") == dilemma::testing::read_file(original));

  const auto ids_file = dilemma::testing::model_dir("tiny-opt") / "reference" / "prompt4_ids.npy";
  const auto ids = read_npy<std::int32_t>(ids_file);
  write_npy<std::int32_t>(scratch / "ids.npy", ids.shape, ids.data);
  CHECK(dilemma::testing::read_file(scratch / "ids.npy") == dilemma::testing::read_file(ids_file));
}

TEST_CASE("write_npy and read_npy round-trip any rank") {
  const ScratchDir scratch;
  const std::vector<std::vector<std::int64_t>> shapes = {{}, {5}, {2, 3}, {2, 1, 3, 1}, {0, 4}};
  for (const auto& shape : shapes) {
    std::int64_t count = 1;
    for (const std::int64_t dim : shape) count *= dim;
    std::vector<float> floats(static_cast<std::size_t>(count));
    std::vector<std::int32_t> ints(floats.size());
    for (std::size_t i = 0; i < floats.size(); ++i) {
      floats[i] = static_cast<float>(i) * -0.375f + 1e-3f;
      ints[i] = static_cast<std::int32_t>(i * 1000003) - 7;
    }
    write_npy<float>(scratch / "f.npy", shape, floats);
    write_npy<std::int32_t>(scratch / "i.npy", shape, ints);
    const auto read_floats = read_npy<float>(scratch / "f.npy");
    const auto read_ints = read_npy<std::int32_t>(scratch / "i.npy");
    CHECK(read_floats.shape == shape);
    CHECK(read_floats.data == floats);
    CHECK(read_ints.shape == shape);
    CHECK(read_ints.data == ints);
    CHECK(dilemma::testing::read_file(scratch / "f.npy")
              .substr(10)
              .starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': " +
                           dilemma::io::detail::format_npy_shape(shape) + ", }"));
  }
  const std::string header = dilemma::testing::read_file(scratch / "f.npy");
  CHECK(header.substr(0, 10) == std::string("\x93NUMPY\x01\x00\x76\x00", 10));
  CHECK(header.substr(10, 118) ==
        "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }" + std::string(58, ' ') + "\n");
}

TEST_CASE("read_npy accepts format versions 2 and 3 and other spellings of the header") {
  const std::string data("\x01\0\0\0\xfe\xff\xff\xff", 8);
  const ScratchDir scratch;
  for (const int major : {2, 3}) {
    dilemma::testing::write_file(
        scratch / "v.npy", npy_bytes(major, "{\"shape\":(2,),\"fortran_order\":False,\"descr\":\"<i4\"}\n", data));
    const auto array = read_npy<std::int32_t>(scratch / "v.npy");
    CHECK(array.shape == std::vector<std::int64_t>{2});
    CHECK(array.data == std::vector<std::int32_t>{1, -2});
  }
  dilemma::testing::write_file(scratch / "w.npy",
                               npy_bytes(1, "{'descr':'<i4','fortran_order':False,'shape':( 1 , 2 )}", data));
  CHECK(read_npy<std::int32_t>(scratch / "w.npy").shape == std::vector<std::int64_t>{1, 2});
}

TEST_CASE("read_npy rejects other dtypes, naming the file and the dtype") {
  const auto logits = dilemma::testing::model_dir("tiny-opt") / "reference" / "prompt2_logits.npy";
  CHECK_THROWS_WITH_AS(read_npy<std::int32_t>(logits),
                       (logits.string() + ": .npy dtype '<f4' cannot be read as int32 (expected '<i4')").c_str(),
                       dilemma::Error);
  CHECK(read_error<float>(npy_bytes(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", float_data)) ==
        ".npy dtype '<f8' cannot be read as float32 (expected '<f4')");
  CHECK(read_error<float>(npy_bytes(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", float_data)) ==
        ".npy dtype '>f4' cannot be read as float32 (expected '<f4')");
  CHECK(read_error<float>(npy_bytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", float_data)) ==
        "Fortran-ordered .npy arrays are not supported");
}

TEST_CASE("read_npy rejects broken files") {
  CHECK(read_error<float>("") == "not a .npy file (it does not start with \"\\x93NUMPY\")");
  CHECK(read_error<float>("PK\x03\x04 not numpy") == "not a .npy file (it does not start with \"\\x93NUMPY\")");
  CHECK(read_error<float>(npy_bytes(4, "{}")) == "unsupported .npy format version 4.0");
  CHECK(read_error<float>(std::string("\x93NUMPY\x01\x00\x10", 9)) == ".npy file truncated in its header length");
  CHECK(read_error<float>(std::string("\x93NUMPY\x01\x00\x10\x00{}", 12)) ==
        ".npy header length 16 runs past the end of the 12-byte file");
  CHECK(read_error<float>(npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", float_data)) ==
        ".npy shape (3,) of '<f4' needs 12 bytes of data, but the file holds 8");
  CHECK(read_error<float>(npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", float_data)) ==
        ".npy shape () of '<f4' needs 4 bytes of data, but the file holds 8");
  CHECK(read_error<float>(npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
                                    float_data)) == ".npy shape (4294967296, 4294967296) is too large");
}

TEST_CASE("read_npy rejects malformed headers") {
  const auto error = [](const std::string& header) { return read_error<float>(npy_bytes(1, header, float_data)); };
  CHECK(error("{'descr': '<f4', 'shape': (2,)}") ==
        "malformed .npy header \"{'descr': '<f4', 'shape': (2,)}\": it must have the keys 'descr', 'fortran_order' and "
        "'shape'");
  CHECK(error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}") ==
        "malformed .npy header \"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}\": unexpected key "
        "'extra'");
  CHECK(error("{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}") ==
        "malformed .npy header \"{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}\": expected True or False at "
        "offset 34");
  CHECK(error("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}") ==
        "malformed .npy header \"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}\": expected a non-negative "
        "dimension at offset 51");
  CHECK(error("{'descr': '<f4', 'fortran_order': False, 'shape': [2]}") ==
        "malformed .npy header \"{'descr': '<f4', 'fortran_order': False, 'shape': [2]}\": expected '(' at offset 50");
  CHECK(
      error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x") ==
      "malformed .npy header \"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x\": unexpected text after the "
      "dictionary");
  CHECK(error("{'descr: '<f4'}") == "malformed .npy header \"{'descr: '<f4'}\": expected ':' at offset 10");
  CHECK(error("{'descr': '<f4") == "malformed .npy header \"{'descr': '<f4\": unterminated string");
  CHECK(error("{'descr': '<\\f4'}") ==
        "malformed .npy header \"{'descr': '<\\f4'}\": escape sequences in strings are not supported");
  CHECK(error("") == "malformed .npy header \"\": expected '{' at offset 0");
}

TEST_CASE("write_npy rejects a shape that does not match the data") {
  const ScratchDir scratch;
  const auto path = scratch / "bad.npy";
  const std::vector<float> five(5);
  const std::vector<std::int64_t> two_by_three = {2, 3};
  CHECK_THROWS_WITH_AS(write_npy<float>(path, two_by_three, five),
                       (path.string() + ": cannot write .npy: shape (2, 3) holds 6 elements, but 5 were given").c_str(),
                       dilemma::Error);
  const std::vector<std::int64_t> too_many_dimensions(30000, 1);
  const std::vector<float> one(1);
  CHECK_THROWS_WITH_AS(write_npy<float>(path, too_many_dimensions, one),
                       (path.string() + ": cannot write .npy: 30000 dimensions do not fit in a .npy header").c_str(),
                       dilemma::Error);
  const std::vector<std::int64_t> negative = {-5};
  CHECK_THROWS_WITH_AS(write_npy<float>(path, negative, five),
                       (path.string() + ": cannot write .npy: invalid shape (-5,)").c_str(), dilemma::Error);
}
