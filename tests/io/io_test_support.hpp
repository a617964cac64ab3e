#pragma once
// Hand-made safetensors bytes for the dilemma::io tests.

#include <cstdint>
#include <cstring>
#include <string>

namespace dilemma::testing {

// A safetensors file: the little-endian header length, `header` verbatim
// (no padding), then `data`.
inline std::string safetensors_bytes(const std::string& header, const std::string& data = {}) {
  std::string bytes(sizeof(std::uint64_t), '\0');
  const std::uint64_t header_size = header.size();
  std::memcpy(bytes.data(), &header_size, sizeof header_size);
  return bytes + header + data;
}

}  // namespace dilemma::testing
