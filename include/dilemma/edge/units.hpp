#pragma once
// Physical quantities in cluster files, written the way people write them
// ("2 GiB", "100 Mbit/s", "5 ms", "20 GFLOP/s") or as plain JSON numbers in
// base units (bytes, bytes/s, seconds, FLOP/s). Parsing is strict: a string is
// exactly one number, optional spaces and one unit from a fixed list, so that
// "2 GB ram" or "100 Mbps" is an error naming the field rather than a silent
// guess.

#include <array>
#include <charconv>
#include <cmath>
#include <string>
#include <string_view>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"

namespace dilemma::edge {

enum class Quantity { bytes, bandwidth, duration, flop_rate };

namespace detail {

struct Unit {
  std::string_view symbol;
  double scale;  // base units per unit
};

// Decimal prefixes are powers of 1000 and binary ones powers of 1024, as in
// IEC 80000-13; bandwidth in bits is converted to the library's bytes/s.
inline constexpr std::array<Unit, 9> byte_units = {{{"B", 1.0},
                                                    {"kB", 1e3},
                                                    {"MB", 1e6},
                                                    {"GB", 1e9},
                                                    {"TB", 1e12},
                                                    {"KiB", 1024.0},
                                                    {"MiB", 1048576.0},
                                                    {"GiB", 1073741824.0},
                                                    {"TiB", 1099511627776.0}}};
inline constexpr std::array<Unit, 13> bandwidth_units = {{{"bit/s", 1.0 / 8},
                                                          {"kbit/s", 1e3 / 8},
                                                          {"Mbit/s", 1e6 / 8},
                                                          {"Gbit/s", 1e9 / 8},
                                                          {"Tbit/s", 1e12 / 8},
                                                          {"B/s", 1.0},
                                                          {"kB/s", 1e3},
                                                          {"MB/s", 1e6},
                                                          {"GB/s", 1e9},
                                                          {"TB/s", 1e12},
                                                          {"KiB/s", 1024.0},
                                                          {"MiB/s", 1048576.0},
                                                          {"GiB/s", 1073741824.0}}};
inline constexpr std::array<Unit, 5> duration_units = {
    {{"s", 1.0}, {"ms", 1e-3}, {"us", 1e-6}, {"\u00b5s", 1e-6}, {"ns", 1e-9}}};
inline constexpr std::array<Unit, 6> flop_rate_units = {
    {{"FLOP/s", 1.0}, {"kFLOP/s", 1e3}, {"MFLOP/s", 1e6}, {"GFLOP/s", 1e9}, {"TFLOP/s", 1e12}, {"PFLOP/s", 1e15}}};

template <std::size_t N>
double find_scale(const std::array<Unit, N>& units, std::string_view symbol) {
  for (const Unit& unit : units) {
    if (unit.symbol == symbol) return unit.scale;
  }
  return 0.0;
}

template <std::size_t N>
std::string unit_list(const std::array<Unit, N>& units) {
  std::string list;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) list += i + 1 == N ? " or " : ", ";
    list += units[i].symbol;
  }
  return list;
}

inline const char* quantity_noun(Quantity quantity) {
  switch (quantity) {
    case Quantity::bytes:
      return "a size";
    case Quantity::bandwidth:
      return "a bandwidth";
    case Quantity::duration:
      return "a duration";
    case Quantity::flop_rate:
      return "a compute rate";
  }
  return "a quantity";
}

inline const char* base_unit(Quantity quantity) {
  switch (quantity) {
    case Quantity::bytes:
      return "bytes";
    case Quantity::bandwidth:
      return "bytes/s";
    case Quantity::duration:
      return "seconds";
    case Quantity::flop_rate:
      return "FLOP/s";
  }
  return "";
}

inline double unit_scale(Quantity quantity, std::string_view symbol) {
  switch (quantity) {
    case Quantity::bytes:
      return find_scale(byte_units, symbol);
    case Quantity::bandwidth:
      return find_scale(bandwidth_units, symbol);
    case Quantity::duration:
      return find_scale(duration_units, symbol);
    case Quantity::flop_rate:
      return find_scale(flop_rate_units, symbol);
  }
  return 0.0;
}

inline std::string units_of(Quantity quantity) {
  switch (quantity) {
    case Quantity::bytes:
      return unit_list(byte_units);
    case Quantity::bandwidth:
      return unit_list(bandwidth_units);
    case Quantity::duration:
      return unit_list(duration_units);
    case Quantity::flop_rate:
      return unit_list(flop_rate_units);
  }
  return {};
}

inline double parse_text(std::string_view text, Quantity quantity, std::string_view what) {
  auto bad = [&]() -> double {
    dilemma::detail::fail("{}: \"{}\" is not {}: expected a number followed by one of {} (or a JSON number in {})",
                          what, text, quantity_noun(quantity), units_of(quantity), base_unit(quantity));
  };
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  double number = 0.0;
  const auto [number_end, error] = std::from_chars(begin, end, number, std::chars_format::general);
  if (error != std::errc() || !std::isfinite(number)) return bad();
  std::string_view rest(number_end, static_cast<std::size_t>(end - number_end));
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  const double scale = unit_scale(quantity, rest);
  if (scale == 0.0) return bad();
  return number * scale;
}

}  // namespace detail

// A JSON number in base units, or a string "<number> <unit>". `what` names the
// field in errors, e.g. `cluster.json: servers[0] ("cam").memory`.
inline double parse_quantity(const nlohmann::json& value, Quantity quantity, std::string_view what) {
  if (value.is_number()) {
    const double number = value.get<double>();
    if (!std::isfinite(number)) dilemma::detail::fail("{}: {} is not a finite number", what, value.dump());
    return number;
  }
  if (value.is_string()) return detail::parse_text(value.get_ref<const std::string&>(), quantity, what);
  dilemma::detail::fail("{}: expected {} as a string with a unit (e.g. {}) or a number in {}, got {}", what,
                        detail::quantity_noun(quantity),
                        quantity == Quantity::bytes       ? "\"2 GiB\""
                        : quantity == Quantity::bandwidth ? "\"100 Mbit/s\""
                        : quantity == Quantity::duration  ? "\"5 ms\""
                                                          : "\"20 GFLOP/s\"",
                        detail::base_unit(quantity), value.dump());
}

// A size for people, with a binary prefix: "1.50 MiB".
inline std::string format_bytes(double bytes) {
  constexpr std::array<std::string_view, 5> prefixes = {"B", "KiB", "MiB", "GiB", "TiB"};
  std::size_t index = 0;
  double value = bytes;
  while (std::abs(value) >= 1024.0 && index + 1 < prefixes.size()) {
    value /= 1024.0;
    ++index;
  }
  return index == 0 ? fmt::format("{:.0f} B", value) : fmt::format("{:.2f} {}", value, prefixes[index]);
}

// A duration for people: "12.3 ms", "850 us", "1.25 s".
inline std::string format_seconds(double seconds) {
  const double magnitude = std::abs(seconds);
  if (magnitude >= 1.0 || magnitude == 0.0) return fmt::format("{:.3g} s", seconds);
  if (magnitude >= 1e-3) return fmt::format("{:.3g} ms", seconds * 1e3);
  return fmt::format("{:.3g} us", seconds * 1e6);
}

}  // namespace dilemma::edge
