#pragma once
// SQuAD v1.1 in its official JSON layout: articles → paragraphs (contexts) →
// questions with answers. "Paragraph i" is the i-th context when articles and
// their paragraphs are read in file order, the numbering the references use.

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"
#include "dilemma/io/json_file.hpp"

namespace dilemma::eval {

struct SquadQuestion {
  std::string id;
  std::string question;
  std::vector<std::string> answers;
};

struct SquadParagraph {
  std::string title;  // the article's
  std::string context;
  std::vector<SquadQuestion> questions;
};

namespace detail {

// Reports problems as "<file>: <json path>: <what>", e.g. "dev.json: data[3].paragraphs[0].context: expected string".
struct JsonPlace {
  const std::string& file;
  std::string path;  // empty at the root

  JsonPlace operator[](std::size_t index) const { return {file, fmt::format("{}[{}]", path, index)}; }
  JsonPlace field(const char* key) const { return {file, path.empty() ? key : path + "." + key}; }
  [[noreturn]] void fail(const std::string& what) const {
    if (path.empty()) dilemma::detail::fail("{}: {}", file, what);
    dilemma::detail::fail("{}: {}: {}", file, path, what);
  }
};

inline const nlohmann::json& member(const nlohmann::json& object, const char* key, nlohmann::json::value_t type,
                                    const JsonPlace& place) {
  if (!object.is_object()) place.fail(fmt::format("expected an object, got {}", object.type_name()));
  auto it = object.find(key);
  if (it == object.end()) place.fail(fmt::format("missing field \"{}\"", key));
  if (it->type() != type) {
    place.field(key).fail(fmt::format("expected {}, got {}", nlohmann::json(type).type_name(), it->type_name()));
  }
  return *it;
}

}  // namespace detail

// Reads every paragraph of a SQuAD file, checking the structure on the way so
// that a wrong file is reported with the path of the offending field.
inline std::vector<SquadParagraph> load_squad(const std::filesystem::path& path) {
  const nlohmann::json json = io::read_json_file(path, "the SQuAD file");
  using Type = nlohmann::json::value_t;
  const std::string file = path.string();
  const detail::JsonPlace root{file, ""};
  if (!json.is_object()) root.fail("expected a JSON object with a \"data\" array");
  const auto& articles = detail::member(json, "data", Type::array, root);
  std::vector<SquadParagraph> paragraphs;
  for (std::size_t a = 0; a < articles.size(); ++a) {
    const auto article = root.field("data")[a];
    const auto& title = detail::member(articles[a], "title", Type::string, article);
    const auto& contexts = detail::member(articles[a], "paragraphs", Type::array, article);
    for (std::size_t p = 0; p < contexts.size(); ++p) {
      const auto place = article.field("paragraphs")[p];
      SquadParagraph paragraph{title.get<std::string>(),
                               detail::member(contexts[p], "context", Type::string, place).get<std::string>(),
                               {}};
      if (contexts[p].contains("qas")) {
        const auto& qas = detail::member(contexts[p], "qas", Type::array, place);
        for (std::size_t q = 0; q < qas.size(); ++q) {
          const auto question_place = place.field("qas")[q];
          SquadQuestion question{detail::member(qas[q], "id", Type::string, question_place).get<std::string>(),
                                 detail::member(qas[q], "question", Type::string, question_place).get<std::string>(),
                                 {}};
          const auto& answers = detail::member(qas[q], "answers", Type::array, question_place);
          for (std::size_t k = 0; k < answers.size(); ++k) {
            question.answers.push_back(
                detail::member(answers[k], "text", Type::string, question_place.field("answers")[k])
                    .get<std::string>());
          }
          paragraph.questions.push_back(std::move(question));
        }
      }
      paragraphs.push_back(std::move(paragraph));
    }
  }
  return paragraphs;
}

}  // namespace dilemma::eval
