#include <doctest/doctest.h>

#include "dilemma/eval/squad.hpp"
#include "test_support.hpp"

using namespace dilemma;

TEST_CASE("the SQuAD v1.1 dev set reads as 2067 paragraphs and 10570 questions in file order") {
  const auto paragraphs = eval::load_squad(testing::assets_dir() / "data/squad/dev-v1.1.json");
  REQUIRE(paragraphs.size() == 2067);
  std::size_t questions = 0;
  for (const auto& p : paragraphs) questions += p.questions.size();
  CHECK(questions == 10570);
  CHECK(paragraphs.front().title == "Super_Bowl_50");
  CHECK(paragraphs.back().title == "Force");
  CHECK(paragraphs[17].context.find("Thomas Davis") != std::string::npos);
  CHECK(paragraphs[0].questions[0].question == "Which NFL team represented the AFC at Super Bowl 50?");
  CHECK(paragraphs[0].questions[0].answers.front() == "Denver Broncos");
}

TEST_CASE("a malformed SQuAD file is reported with the path of the offending field") {
  testing::ScratchDir dir;
  const auto file = dir / "squad.json";
  const std::string name = file.string();
  auto error = [&](const std::string& content) {
    testing::write_file(file, content);
    try {
      eval::load_squad(file);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error(R"({"version": "1.1"})") == name + ": missing field \"data\"");
  CHECK(error(R"({"data": {}})") == name + ": data: expected array, got object");
  CHECK(error(R"({"data": [{"title": "A", "paragraphs": [{"context": 5}]}]})") ==
        name + ": data[0].paragraphs[0].context: expected string, got number");
  CHECK(error(R"({"data": [{"title": "A", "paragraphs": [{"context": "c", "qas": [{"id": "x", "question": "q"}]}]}]})") ==
        name + ": data[0].paragraphs[0].qas[0]: missing field \"answers\"");
  CHECK(error(R"([1, 2])") == name + ": expected a JSON object with a \"data\" array");
  CHECK(error(R"({"data": [{"title": "A", "paragraphs": [7]}]})") ==
        name + ": data[0].paragraphs[0]: expected an object, got number");
  CHECK(error("{\"data\": [") .starts_with(name + ": invalid JSON: "));
  CHECK_THROWS_WITH_AS(eval::load_squad(dir / "absent.json"),
                       ((dir / "absent.json").string() + ": cannot open the SQuAD file").c_str(), Error);
}
