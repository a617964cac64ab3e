#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "dilemma/edge/units.hpp"

using namespace dilemma;
using edge::Quantity;
using nlohmann::json;

TEST_CASE("quantities parse with decimal and binary prefixes, bits and bytes") {
  CHECK(edge::parse_quantity(json("2 GiB"), Quantity::bytes, "m") == 2147483648.0);
  CHECK(edge::parse_quantity(json("1.5MB"), Quantity::bytes, "m") == 1.5e6);
  CHECK(edge::parse_quantity(json("512 KiB"), Quantity::bytes, "m") == 524288.0);
  CHECK(edge::parse_quantity(json(1000), Quantity::bytes, "m") == 1000.0);
  CHECK(edge::parse_quantity(json("100 Mbit/s"), Quantity::bandwidth, "b") == 12.5e6);
  CHECK(edge::parse_quantity(json("1 Gbit/s"), Quantity::bandwidth, "b") == 125e6);
  CHECK(edge::parse_quantity(json("12 MB/s"), Quantity::bandwidth, "b") == 12e6);
  CHECK(edge::parse_quantity(json("5 ms"), Quantity::duration, "l") == doctest::Approx(0.005));
  CHECK(edge::parse_quantity(json("250 us"), Quantity::duration, "l") == doctest::Approx(250e-6));
  CHECK(edge::parse_quantity(json("2e-3 s"), Quantity::duration, "l") == doctest::Approx(0.002));
  CHECK(edge::parse_quantity(json("20 GFLOP/s"), Quantity::flop_rate, "f") == 20e9);
}

TEST_CASE("quantities reject junk, wrong units and non-finite numbers with the field named") {
  CHECK_THROWS_WITH_AS(
      edge::parse_quantity(json("2 GB ram"), Quantity::bytes, "c.json: servers[0] (\"a\").memory"),
      "c.json: servers[0] (\"a\").memory: \"2 GB ram\" is not a size: expected a number followed by one "
      "of B, kB, MB, GB, TB, KiB, MiB, GiB or TiB (or a JSON number in bytes)",
      Error);
  CHECK_THROWS_WITH_AS(edge::parse_quantity(json("100 Mbps"), Quantity::bandwidth, "l.bandwidth"),
                       "l.bandwidth: \"100 Mbps\" is not a bandwidth: expected a number followed by one of bit/s, "
                       "kbit/s, Mbit/s, Gbit/s, Tbit/s, B/s, kB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s or GiB/s (or a JSON "
                       "number in bytes/s)",
                       Error);
  CHECK_THROWS_WITH_AS(
      edge::parse_quantity(json("5"), Quantity::duration, "l.latency"),
      "l.latency: \"5\" is not a duration: expected a number followed by one of s, ms, us, \u00b5s or ns "
      "(or a JSON number in seconds)",
      Error);
  CHECK_THROWS_AS(edge::parse_quantity(json("ms"), Quantity::duration, "x"), Error);
  CHECK_THROWS_AS(edge::parse_quantity(json(" 5 ms"), Quantity::duration, "x"), Error);
  CHECK_THROWS_AS(edge::parse_quantity(json("inf s"), Quantity::duration, "x"), Error);
  CHECK_THROWS_AS(edge::parse_quantity(json("nan MB"), Quantity::bytes, "x"), Error);
  CHECK_THROWS_WITH_AS(edge::parse_quantity(json::array(), Quantity::bytes, "x"),
                       "x: expected a size as a string with a unit (e.g. \"2 GiB\") or a number in bytes, got []",
                       Error);
}

TEST_CASE("sizes and durations print for people") {
  CHECK(edge::format_bytes(512) == "512 B");
  CHECK(edge::format_bytes(1.5 * 1048576) == "1.50 MiB");
  CHECK(edge::format_seconds(0.0123) == "12.3 ms");
  CHECK(edge::format_seconds(850e-6) == "850 us");
  CHECK(edge::format_seconds(1.25) == "1.25 s");
}
