#pragma once
// Reading a JSON file (config.json, clusters, plans, profiles, …) with errors
// that name the file: every loader of the library goes through here.

#include <filesystem>
#include <fstream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "dilemma/error.hpp"

namespace dilemma::io {

// The parsed document of `path`. `what` names the kind of file in the message
// when it cannot be opened ("the cluster file").
inline nlohmann::json read_json_file(const std::filesystem::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) dilemma::detail::fail("{}: cannot open {}", path.string(), what);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    dilemma::detail::fail("{}: invalid JSON: {}", path.string(), e.what());
  }
}

}  // namespace dilemma::io
