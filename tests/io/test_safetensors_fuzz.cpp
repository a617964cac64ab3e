// Seeded random corruptions of a valid file: open() must either succeed, and
// then every view must lie inside the file, or throw dilemma::Error. Run under
// AddressSanitizer this also shows that validation never reads out of bounds.

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "dilemma/io/safetensors.hpp"
#include "test_support.hpp"

using dilemma::io::DType;
using dilemma::io::SafetensorsFile;

namespace {

std::string valid_file(const std::filesystem::path& path) {
  std::vector<std::byte> bytes(64);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i * 29 + 3);
  const std::span<const std::byte> pool(bytes);
  const dilemma::io::TensorToWrite tensors[] = {
      {"a.f16", DType::f16, {3, 2}, pool.subspan(0, 12)},
      {"b.bf16", DType::bf16, {4}, pool.subspan(12, 8)},
      {"c.f32", DType::f32, {2, 2}, pool.subspan(20, 16)},
      {"d.i64", DType::i64, {1}, pool.subspan(36, 8)},
      {"e.bool", DType::boolean, {5}, pool.subspan(44, 5)},
      {"f.scalar", DType::f64, {}, pool.subspan(49, 8)},
      {"g.empty", DType::u8, {0}, {}},
  };
  dilemma::io::write_safetensors(path, tensors, {{"format", "pt"}});
  return dilemma::testing::read_file(path);
}

// Reads every byte of every tensor, so that a view reaching past the mapping
// is caught (by ASan, or by a crash past the last page).
std::uint64_t touch_all_tensors(const SafetensorsFile& file) {
  std::uint64_t checksum = 0;
  for (const std::string& name : file.tensor_names()) {
    const dilemma::io::TensorView tensor = file.tensor(name);
    for (const std::byte b : tensor.data) checksum += static_cast<std::uint8_t>(b);
    if (dilemma::io::is_floating(tensor.dtype)) {
      std::vector<float> values(static_cast<std::size_t>(tensor.element_count()));
      dilemma::io::convert_to_f32(tensor.dtype, tensor.data, values);
    }
  }
  return checksum;
}

// The message without the numbers and quoted names, to count kinds of errors.
std::string error_kind(const std::string& message) {
  std::string kind;
  bool quoted = false;
  for (const char c : message) {
    if (c == '\'') quoted = !quoted;
    if (!quoted && (c < '0' || c > '9')) kind.push_back(c);
  }
  return kind.substr(0, kind.find("[json.exception"));
}

}  // namespace

TEST_CASE("randomly corrupted safetensors files open or throw dilemma::Error") {
  const dilemma::testing::ScratchDir scratch;
  const std::string original = valid_file(scratch / "valid.safetensors");
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, original.data(), sizeof header_size);
  const std::size_t header_end = 8 + header_size;
  const auto path = scratch / "mutated.safetensors";

  std::mt19937_64 random(20240611);
  const auto below = [&](std::size_t bound) {
    return std::uniform_int_distribution<std::size_t>(0, bound - 1)(random);
  };
  int opened = 0;
  int rejected = 0;
  std::set<std::string> kinds;
  for (int iteration = 0; iteration < 3000; ++iteration) {
    std::string bytes = original;
    switch (iteration % 5) {
      case 0:  // flip bits in the length prefix or the header
        for (std::size_t n = 1 + below(4); n > 0; --n) bytes[below(header_end)] ^= static_cast<char>(1 << below(8));
        break;
      case 1:  // overwrite a header byte with any byte
        bytes[8 + below(header_size)] = static_cast<char>(below(256));
        break;
      case 2: {  // change a digit, which moves offsets and resizes shapes
        std::size_t position = 8 + below(header_size);
        while (position < header_end && (bytes[position] < '0' || bytes[position] > '9')) ++position;
        if (position < header_end) bytes[position] = static_cast<char>('0' + below(10));
        break;
      }
      case 3:  // truncate
        bytes.resize(below(bytes.size()));
        break;
      case 4: {  // a new length prefix: near the true one, or anything
        const std::uint64_t length = below(2) == 0 ? header_size + below(17) - 8 : random();
        std::memcpy(bytes.data(), &length, sizeof length);
        break;
      }
    }
    // A new file rather than a truncated one: ext4 flushes a file rewritten
    // after truncation to disk, which would make this test wait on I/O.
    std::filesystem::remove(path);
    dilemma::testing::write_file(path, bytes);
    try {
      const SafetensorsFile file = SafetensorsFile::open(path);
      touch_all_tensors(file);
      ++opened;
    } catch (const dilemma::Error& error) {
      ++rejected;
      kinds.insert(error_kind(error.what()));
    } catch (const std::exception& error) {
      FAIL("iteration ", iteration, " threw something other than dilemma::Error: ", error.what());
    }
  }
  CHECK(opened > 0);
  CHECK(rejected > 0);
  CHECK(opened + rejected == 3000);
  MESSAGE(opened, " opened, ", rejected, " rejected, ", kinds.size(), " kinds of error");
  CHECK(kinds.size() >= 10);
}
