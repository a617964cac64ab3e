// Format assignments as --formats and the planner give them: one format, one
// per stage, or a JSON file; and every way of getting one wrong.

#include <doctest/doctest.h>

#include "dilemma/quant/format_assignment.hpp"
#include "test_support.hpp"

using namespace dilemma;
using quant::Format;
using quant::FormatAssignment;

namespace {

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

FormatAssignment from_json_text(const testing::ScratchDir& dir, const std::string& text) {
  testing::write_file(dir / "formats.json", text);
  return FormatAssignment::parse((dir / "formats.json").string());
}

}  // namespace

TEST_CASE("one format applies to every stage") {
  const auto assignment = FormatAssignment::parse("int4");
  CHECK(assignment.resolve(4) == std::vector<Format>(4, Format::int4));
  CHECK(assignment.resolve(26) == std::vector<Format>(26, Format::int4));
  CHECK(assignment.scheme().group_size == 64);
  CHECK(FormatAssignment().resolve(3) == std::vector<Format>(3, Format::f32));
}

TEST_CASE("a comma-separated list gives embedding, layers and head in order") {
  const auto assignment = FormatAssignment::parse("f32,int8,int4,f16");
  CHECK(assignment.resolve(4) == std::vector<Format>{Format::f32, Format::int8, Format::int4, Format::f16});
  CHECK_THROWS_WITH_AS(assignment.resolve(10),
                       "--formats: 4 formats given, expected N = 2 + layers = 10 (embedding, layer.0 … layer.7, head)",
                       Error);
  CHECK_THROWS_WITH_AS(FormatAssignment::parse("f32,int3,f32"),
                       "--formats (item 1): unknown format \"int3\" (expected f32, f16, int8 or int4)", Error);
  CHECK_THROWS_WITH_AS(FormatAssignment::parse("f32,,f32"),
                       "--formats (item 1): unknown format \"\" (expected f32, f16, int8 or int4)", Error);
}

TEST_CASE("an unknown single name says what is accepted") {
  CHECK_THROWS_WITH_AS(FormatAssignment::parse("int3"),
                       "--formats: unknown format \"int3\" (expected f32, f16, int8 or int4, a comma-separated list "
                       "with one per stage, or a JSON file)",
                       Error);
  CHECK_THROWS_WITH_AS(FormatAssignment::parse("", "formats"),
                       "formats: unknown format \"\" (expected f32, f16, int8 or int4, a comma-separated list with "
                       "one per stage, or a JSON file)",
                       Error);
}

TEST_CASE("a JSON file lists the formats, or gives a default and exceptions by stage name") {
  testing::ScratchDir dir;
  const auto list = from_json_text(dir, R"({"formats": ["f32", "int8", "int8", "f16"], "group_size": 32})");
  CHECK(list.resolve(4) == std::vector<Format>{Format::f32, Format::int8, Format::int8, Format::f16});
  CHECK(list.scheme().group_size == 32);
  CHECK_FALSE(list.scheme().int4_asymmetric);

  const auto by_name = from_json_text(
      dir, R"({"default": "int8", "stages": {"layer.3": "int4", "head": "f16"}, "int4_asymmetric": true})");
  CHECK(by_name.resolve(6) ==
        std::vector<Format>{Format::int8, Format::int8, Format::int8, Format::int8, Format::int4, Format::f16});
  CHECK(by_name.scheme().int4_asymmetric);
  CHECK(by_name.scheme().group_size == 64);

  // Without a default, unnamed stages stay f32.
  const auto few = from_json_text(dir, R"({"stages": {"embedding": "int8"}})");
  CHECK(few.resolve(3) == std::vector<Format>{Format::int8, Format::f32, Format::f32});
}

TEST_CASE("a JSON file's mistakes name the file and the field") {
  testing::ScratchDir dir;
  const std::string file = (dir / "formats.json").string();
  auto error = [&](const std::string& text) { return error_of([&] { from_json_text(dir, text); }); };
  CHECK(error(R"({"formats": ["f32", "int3"]})") ==
        file + ": formats[1]: unknown format \"int3\" (expected f32, f16, int8 or int4)");
  CHECK(error(R"({"formats": "int8"})") == file + ": \"formats\" must be an array, got string");
  CHECK(error(R"({"formats": [8]})") == file + ": formats[0] must be a format name, got 8");
  CHECK(error(R"({"default": "int8", "formats": ["int8"]})") ==
        file + ": give either \"formats\" (one per stage) or \"default\"/\"stages\", not both");
  CHECK(error(R"({"group_size": 32})") ==
        file + ": no formats: expected \"formats\" (one per stage) or \"default\"/\"stages\"");
  CHECK(error(R"({"default": "int8", "group": 32})") ==
        file + ": unknown field \"group\" (expected \"formats\", or \"default\" and \"stages\"; optionally "
               "\"group_size\" and \"int4_asymmetric\")");
  CHECK(error(R"({"default": "int8", "group_size": 48})") == file + ": group size 48 is not a positive multiple of 32");
  CHECK(error(R"({"default": "int8", "group_size": "32"})") == file + ": \"group_size\" must be an integer, got \"32\"");
  CHECK(error(R"({"default": "int8", "int4_asymmetric": 1})") ==
        file + ": \"int4_asymmetric\" must be true or false, got 1");
  CHECK(error(R"({"stages": ["int8"]})") == file + ": \"stages\" must be an object, got array");
  CHECK(error(R"({"stages": {"head": "int2"}})") ==
        file + ": stages[\"head\"]: unknown format \"int2\" (expected f32, f16, int8 or int4)");
  CHECK(error("[1, 2]") == file + ": expected a JSON object, got array");
  CHECK(error("{").starts_with(file + ": invalid JSON: "));

  const auto unknown_stage = from_json_text(dir, R"({"default": "int8", "stages": {"layer.9": "int4"}})");
  CHECK_THROWS_WITH_AS(unknown_stage.resolve(10),
                       (file + ": unknown stage \"layer.9\" (the model's stages are embedding, layer.0 … layer.7, "
                               "head)")
                           .c_str(),
                       Error);
  const auto short_list = from_json_text(dir, R"({"formats": ["int8", "int8"]})");
  CHECK_THROWS_WITH_AS(short_list.resolve(3),
                       (file + ": 2 formats given, expected N = 2 + layers = 3 (embedding, layer.0, head)").c_str(),
                       Error);
  CHECK_THROWS_WITH_AS(FormatAssignment::parse((dir / "missing.json").string()),
                       ((dir / "missing.json").string() + ": cannot open the format assignment file").c_str(), Error);
}

TEST_CASE("a separate group size applies unless the file fixed another one") {
  auto assignment = FormatAssignment::parse("int4");
  assignment.set_group_size(128);
  CHECK(assignment.scheme().group_size == 128);
  CHECK_THROWS_WITH_AS(assignment.set_group_size(100), "--group-size: group size 100 is not a positive multiple of 32",
                       Error);

  testing::ScratchDir dir;
  auto from_file = from_json_text(dir, R"({"default": "int4", "group_size": 32})");
  from_file.set_group_size(32);  // agreeing is fine
  CHECK_THROWS_WITH_AS(from_file.set_group_size(64),
                       ("--group-size 64 conflicts with \"group_size\": 32 in " + (dir / "formats.json").string())
                           .c_str(),
                       Error);
}
