#pragma once
// The precisions a stage's weights can be stored in, and what each costs in
// bits. Integer formats are group-wise along the input dimension: every run of
// `group_size` consecutive weights of a row shares one float32 scale (and, for
// asymmetric int4, one float32 offset), so a format's true size includes them.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dilemma/error.hpp"

namespace dilemma::quant {

enum class Format { f32, f16, int8, int4 };

inline constexpr std::array<Format, 4> all_formats = {Format::f32, Format::f16, Format::int8, Format::int4};

inline constexpr std::string_view format_name(Format format) {
  switch (format) {
    case Format::f32: return "f32";
    case Format::f16: return "f16";
    case Format::int8: return "int8";
    case Format::int4: return "int4";
  }
  return "f32";
}

inline std::optional<Format> try_parse_format(std::string_view name) {
  for (Format format : all_formats) {
    if (format_name(format) == name) return format;
  }
  return std::nullopt;
}

// `what` names the option or field in the error, e.g. "--formats".
inline Format parse_format(std::string_view name, std::string_view what = "format") {
  if (auto format = try_parse_format(name)) return *format;
  dilemma::detail::fail("{}: unknown format \"{}\" (expected f32, f16, int8 or int4)", what, name);
}

// A comma-separated list of distinct formats, e.g. "f16,int8,int4": the
// formats a stage or a server may use, or that a profile measures. `what`
// names the option or field in the error.
inline std::vector<Format> parse_format_set(std::string_view list, std::string_view what) {
  std::vector<Format> formats;
  std::size_t begin = 0;
  while (begin <= list.size()) {
    const std::size_t end = std::min(list.find(',', begin), list.size());
    const std::string_view name = list.substr(begin, end - begin);
    if (name.empty()) dilemma::detail::fail("{}: \"{}\" has an empty format name", what, list);
    const Format format = parse_format(name, what);
    if (std::find(formats.begin(), formats.end(), format) != formats.end()) {
      dilemma::detail::fail("{}: {} is listed twice", what, name);
    }
    formats.push_back(format);
    begin = end + 1;
  }
  return formats;
}

// How integer formats are laid out; float formats ignore it.
struct QuantScheme {
  std::int64_t group_size = 64;
  bool int4_asymmetric = false;  // int4 with a per-group offset (min) besides the scale
};

// Storage bits per weight, group scales (and offsets) included.
inline double bits_per_weight(Format format, const QuantScheme& scheme = {}) {
  const double group = static_cast<double>(scheme.group_size);
  switch (format) {
    case Format::f32: return 32.0;
    case Format::f16: return 16.0;
    case Format::int8: return 8.0 + 32.0 / group;
    case Format::int4: return 4.0 + (scheme.int4_asymmetric ? 64.0 : 32.0) / group;
  }
  return 32.0;
}

}  // namespace dilemma::quant
