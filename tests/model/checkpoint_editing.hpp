#pragma once
// For tests that break checkpoints on purpose: a safetensors file's tensors
// as editable values, written back after the edit, and what opening the
// directory then says.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "dilemma/error.hpp"
#include "dilemma/io/safetensors.hpp"
#include "dilemma/model/checkpoint.hpp"

namespace dilemma::testing {

struct EditableTensor {
  std::string name;
  io::DType dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> data;
};

inline std::vector<EditableTensor> read_tensors(const io::SafetensorsFile& file) {
  std::vector<EditableTensor> tensors;
  for (const auto& name : file.tensor_names()) {
    const auto view = file.tensor(name);
    tensors.push_back({name, view.dtype, {view.shape.begin(), view.shape.end()}, {view.data.begin(), view.data.end()}});
  }
  return tensors;
}

inline void write_tensors(const std::filesystem::path& path, const std::vector<EditableTensor>& tensors,
                          const std::map<std::string, std::string>& metadata) {
  std::vector<io::TensorToWrite> out;
  for (const auto& t : tensors) out.push_back({t.name, t.dtype, t.shape, t.data});
  io::write_safetensors(path, out, metadata);
}

// The message of the dilemma::Error that opening checkpoint `dir` throws, or
// "no error".
inline std::string open_error(const std::filesystem::path& dir) {
  try {
    model::OptCheckpoint::open(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace dilemma::testing
