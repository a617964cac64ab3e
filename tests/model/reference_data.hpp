#pragma once
// The reference outputs bundled with each test model (reference.json and the
// .npy logits), computed by an independent PyTorch implementation of OPT.

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dilemma/io/npy.hpp"
#include "dilemma/token_id.hpp"
#include "test_support.hpp"

namespace dilemma::testing {

struct ReferencePrompt {
  std::string prompt;
  std::vector<TokenId> ids;
  io::NpyArray<float> logits;  // [T, vocab]
  std::vector<TokenId> greedy_new_ids;  // empty for the random models
};

inline nlohmann::json reference_json(const std::string& model) {
  std::ifstream in(model_dir(model) / "reference.json");
  return nlohmann::json::parse(in);
}

inline std::vector<ReferencePrompt> reference_prompts(const std::string& model) {
  const auto json = reference_json(model);
  std::vector<ReferencePrompt> prompts;
  for (const auto& entry : json.at("prompts")) {
    ReferencePrompt p;
    p.prompt = entry.at("prompt").get<std::string>();
    p.ids = entry.at("ids").get<std::vector<TokenId>>();
    p.logits = io::read_npy<float>(model_dir(model) / entry.at("logits_file").get<std::string>());
    if (entry.contains("greedy_new_ids")) p.greedy_new_ids = entry.at("greedy_new_ids").get<std::vector<TokenId>>();
    prompts.push_back(std::move(p));
  }
  return prompts;
}

}  // namespace dilemma::testing
