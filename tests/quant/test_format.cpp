// Format names and their storage cost in bits per weight.

#include <doctest/doctest.h>

#include <vector>

#include "dilemma/quant/format.hpp"

using namespace dilemma;
using quant::Format;

TEST_CASE("a set of formats is a comma-separated list of distinct names") {
  CHECK(quant::parse_format_set("f16,int8,int4", "--formats") ==
        std::vector<Format>{Format::f16, Format::int8, Format::int4});
  CHECK(quant::parse_format_set("int4", "--formats") == std::vector<Format>{Format::int4});
  CHECK_THROWS_WITH_AS(quant::parse_format_set("int4,f16,int4", "--formats"), "--formats: int4 is listed twice", Error);
  CHECK_THROWS_WITH_AS(quant::parse_format_set("f16,,int4", "--formats"),
                       "--formats: \"f16,,int4\" has an empty format name", Error);
  CHECK_THROWS_WITH_AS(quant::parse_format_set("", "--formats"), "--formats: \"\" has an empty format name", Error);
  CHECK_THROWS_WITH_AS(quant::parse_format_set("f16,int3", "--formats"),
                       "--formats: unknown format \"int3\" (expected f32, f16, int8 or int4)", Error);
}

TEST_CASE("format names round-trip and unknown names are refused with the option's name") {
  for (Format format : quant::all_formats) CHECK(quant::parse_format(quant::format_name(format)) == format);
  CHECK(quant::try_parse_format("int3") == std::nullopt);
  CHECK_THROWS_WITH_AS(quant::parse_format("int3", "--formats"),
                       "--formats: unknown format \"int3\" (expected f32, f16, int8 or int4)", Error);
  CHECK_THROWS_WITH_AS(quant::parse_format("F32"), "format: unknown format \"F32\" (expected f32, f16, int8 or int4)",
                       Error);
}

TEST_CASE("bits per weight count the group scales and offsets") {
  CHECK(quant::bits_per_weight(Format::f32) == 32.0);
  CHECK(quant::bits_per_weight(Format::f16) == 16.0);
  CHECK(quant::bits_per_weight(Format::int8, {.group_size = 64}) == 8.5);
  CHECK(quant::bits_per_weight(Format::int4, {.group_size = 64}) == 4.5);
  CHECK(quant::bits_per_weight(Format::int4, {.group_size = 64, .int4_asymmetric = true}) == 5.0);
  CHECK(quant::bits_per_weight(Format::int4, {.group_size = 32}) == 5.0);
  CHECK(quant::bits_per_weight(Format::int8, {.group_size = 128}) == 8.25);
}
