#pragma once
// Reading and writing .safetensors files, the Hugging Face checkpoint format:
// an 8-byte little-endian header length N, N bytes of JSON that give each
// tensor's dtype, shape and data_offsets [begin, end) relative to the data
// buffer that follows, and an optional "__metadata__" string map.
//
// A file is validated completely when it is opened, as the reference
// implementation (huggingface/safetensors, safetensors/src/tensor.rs) does,
// so that a TensorView never points outside the mapping: every tensor's byte
// count must match its shape, and the tensors must tile the data buffer
// exactly, without overlaps, holes or trailing bytes.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"
#include "dilemma/io/dtype.hpp"
#include "dilemma/io/mapped_file.hpp"

namespace dilemma::io {

// A tensor inside an open SafetensorsFile; valid as long as that file object.
struct TensorView {
  std::string_view name;
  DType dtype;
  std::span<const std::int64_t> shape;
  std::span<const std::byte> data;  // little-endian, C order, not necessarily aligned

  std::int64_t element_count() const {
    std::int64_t count = 1;
    for (const std::int64_t dim : shape) count *= dim;
    return count;
  }
};

namespace detail {

inline constexpr std::size_t safetensors_length_prefix_size = 8;
// The reference implementation's limit. A larger value is a corrupt length,
// and rejecting it early avoids parsing (or allocating for) garbage.
inline constexpr std::uint64_t safetensors_max_header_size = 100'000'000;
inline constexpr std::string_view safetensors_metadata_key = "__metadata__";

struct TensorEntry {
  DType dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin;  // data_offsets, relative to the data buffer
  std::uint64_t end;
};

// Transparent comparator: look-ups by std::string_view without a copy.
using TensorEntries = std::map<std::string, TensorEntry, std::less<>>;

struct SafetensorsHeader {
  std::size_t data_start;  // file offset of the data buffer
  std::map<std::string, std::string> metadata;
  TensorEntries tensors;
};

inline std::string format_shape(std::span<const std::int64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// A value as written, cut short so that a message stays readable whatever the
// file holds; objects only by kind.
inline std::string describe_json(const nlohmann::json& value) {
  if (value.is_object()) return "an object";
  constexpr std::size_t max_length = 40;
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > max_length) text = text.substr(0, max_length) + "...";
  return text;
}

class HeaderParser {
 public:
  HeaderParser(const std::filesystem::path& path, std::uint64_t buffer_size)
      : file_(path.string()), buffer_size_(buffer_size) {}

  SafetensorsHeader parse(const nlohmann::json& header, std::size_t data_start) const {
    if (!header.is_object()) {
      dilemma::detail::fail("{}: header must be a JSON object, got {}", file_, describe_json(header));
    }
    SafetensorsHeader result{data_start, {}, {}};
    for (const auto& [key, value] : header.items()) {
      if (key == safetensors_metadata_key) {
        result.metadata = parse_metadata(value);
      } else {
        result.tensors.emplace(key, parse_entry(key, value));
      }
    }
    check_buffer_tiling(result.tensors);
    return result;
  }

 private:
  std::map<std::string, std::string> parse_metadata(const nlohmann::json& value) const {
    if (!value.is_object()) {
      dilemma::detail::fail("{}: {} must be an object of strings, got {}", file_, safetensors_metadata_key,
                            describe_json(value));
    }
    std::map<std::string, std::string> metadata;
    for (const auto& [key, item] : value.items()) {
      if (!item.is_string()) {
        dilemma::detail::fail("{}: {}['{}'] must be a string, got {}", file_, safetensors_metadata_key, key,
                              describe_json(item));
      }
      metadata.emplace(key, item.get<std::string>());
    }
    return metadata;
  }

  TensorEntry parse_entry(const std::string& name, const nlohmann::json& entry) const {
    if (!entry.is_object()) {
      dilemma::detail::fail("{}: tensor '{}': entry must be a JSON object, got {}", file_, name, describe_json(entry));
    }
    const DType dtype = parse_entry_dtype(name, field(name, entry, "dtype"));
    std::vector<std::int64_t> shape = parse_entry_shape(name, field(name, entry, "shape"));

    const nlohmann::json& offsets = field(name, entry, "data_offsets");
    if (!offsets.is_array() || offsets.size() != 2) {
      dilemma::detail::fail("{}: tensor '{}': data_offsets must be an array of two integers, got {}", file_, name,
                            describe_json(offsets));
    }
    const std::uint64_t begin = non_negative_integer(name, "data_offsets[0]", offsets[0]);
    const std::uint64_t end = non_negative_integer(name, "data_offsets[1]", offsets[1]);
    if (begin > end) {
      dilemma::detail::fail("{}: tensor '{}': data_offsets [{}, {}] begin after their end", file_, name, begin, end);
    }
    if (end > buffer_size_) {
      dilemma::detail::fail("{}: tensor '{}': data_offsets [{}, {}] extend beyond the {}-byte data buffer", file_, name,
                            begin, end, buffer_size_);
    }
    const std::uint64_t byte_count = checked_byte_count(name, dtype, shape);
    if (end - begin != byte_count) {
      dilemma::detail::fail("{}: tensor '{}': data_offsets [{}, {}] span {} bytes, but shape {} of {} needs {}", file_,
                            name, begin, end, end - begin, format_shape(shape), dtype_name(dtype), byte_count);
    }
    return {dtype, std::move(shape), begin, end};
  }

  const nlohmann::json& field(const std::string& name, const nlohmann::json& entry, std::string_view key) const {
    const auto it = entry.find(key);
    if (it == entry.end()) dilemma::detail::fail("{}: tensor '{}': missing field '{}'", file_, name, key);
    return *it;
  }

  DType parse_entry_dtype(const std::string& name, const nlohmann::json& value) const {
    if (!value.is_string()) {
      dilemma::detail::fail("{}: tensor '{}': dtype must be a string, got {}", file_, name, describe_json(value));
    }
    const auto& text = value.get_ref<const std::string&>();
    const std::optional<DType> dtype = parse_dtype(text);
    if (!dtype) {
      dilemma::detail::fail("{}: tensor '{}': unsupported dtype '{}' (supported: {})", file_, name, text,
                            supported_dtype_names());
    }
    return *dtype;
  }

  std::vector<std::int64_t> parse_entry_shape(const std::string& name, const nlohmann::json& value) const {
    if (!value.is_array()) {
      dilemma::detail::fail("{}: tensor '{}': shape must be an array, got {}", file_, name, describe_json(value));
    }
    std::vector<std::int64_t> shape;
    shape.reserve(value.size());
    for (std::size_t i = 0; i < value.size(); ++i) {
      const std::uint64_t dim = non_negative_integer(name, fmt::format("shape[{}]", i), value[i]);
      if (dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        dilemma::detail::fail("{}: tensor '{}': shape[{}] is {}, which does not fit in a signed 64-bit integer", file_,
                              name, i, dim);
      }
      shape.push_back(static_cast<std::int64_t>(dim));
    }
    return shape;
  }

  std::uint64_t non_negative_integer(const std::string& name, std::string_view what,
                                     const nlohmann::json& value) const {
    if (value.is_number_unsigned()) return value.get<std::uint64_t>();
    if (value.is_number_integer()) {
      dilemma::detail::fail("{}: tensor '{}': {} is {}, must be non-negative", file_, name, what,
                            value.get<std::int64_t>());
    }
    dilemma::detail::fail("{}: tensor '{}': {} must be a non-negative integer, got {}", file_, name, what,
                          describe_json(value));
  }

  std::uint64_t checked_byte_count(const std::string& name, DType dtype, std::span<const std::int64_t> shape) const {
    std::uint64_t count = dtype_size(dtype);
    for (const std::int64_t dim : shape) {
      if (__builtin_mul_overflow(count, static_cast<std::uint64_t>(dim), &count)) {
        dilemma::detail::fail("{}: tensor '{}': shape {} of {} has more bytes than a 64-bit count can hold", file_,
                              name, format_shape(shape), dtype_name(dtype));
      }
    }
    return count;
  }

  // Each entry is already known to lie inside the buffer; sorted by offsets,
  // each must start where the previous one ended and the last must end the buffer.
  void check_buffer_tiling(const TensorEntries& tensors) const {
    using Item = const TensorEntries::value_type*;
    std::vector<Item> by_offset;
    by_offset.reserve(tensors.size());
    for (const auto& item : tensors) by_offset.push_back(&item);
    std::sort(by_offset.begin(), by_offset.end(), [](Item a, Item b) {
      return std::pair(a->second.begin, a->second.end) < std::pair(b->second.begin, b->second.end);
    });
    std::uint64_t covered = 0;
    Item previous = nullptr;
    for (const Item item : by_offset) {
      const TensorEntry& entry = item->second;
      if (entry.begin < covered) {
        dilemma::detail::fail("{}: tensors '{}' (data_offsets [{}, {}]) and '{}' (data_offsets [{}, {}]) overlap",
                              file_, previous->first, previous->second.begin, previous->second.end, item->first,
                              entry.begin, entry.end);
      }
      if (entry.begin > covered) {
        const std::string where = previous == nullptr
                                      ? fmt::format("before tensor '{}'", item->first)
                                      : fmt::format("between tensors '{}' and '{}'", previous->first, item->first);
        fail_unindexed(covered, entry.begin, where);
      }
      covered = entry.end;
      previous = item;
    }
    if (covered != buffer_size_) {
      fail_unindexed(
          covered, buffer_size_,
          previous == nullptr ? std::string("with no tensors") : fmt::format("after tensor '{}'", previous->first));
    }
  }

  [[noreturn]] void fail_unindexed(std::uint64_t begin, std::uint64_t end, const std::string& where) const {
    dilemma::detail::fail(
        "{}: bytes [{}, {}) of the {}-byte data buffer, {}, belong to no tensor (safetensors requires every byte to "
        "be indexed)",
        file_, begin, end, buffer_size_, where);
  }

  std::string file_;
  std::uint64_t buffer_size_;
};

// `subject` starts the error message: "<subject> is not valid JSON: ...".
inline nlohmann::json parse_json(std::string_view text, const std::string& subject) {
  // nlohmann::json takes a NUL byte for the end of the input and would ignore
  // whatever follows it; valid JSON text never contains one.
  if (const std::size_t nul = text.find('\0'); nul != std::string_view::npos) {
    dilemma::detail::fail("{} is not valid JSON: NUL byte at offset {}", subject, nul);
  }
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& error) {
    dilemma::detail::fail("{} is not valid JSON: {}", subject, error.what());
  }
}

// Parses and validates the header of a safetensors file held in `bytes`.
inline SafetensorsHeader parse_safetensors_header(std::span<const std::byte> bytes, const std::filesystem::path& path) {
  const std::string file = path.string();
  if (bytes.size() < safetensors_length_prefix_size) {
    dilemma::detail::fail("{}: file is {} bytes, shorter than the {}-byte header length of a safetensors file", file,
                          bytes.size(), safetensors_length_prefix_size);
  }
  std::uint64_t header_size;
  std::memcpy(&header_size, bytes.data(), sizeof header_size);
  if (header_size > safetensors_max_header_size) {
    dilemma::detail::fail("{}: header length {} exceeds the safetensors limit of {} bytes", file, header_size,
                          safetensors_max_header_size);
  }
  const std::uint64_t available = bytes.size() - safetensors_length_prefix_size;
  if (header_size > available) {
    dilemma::detail::fail("{}: header length {} runs past the end of the file ({} bytes after the length)", file,
                          header_size, available);
  }
  const std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + safetensors_length_prefix_size),
                                     header_size);
  const nlohmann::json header = parse_json(header_text, file + ": header");
  const std::size_t data_start = safetensors_length_prefix_size + header_size;
  return HeaderParser(path, bytes.size() - data_start).parse(header, data_start);
}

}  // namespace detail

// One memory-mapped .safetensors file, fully validated by open().
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path) {
    MappedFile file = MappedFile::open(path);
    detail::SafetensorsHeader header = detail::parse_safetensors_header(file.bytes(), path);
    return SafetensorsFile(std::move(file), std::move(header));
  }

  const std::filesystem::path& path() const { return file_.path(); }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }

  std::vector<std::string> tensor_names() const {
    std::vector<std::string> names;
    names.reserve(header_.tensors.size());
    for (const auto& item : header_.tensors) names.push_back(item.first);
    return names;
  }

  bool contains(std::string_view name) const { return header_.tensors.contains(name); }

  TensorView tensor(std::string_view name) const {
    const auto it = header_.tensors.find(name);
    if (it == header_.tensors.end()) dilemma::detail::fail("{}: no tensor named '{}'", path().string(), name);
    const detail::TensorEntry& entry = it->second;
    return {it->first, entry.dtype, entry.shape,
            file_.bytes().subspan(header_.data_start + entry.begin, entry.end - entry.begin)};
  }

 private:
  SafetensorsFile(MappedFile file, detail::SafetensorsHeader header)
      : file_(std::move(file)), header_(std::move(header)) {}

  MappedFile file_;
  detail::SafetensorsHeader header_;
};

// A Hugging Face model directory's weights: either one model.safetensors or
// the shards that model.safetensors.index.json lists. Every shard is mapped on
// open, but only the pages of tensors actually read are loaded.
class SafetensorsCheckpoint {
 public:
  static constexpr std::string_view single_file_name = "model.safetensors";
  static constexpr std::string_view index_file_name = "model.safetensors.index.json";

  // Prefers model.safetensors when both files exist, as transformers does.
  static SafetensorsCheckpoint open(const std::filesystem::path& model_dir) {
    std::error_code error;
    if (!std::filesystem::is_directory(model_dir, error)) {
      dilemma::detail::fail("{}: model directory does not exist or is not a directory", model_dir.string());
    }
    const std::filesystem::path single_file = model_dir / single_file_name;
    if (std::filesystem::exists(single_file, error)) {
      SafetensorsCheckpoint checkpoint(single_file);
      checkpoint.files_.push_back(SafetensorsFile::open(single_file));
      for (std::string& name : checkpoint.files_.front().tensor_names()) {
        checkpoint.file_of_tensor_.emplace(std::move(name), 0);
      }
      checkpoint.metadata_ = checkpoint.files_.front().metadata();
      return checkpoint;
    }
    const std::filesystem::path index_file = model_dir / index_file_name;
    if (std::filesystem::exists(index_file, error)) return open_sharded(model_dir, index_file);
    dilemma::detail::fail("{}: no checkpoint in this directory: expected {} or {}", model_dir.string(),
                          single_file_name, index_file_name);
  }

  std::vector<std::string> tensor_names() const {
    std::vector<std::string> names;
    names.reserve(file_of_tensor_.size());
    for (const auto& item : file_of_tensor_) names.push_back(item.first);
    return names;
  }

  bool contains(std::string_view name) const { return file_of_tensor_.contains(name); }

  TensorView tensor(std::string_view name) const { return files_[file_index(name)].tensor(name); }

  const std::filesystem::path& file_of(std::string_view name) const { return files_[file_index(name)].path(); }

  // The single file, or the index of a sharded checkpoint.
  const std::filesystem::path& source() const { return source_; }

  // The `__metadata__` of the file, or of all shards together (a key in
  // several shards has the value of the first shard weight_map names).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  explicit SafetensorsCheckpoint(std::filesystem::path source) : source_(std::move(source)) {}

  std::size_t file_index(std::string_view name) const {
    const auto it = file_of_tensor_.find(name);
    if (it == file_of_tensor_.end()) dilemma::detail::fail("{}: no tensor named '{}'", source_.string(), name);
    return it->second;
  }

  // The index must describe the shards exactly: every listed tensor is in the
  // shard listed for it, and every tensor of a shard is listed for that shard
  // (which also rules out a tensor stored in two shards).
  static SafetensorsCheckpoint open_sharded(const std::filesystem::path& model_dir,
                                            const std::filesystem::path& index_file) {
    const std::string index_name = index_file.string();
    const nlohmann::json index = parse_index(index_file);
    const auto weight_map = index.find("weight_map");
    if (weight_map == index.end()) dilemma::detail::fail("{}: missing field 'weight_map'", index_name);
    if (!weight_map->is_object()) {
      dilemma::detail::fail("{}: weight_map must be an object mapping tensor names to shard files, got {}", index_name,
                            detail::describe_json(*weight_map));
    }

    SafetensorsCheckpoint checkpoint(index_file);
    std::vector<std::string> shard_names;
    std::map<std::string, std::size_t> shard_of_name;  // by lexically normal path
    for (const auto& [tensor, shard_json] : weight_map->items()) {
      if (!shard_json.is_string()) {
        dilemma::detail::fail("{}: weight_map['{}'] must be a shard file name, got {}", index_name, tensor,
                              detail::describe_json(shard_json));
      }
      const auto& shard = shard_json.get_ref<const std::string&>();
      check_shard_name(index_name, tensor, shard);
      const auto [it, inserted] =
          shard_of_name.try_emplace(std::filesystem::path(shard).lexically_normal().string(), shard_names.size());
      if (inserted) shard_names.push_back(shard);
      checkpoint.file_of_tensor_.emplace(tensor, it->second);
    }

    std::map<std::string, std::size_t, std::less<>> shard_holding;
    for (std::size_t i = 0; i < shard_names.size(); ++i) {
      const std::filesystem::path shard_path = model_dir / shard_names[i];
      std::error_code error;
      if (!std::filesystem::exists(shard_path, error)) {
        dilemma::detail::fail("{}: shard '{}' listed in weight_map does not exist", index_name, shard_names[i]);
      }
      checkpoint.files_.push_back(SafetensorsFile::open(shard_path));
      for (const auto& [key, value] : checkpoint.files_.back().metadata()) checkpoint.metadata_.try_emplace(key, value);
      for (std::string& tensor : checkpoint.files_.back().tensor_names()) {
        const auto [it, inserted] = shard_holding.try_emplace(tensor, i);
        if (!inserted) {
          dilemma::detail::fail("{}: tensor '{}' is stored in two shards, '{}' and '{}'", index_name, it->first,
                                shard_names[it->second], shard_names[i]);
        }
      }
    }
    for (const auto& [tensor, shard] : checkpoint.file_of_tensor_) {
      const auto held = shard_holding.find(tensor);
      if (held == shard_holding.end() || held->second != shard) {
        dilemma::detail::fail("{}: weight_map puts tensor '{}' in shard '{}', which does not contain it", index_name,
                              tensor, shard_names[shard]);
      }
    }
    for (const auto& [tensor, shard] : shard_holding) {
      if (!checkpoint.file_of_tensor_.contains(tensor)) {
        dilemma::detail::fail("{}: shard '{}' holds tensor '{}', which weight_map does not list", index_name,
                              shard_names[shard], tensor);
      }
    }
    return checkpoint;
  }

  static nlohmann::json parse_index(const std::filesystem::path& index_file) {
    const MappedFile file = MappedFile::open(index_file);
    const std::string_view text(reinterpret_cast<const char*>(file.bytes().data()), file.bytes().size());
    const nlohmann::json index = detail::parse_json(text, index_file.string() + ": the index");
    if (!index.is_object()) {
      dilemma::detail::fail("{}: the index must be a JSON object, got {}", index_file.string(),
                            detail::describe_json(index));
    }
    return index;
  }

  // A lexical check: shards may be symlinks (the Hugging Face cache links
  // snapshot files to blobs elsewhere), but their names must stay inside.
  static void check_shard_name(const std::string& index_name, const std::string& tensor, const std::string& shard) {
    const std::filesystem::path shard_path(shard);
    const bool escapes = std::any_of(shard_path.begin(), shard_path.end(),
                                     [](const std::filesystem::path& part) { return part == ".."; });
    if (shard.empty() || shard_path.has_root_path() || escapes) {
      dilemma::detail::fail("{}: weight_map['{}'] is '{}', which is not a relative path inside the model directory",
                            index_name, tensor, shard);
    }
  }

  std::filesystem::path source_;  // the file or index named in error messages
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::size_t, std::less<>> file_of_tensor_;  // index into files_
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> data;  // little-endian, C order
};

// Writes the tensors in the layout the reference implementation produces: the
// header padded with spaces to a multiple of 8 bytes, and the data ordered by
// decreasing element size, then by name, so that every tensor is aligned to
// its element size within the file.
inline void write_safetensors(const std::filesystem::path& path, std::span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  const std::string file = path.string();
  std::vector<const TensorToWrite*> ordered;
  ordered.reserve(tensors.size());
  for (const TensorToWrite& tensor : tensors) {
    if (tensor.name == detail::safetensors_metadata_key) {
      dilemma::detail::fail("{}: cannot write a tensor named '{}', a name the format reserves", file, tensor.name);
    }
    std::uint64_t byte_count = dtype_size(tensor.dtype);
    for (const std::int64_t dim : tensor.shape) {
      if (dim < 0 || __builtin_mul_overflow(byte_count, static_cast<std::uint64_t>(dim), &byte_count)) {
        dilemma::detail::fail("{}: cannot write tensor '{}': invalid shape {}", file, tensor.name,
                              detail::format_shape(tensor.shape));
      }
    }
    if (byte_count != tensor.data.size()) {
      dilemma::detail::fail("{}: cannot write tensor '{}': shape {} of {} needs {} bytes, but {} were given", file,
                            tensor.name, detail::format_shape(tensor.shape), dtype_name(tensor.dtype), byte_count,
                            tensor.data.size());
    }
    ordered.push_back(&tensor);
  }
  std::sort(ordered.begin(), ordered.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
    const std::size_t size_a = dtype_size(a->dtype);
    const std::size_t size_b = dtype_size(b->dtype);
    return size_a != size_b ? size_a > size_b : a->name < b->name;
  });
  const auto duplicate =
      std::adjacent_find(ordered.begin(), ordered.end(),
                         [](const TensorToWrite* a, const TensorToWrite* b) { return a->name == b->name; });
  if (duplicate != ordered.end()) {
    dilemma::detail::fail("{}: cannot write tensor '{}' twice", file, (*duplicate)->name);
  }

  // Key order as the reference implementation writes it, so that its files
  // are reproduced byte for byte.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[std::string(detail::safetensors_metadata_key)] = metadata;
  std::uint64_t offset = 0;
  for (const TensorToWrite* tensor : ordered) {
    const std::uint64_t end = offset + tensor->data.size();
    header[tensor->name] = {
        {"dtype", std::string(dtype_name(tensor->dtype))}, {"shape", tensor->shape}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::ordered_json::exception& error) {
    dilemma::detail::fail("{}: cannot write header: {}", file, error.what());
  }
  const std::size_t alignment = detail::safetensors_length_prefix_size;
  header_text.resize((header_text.size() + alignment - 1) / alignment * alignment, ' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) dilemma::detail::fail("{}: cannot create file", file);
  const std::uint64_t header_size = header_text.size();
  out.write(reinterpret_cast<const char*>(&header_size), sizeof header_size);
  out.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));
  for (const TensorToWrite* tensor : ordered) {
    out.write(reinterpret_cast<const char*>(tensor->data.data()), static_cast<std::streamsize>(tensor->data.size()));
  }
  out.close();
  if (!out) dilemma::detail::fail("{}: writing failed", file);
}

}  // namespace dilemma::io
