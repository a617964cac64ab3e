// Every way a safetensors file can be malformed, built byte by byte, and the
// exact message open() gives for it.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "dilemma/io/safetensors.hpp"
#include "io_test_support.hpp"
#include "test_support.hpp"

using dilemma::io::SafetensorsFile;
using dilemma::testing::safetensors_bytes;

namespace {

// The message of the dilemma::Error that opening `bytes` throws, without the
// "<path>: " prefix every message starts with.
std::string open_error(const std::string& bytes) {
  const dilemma::testing::ScratchDir scratch;
  const auto path = scratch / "broken.safetensors";
  dilemma::testing::write_file(path, bytes);
  try {
    SafetensorsFile::open(path);
  } catch (const dilemma::Error& error) {
    const std::string message = error.what();
    const std::string prefix = path.string() + ": ";
    if (message.rfind(prefix, 0) != 0) return "(message does not start with the path) " + message;
    return message.substr(prefix.size());
  }
  return "(opened without error)";
}

std::string one_tensor(const std::string& entry) { return R"({"w":)" + entry + "}"; }

const std::string eight_bytes(8, '\x01');

}  // namespace

TEST_CASE("a file shorter than the length prefix") {
  CHECK(open_error("") == "file is 0 bytes, shorter than the 8-byte header length of a safetensors file");
  CHECK(open_error(std::string("\x02\0\0\0\0", 5)) ==
        "file is 5 bytes, shorter than the 8-byte header length of a safetensors file");
}

TEST_CASE("a header length beyond the file or beyond the format's limit") {
  std::string bytes = safetensors_bytes("{}");
  bytes[0] = 100;
  CHECK(open_error(bytes) == "header length 100 runs past the end of the file (2 bytes after the length)");
  CHECK(open_error(std::string(8, '\0').replace(0, 1, "\x09")) ==
        "header length 9 runs past the end of the file (0 bytes after the length)");
  CHECK(open_error(std::string(8, '\xff') + "{}") ==
        "header length 18446744073709551615 exceeds the safetensors limit of 100000000 bytes");
  std::string limit_plus_one = safetensors_bytes("{}");
  const std::uint64_t too_long = 100'000'001;
  std::memcpy(limit_plus_one.data(), &too_long, sizeof too_long);
  CHECK(open_error(limit_plus_one) == "header length 100000001 exceeds the safetensors limit of 100000000 bytes");
}

TEST_CASE("a header that is not JSON") {
  const auto starts_with = [](const std::string& text, const std::string& prefix) {
    return text.rfind(prefix, 0) == 0;
  };
  const std::string not_json = open_error(safetensors_bytes(R"({"w": {"dtype": "F32",)"));
  CHECK(starts_with(not_json, "header is not valid JSON: [json.exception.parse_error.101] parse error at line 1"));
  CHECK(starts_with(open_error(safetensors_bytes("")), "header is not valid JSON: [json.exception.parse_error.101]"));
  CHECK(starts_with(open_error(safetensors_bytes("{\"w\xff\": 1}")), "header is not valid JSON: "));
  CHECK(open_error(safetensors_bytes(std::string("{}\0garbage", 10))) ==
        "header is not valid JSON: NUL byte at offset 2");
  CHECK(starts_with(open_error(safetensors_bytes(R"({"w": 1e999})")), "header is not valid JSON: "));
}

TEST_CASE("a header that is not an object") {
  CHECK(open_error(safetensors_bytes("[1, 2]")) == "header must be a JSON object, got [1,2]");
  CHECK(open_error(safetensors_bytes("\"w\"")) == "header must be a JSON object, got \"w\"");
  CHECK(open_error(safetensors_bytes(one_tensor("3"))) == "tensor 'w': entry must be a JSON object, got 3");
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": {"rows": 2}, "data_offsets": [0, 8]})"),
                                     eight_bytes)) == "tensor 'w': shape must be an array, got an object");
}

TEST_CASE("a tensor entry with a missing field") {
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"shape": [2], "data_offsets": [0, 8]})"), eight_bytes)) ==
        "tensor 'w': missing field 'dtype'");
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": "F32", "data_offsets": [0, 8]})"), eight_bytes)) ==
        "tensor 'w': missing field 'shape'");
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [2]})"), eight_bytes)) ==
        "tensor 'w': missing field 'data_offsets'");
}

TEST_CASE("a tensor entry with a field of the wrong type") {
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": 5, "shape": [2], "data_offsets": [0, 8]})"),
                                     eight_bytes)) == "tensor 'w': dtype must be a string, got 5");
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": "2", "data_offsets": [0, 8]})"),
                                     eight_bytes)) == "tensor 'w': shape must be an array, got \"2\"");
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]})"),
                                     eight_bytes)) == "tensor 'w': shape[0] must be a non-negative integer, got 2.0");
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [[2]], "data_offsets": [0, 8]})"),
                                     eight_bytes)) == "tensor 'w': shape[0] must be a non-negative integer, got [2]");
  CHECK(open_error(
            safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [2], "data_offsets": [8]})"), eight_bytes)) ==
        "tensor 'w': data_offsets must be an array of two integers, got [8]");
  CHECK(open_error(
            safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [2], "data_offsets": null})"), eight_bytes)) ==
        "tensor 'w': data_offsets must be an array of two integers, got null");
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, "8"]})"),
                                     eight_bytes)) ==
        "tensor 'w': data_offsets[1] must be a non-negative integer, got \"8\"");
}

TEST_CASE("long values are cut short in messages") {
  std::string offsets = "[0";
  for (int i = 1; i < 16; ++i) offsets += ", " + std::to_string(8 * i);
  offsets += "]";
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [2], "data_offsets": )" + offsets + "}"),
                                     eight_bytes)) ==
        "tensor 'w': data_offsets must be an array of two integers, got [0,8,16,24,32,40,48,56,64,72,80,88,96,10...");
}

TEST_CASE("an unknown dtype") {
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": "F8_E4M3", "shape": [8], "data_offsets": [0, 8]})"),
                                     eight_bytes)) ==
        "tensor 'w': unsupported dtype 'F8_E4M3' (supported: F32, F16, BF16, F64, I8, U8, I16, I32, I64, BOOL)");
}

TEST_CASE("negative dimensions and offsets") {
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 8]})"),
                                     eight_bytes)) == "tensor 'w': shape[1] is -1, must be non-negative");
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]})"),
                                     eight_bytes)) == "tensor 'w': data_offsets[0] is -8, must be non-negative");
}

TEST_CASE("a shape whose byte count overflows") {
  CHECK(open_error(safetensors_bytes(
            one_tensor(R"({"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]})"))) ==
        "tensor 'w': shape [4294967296, 4294967296] of F32 has more bytes than a 64-bit count can hold");
  CHECK(open_error(safetensors_bytes(
            one_tensor(R"({"dtype": "U8", "shape": [0, 18446744073709551615], "data_offsets": [0, 0]})"))) ==
        "tensor 'w': shape[1] is 18446744073709551615, which does not fit in a signed 64-bit integer");
}

TEST_CASE("a byte count that does not match the shape") {
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8]})"),
                                     eight_bytes)) ==
        "tensor 'w': data_offsets [0, 8] span 8 bytes, but shape [2, 2] of F32 needs 16");
  CHECK(open_error(
            safetensors_bytes(one_tensor(R"({"dtype": "BF16", "shape": [], "data_offsets": [0, 8]})"), eight_bytes)) ==
        "tensor 'w': data_offsets [0, 8] span 8 bytes, but shape [] of BF16 needs 2");
}

TEST_CASE("data_offsets that begin after they end or end beyond the buffer") {
  CHECK(open_error(safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [1], "data_offsets": [8, 4]})"),
                                     eight_bytes)) == "tensor 'w': data_offsets [8, 4] begin after their end");
  CHECK(open_error(
            safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]})"), eight_bytes)) ==
        "tensor 'w': data_offsets [0, 16] extend beyond the 8-byte data buffer");
  CHECK(
      open_error(safetensors_bytes(
          one_tensor(R"({"dtype": "F32", "shape": [1], "data_offsets": [18446744073709551612, 18446744073709551615]})"),
          eight_bytes)) ==
      "tensor 'w': data_offsets [18446744073709551612, 18446744073709551615] extend beyond the 8-byte data buffer");
}

TEST_CASE("overlapping tensors") {
  const std::string header = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})";
  CHECK(open_error(safetensors_bytes(header, std::string(12, '\0'))) ==
        "tensors 'a' (data_offsets [0, 8]) and 'b' (data_offsets [4, 12]) overlap");
  const std::string same_range = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                     "b": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}})";
  CHECK(open_error(safetensors_bytes(same_range, eight_bytes)) ==
        "tensors 'a' (data_offsets [0, 8]) and 'b' (data_offsets [0, 8]) overlap");
  const std::string empty_inside = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                       "z": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})";
  CHECK(open_error(safetensors_bytes(empty_inside, eight_bytes)) ==
        "tensors 'a' (data_offsets [0, 8]) and 'z' (data_offsets [4, 4]) overlap");
}

TEST_CASE("bytes of the data buffer that no tensor indexes") {
  const std::string gap = R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                              "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})";
  CHECK(open_error(safetensors_bytes(gap, std::string(12, '\0'))) ==
        "bytes [4, 8) of the 12-byte data buffer, between tensors 'a' and 'b', belong to no tensor (safetensors "
        "requires every byte to be indexed)");
  CHECK(open_error(
            safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [1], "data_offsets": [4, 8]})"), eight_bytes)) ==
        "bytes [0, 4) of the 8-byte data buffer, before tensor 'w', belong to no tensor (safetensors requires every "
        "byte to be indexed)");
  CHECK(open_error(
            safetensors_bytes(one_tensor(R"({"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})"), eight_bytes)) ==
        "bytes [4, 8) of the 8-byte data buffer, after tensor 'w', belong to no tensor (safetensors requires every "
        "byte to be indexed)");
  CHECK(open_error(safetensors_bytes("{}", "abc")) ==
        "bytes [0, 3) of the 3-byte data buffer, with no tensors, belong to no tensor (safetensors requires every "
        "byte to be indexed)");
}

TEST_CASE("a __metadata__ that is not a string-to-string map") {
  CHECK(open_error(safetensors_bytes(R"({"__metadata__": ["pt"]})")) ==
        "__metadata__ must be an object of strings, got [\"pt\"]");
  CHECK(open_error(safetensors_bytes(R"({"__metadata__": {"format": "pt", "step": 1000}})")) ==
        "__metadata__['step'] must be a string, got 1000");
  CHECK(open_error(safetensors_bytes(R"({"__metadata__": {"format": null}})")) ==
        "__metadata__['format'] must be a string, got null");
}

TEST_CASE("unusual but valid headers open") {
  // Entries out of offset order, a scalar, an empty tensor, an unknown extra
  // field, and the space padding writers add.
  const std::string header = R"({"b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8], "extra": {"x": 1}},
                                 "a": {"dtype": "I32", "shape": [], "data_offsets": [0, 4]},
                                 "e": {"dtype": "F64", "shape": [3, 0], "data_offsets": [8, 8]},
                                 "__metadata__": {}}        )";
  const dilemma::testing::ScratchDir scratch;
  dilemma::testing::write_file(scratch / "ok.safetensors", safetensors_bytes(header, std::string("\x07\0\0\0abcd", 8)));
  const SafetensorsFile file = SafetensorsFile::open(scratch / "ok.safetensors");
  CHECK(file.tensor_names() == std::vector<std::string>{"a", "b", "e"});
  CHECK(file.metadata().empty());
  CHECK(file.tensor("a").element_count() == 1);
  CHECK(static_cast<int>(file.tensor("a").data[0]) == 7);
  CHECK(std::string(reinterpret_cast<const char*>(file.tensor("b").data.data()), 4) == "abcd");
  CHECK(file.tensor("e").element_count() == 0);
  CHECK(file.tensor("e").data.empty());
}
