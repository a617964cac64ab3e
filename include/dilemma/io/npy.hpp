#pragma once
// NumPy .npy arrays (format versions 1.0, 2.0 and 3.0 are read, 1.0 is
// written): the form in which reference logits and token ids are exchanged
// with Python. Only what those need is supported: little-endian, C-ordered
// float32 ('<f4') and int32 ('<i4').
//
// File layout: the magic "\x93NUMPY", a major and minor version byte, the
// header length (u16 in version 1, u32 later), then a Python dict literal such
// as {'descr': '<f4', 'fortran_order': False, 'shape': (17, 8264), } padded
// with spaces and a newline, then the raw elements.

#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "dilemma/error.hpp"
#include "dilemma/io/dtype.hpp"  // for its little-endian host check
#include "dilemma/io/mapped_file.hpp"

namespace dilemma::io {

template <typename T>
concept NpyElement = std::same_as<T, float> || std::same_as<T, std::int32_t>;

template <typename T>
struct NpyArray {
  std::vector<std::int64_t> shape;
  std::vector<T> data;  // C order
};

namespace detail {

inline constexpr std::string_view npy_magic = "\x93NUMPY";
// numpy pads the header so that the data starts on this boundary.
inline constexpr std::size_t npy_alignment = 64;

template <NpyElement T>
constexpr std::string_view npy_descr() {
  if constexpr (std::same_as<T, float>) {
    return "<f4";
  } else {
    return "<i4";
  }
}

template <NpyElement T>
constexpr std::string_view npy_type_name() {
  if constexpr (std::same_as<T, float>) {
    return "float32";
  } else {
    return "int32";
  }
}

// As Python prints a tuple: "()", "(5,)", "(17, 8264)".
inline std::string format_npy_shape(std::span<const std::int64_t> shape) {
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<std::int64_t> shape;
};

// Parses the subset of Python literal syntax numpy writes in headers; any
// other key or value form is rejected, as np.load does.
class NpyHeaderParser {
 public:
  NpyHeaderParser(std::string_view text, const std::filesystem::path& path) : text_(text), file_(path.string()) {}

  NpyHeader parse() {
    NpyHeader header;
    bool has_descr = false;
    bool has_fortran_order = false;
    bool has_shape = false;
    expect('{');
    while (!consume('}')) {
      const std::string key = parse_string();
      expect(':');
      if (key == "descr") {
        header.descr = parse_string();
        has_descr = true;
      } else if (key == "fortran_order") {
        header.fortran_order = parse_bool();
        has_fortran_order = true;
      } else if (key == "shape") {
        header.shape = parse_shape();
        has_shape = true;
      } else {
        fail(fmt::format("unexpected key '{}'", key));
      }
      if (!consume(',')) {
        expect('}');
        break;
      }
    }
    skip_space();
    if (position_ != text_.size()) fail("unexpected text after the dictionary");
    if (!has_descr || !has_fortran_order || !has_shape) {
      fail("it must have the keys 'descr', 'fortran_order' and 'shape'");
    }
    return header;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    constexpr std::size_t max_shown = 200;
    std::string_view shown = text_;
    while (!shown.empty() && is_space(shown.back())) shown.remove_suffix(1);
    const bool cut = shown.size() > max_shown;
    dilemma::detail::fail("{}: malformed .npy header \"{}{}\": {}", file_, shown.substr(0, max_shown), cut ? "..." : "",
                          what);
  }

  static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

  void skip_space() {
    while (position_ < text_.size() && is_space(text_[position_])) ++position_;
  }

  bool consume(char c) {
    skip_space();
    if (position_ < text_.size() && text_[position_] == c) {
      ++position_;
      return true;
    }
    return false;
  }

  void expect(char c) {
    if (!consume(c)) fail(fmt::format("expected '{}' at offset {}", c, position_));
  }

  // numpy's strings (keys, dtype descriptors) need no escapes.
  std::string parse_string() {
    skip_space();
    if (position_ >= text_.size() || (text_[position_] != '\'' && text_[position_] != '"')) {
      fail(fmt::format("expected a string at offset {}", position_));
    }
    const char quote = text_[position_++];
    const std::size_t close = text_.find(quote, position_);
    if (close == std::string_view::npos) fail("unterminated string");
    const std::string_view value = text_.substr(position_, close - position_);
    if (value.find('\\') != std::string_view::npos) fail("escape sequences in strings are not supported");
    position_ = close + 1;
    return std::string(value);
  }

  bool parse_bool() {
    skip_space();
    const std::string_view rest = text_.substr(position_);
    if (rest.starts_with("True")) {
      position_ += 4;
      return true;
    }
    if (rest.starts_with("False")) {
      position_ += 5;
      return false;
    }
    fail(fmt::format("expected True or False at offset {}", position_));
  }

  std::vector<std::int64_t> parse_shape() {
    std::vector<std::int64_t> shape;
    expect('(');
    while (!consume(')')) {
      skip_space();
      std::int64_t dim = 0;
      const char* first = text_.data() + position_;
      const auto [last, error] = std::from_chars(first, text_.data() + text_.size(), dim);
      if (error != std::errc() || dim < 0) {
        fail(fmt::format("expected a non-negative dimension at offset {}", position_));
      }
      position_ += static_cast<std::size_t>(last - first);
      shape.push_back(dim);
      if (!consume(',')) {
        expect(')');
        break;
      }
    }
    return shape;
  }

  std::string_view text_;
  std::string file_;
  std::size_t position_ = 0;
};

}  // namespace detail

template <NpyElement T>
NpyArray<T> read_npy(const std::filesystem::path& path) {
  const std::string file = path.string();
  const MappedFile mapped = MappedFile::open(path);
  const std::span<const std::byte> bytes = mapped.bytes();
  constexpr std::size_t version_offset = detail::npy_magic.size();
  constexpr std::size_t length_offset = version_offset + 2;
  if (bytes.size() < length_offset ||
      std::memcmp(bytes.data(), detail::npy_magic.data(), detail::npy_magic.size()) != 0) {
    dilemma::detail::fail("{}: not a .npy file (it does not start with \"\\x93NUMPY\")", file);
  }
  const auto major = static_cast<unsigned>(bytes[version_offset]);
  const auto minor = static_cast<unsigned>(bytes[version_offset + 1]);
  if (major < 1 || major > 3) dilemma::detail::fail("{}: unsupported .npy format version {}.{}", file, major, minor);
  // Version 1 stores the header length as u16, later versions as u32.
  const std::size_t length_size = major == 1 ? 2 : 4;
  const std::size_t header_offset = length_offset + length_size;
  if (bytes.size() < header_offset) dilemma::detail::fail("{}: .npy file truncated in its header length", file);
  std::uint32_t header_size = 0;
  std::memcpy(&header_size, bytes.data() + length_offset, length_size);
  if (header_size > bytes.size() - header_offset) {
    dilemma::detail::fail("{}: .npy header length {} runs past the end of the {}-byte file", file, header_size,
                          bytes.size());
  }
  const std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + header_offset), header_size);
  const detail::NpyHeader header = detail::NpyHeaderParser(header_text, path).parse();

  if (header.descr != detail::npy_descr<T>()) {
    dilemma::detail::fail("{}: .npy dtype '{}' cannot be read as {} (expected '{}')", file, header.descr,
                          detail::npy_type_name<T>(), detail::npy_descr<T>());
  }
  if (header.fortran_order) dilemma::detail::fail("{}: Fortran-ordered .npy arrays are not supported", file);
  std::uint64_t byte_count = sizeof(T);
  for (const std::int64_t dim : header.shape) {
    if (__builtin_mul_overflow(byte_count, static_cast<std::uint64_t>(dim), &byte_count)) {
      dilemma::detail::fail("{}: .npy shape {} is too large", file, detail::format_npy_shape(header.shape));
    }
  }
  const std::span<const std::byte> data = bytes.subspan(header_offset + header_size);
  if (data.size() != byte_count) {
    dilemma::detail::fail("{}: .npy shape {} of '{}' needs {} bytes of data, but the file holds {}", file,
                          detail::format_npy_shape(header.shape), header.descr, byte_count, data.size());
  }
  NpyArray<T> array{header.shape, std::vector<T>(byte_count / sizeof(T))};
  if (!data.empty()) std::memcpy(array.data.data(), data.data(), data.size());
  return array;
}

template <NpyElement T>
void write_npy(const std::filesystem::path& path, std::span<const std::int64_t> shape, std::span<const T> data) {
  const std::string file = path.string();
  std::uint64_t element_count = 1;
  for (const std::int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(element_count, static_cast<std::uint64_t>(dim), &element_count)) {
      dilemma::detail::fail("{}: cannot write .npy: invalid shape {}", file, detail::format_npy_shape(shape));
    }
  }
  if (element_count != data.size()) {
    dilemma::detail::fail("{}: cannot write .npy: shape {} holds {} elements, but {} were given", file,
                          detail::format_npy_shape(shape), element_count, data.size());
  }

  std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", detail::npy_descr<T>(),
                                   detail::format_npy_shape(shape));
  // Version 1.0 suffices: its 65535-byte header holds far more dimensions
  // than numpy allows (64).
  constexpr std::size_t prefix = detail::npy_magic.size() + 2 + sizeof(std::uint16_t);
  const std::size_t unpadded = prefix + header.size() + 1;  // + the closing newline
  const std::size_t padded = (unpadded + detail::npy_alignment - 1) / detail::npy_alignment * detail::npy_alignment;
  if (padded - prefix > std::numeric_limits<std::uint16_t>::max()) {
    dilemma::detail::fail("{}: cannot write .npy: {} dimensions do not fit in a .npy header", file, shape.size());
  }
  header.append(padded - unpadded, ' ');
  header.push_back('\n');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) dilemma::detail::fail("{}: cannot create file", file);
  out.write(detail::npy_magic.data(), static_cast<std::streamsize>(detail::npy_magic.size()));
  const char version[2] = {1, 0};
  out.write(version, sizeof version);
  const auto header_size = static_cast<std::uint16_t>(header.size());
  out.write(reinterpret_cast<const char*>(&header_size), sizeof header_size);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size_bytes()));
  out.close();
  if (!out) dilemma::detail::fail("{}: writing failed", file);
}

}  // namespace dilemma::io
