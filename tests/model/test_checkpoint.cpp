// Loading Hugging Face OPT directories, and refusing ones that disagree with
// their config.json, with messages that name the file and the tensor.

#include <doctest/doctest.h>

#include <functional>
#include <map>

#include "dilemma/io/safetensors.hpp"
#include "dilemma/model/checkpoint.hpp"
#include "dilemma/model/opt_model.hpp"
#include "checkpoint_editing.hpp"
#include "reference_data.hpp"

using namespace dilemma;

namespace {

// A copy of a bundled model directory whose tensors went through `edit`
// (rename, drop, reshape, …) before being written back.
std::filesystem::path edited_copy(const testing::ScratchDir& dir, const std::string& model,
                                  const std::function<void(std::vector<testing::EditableTensor>&)>& edit) {
  const auto source = testing::model_dir(model);
  const auto target = dir.path() / model;
  std::filesystem::create_directories(target);
  std::filesystem::copy_file(source / "config.json", target / "config.json");
  const auto file = io::SafetensorsFile::open(source / "model.safetensors");
  std::vector<testing::EditableTensor> tensors = testing::read_tensors(file);
  edit(tensors);
  testing::write_tensors(target / "model.safetensors", tensors, file.metadata());
  return target;
}

using testing::open_error;

}  // namespace

TEST_CASE("original facebook/opt-* names without the model. prefix load and give the same logits") {
  testing::ScratchDir dir;
  const auto path = edited_copy(dir, "tiny-opt-preln", [](auto& tensors) {
    for (auto& t : tensors) t.name = t.name.substr(std::string("model.").size());
  });
  const auto checkpoint = model::OptCheckpoint::open(path);
  CHECK(checkpoint.decoder_prefix() == "decoder.");
  const auto model = model::OptModel(checkpoint.config(), checkpoint.load_all_stages());
  const auto prompt = testing::reference_prompts("tiny-opt-preln").at(1);
  auto session = model.new_session();
  const auto logits = model.forward(prompt.ids, session, model::Logits::all);
  const Eigen::Map<const model::Matrix> expected(prompt.logits.data.data(), logits.rows(), logits.cols());
  CHECK((logits - expected).cwiseAbs().maxCoeff() <= 1e-3f);
}

TEST_CASE("an untied lm_head.weight is used when the config unties it, ignored when tied") {
  testing::ScratchDir dir;
  // Tied (the config's default): a stored lm_head.weight is accepted and ignored, as transformers does.
  const auto tied = edited_copy(dir, "tiny-opt-preln", [](auto& tensors) {
    auto head = tensors.front();
    REQUIRE(head.name == "model.decoder.embed_positions.weight");
    for (const auto& t : tensors) {
      if (t.name == "model.decoder.embed_tokens.weight") head = t;
    }
    head.name = "lm_head.weight";
    std::fill(head.data.begin(), head.data.end(), std::byte{0});
    tensors.push_back(head);
  });
  const auto model = model::OptModel::load(tied);
  const auto prompt = testing::reference_prompts("tiny-opt-preln").at(2);
  auto session = model.new_session();
  const auto logits = model.forward(prompt.ids, session, model::Logits::all);
  const Eigen::Map<const model::Matrix> expected(prompt.logits.data.data(), logits.rows(), logits.cols());
  CHECK((logits - expected).cwiseAbs().maxCoeff() <= 1e-3f);

  // Untied: the zeroed lm_head.weight is the head, so every logit is 0.
  auto config = nlohmann::json::parse(testing::read_file(tied / "config.json"));
  config["tie_word_embeddings"] = false;
  testing::write_file(tied / "config.json", config.dump());
  const auto untied = model::OptModel::load(tied);
  auto untied_session = untied.new_session();
  CHECK(untied.forward(prompt.ids, untied_session).cwiseAbs().maxCoeff() == 0.0f);
}

TEST_CASE("tensors that disagree with config.json are named in the error") {
  testing::ScratchDir dir;
  SUBCASE("missing tensor") {
    const auto path = edited_copy(dir, "tiny-opt-preln", [](auto& tensors) {
      std::erase_if(tensors, [](const auto& t) { return t.name == "model.decoder.layers.1.fc2.bias"; });
    });
    CHECK(open_error(path) == path.string() +
                                  ": tensor \"model.decoder.layers.1.fc2.bias\" is missing (config.json describes 2 "
                                  "layers, hidden_size 64)");
  }
  SUBCASE("extra tensor") {
    const auto path = edited_copy(dir, "tiny-opt-preln", [](auto& tensors) {
      auto extra = tensors.back();
      extra.name = "model.decoder.layers.2.fc1.bias";
      tensors.push_back(extra);
    });
    CHECK(open_error(path) == (path / "model.safetensors").string() +
                                  ": unexpected tensor \"model.decoder.layers.2.fc1.bias\": not part of an OPT "
                                  "model with this config.json");
  }
  SUBCASE("shape that disagrees with config.json") {
    const auto path = edited_copy(dir, "tiny-opt-preln", [](auto& tensors) {
      for (auto& t : tensors) {
        if (t.name == "model.decoder.layers.0.fc1.weight") t.shape = {64, 256};  // transposed
      }
    });
    CHECK(open_error(path) == (path / "model.safetensors").string() +
                                  ": tensor \"model.decoder.layers.0.fc1.weight\" has shape [64, 256], but "
                                  "config.json implies [256, 64]");
  }
  SUBCASE("integer dtype where floats are expected") {
    const auto path = edited_copy(dir, "tiny-opt-preln", [](auto& tensors) {
      for (auto& t : tensors) {
        if (t.name == "model.decoder.final_layer_norm.bias") t.dtype = io::DType::i32;
      }
    });
    CHECK(open_error(path) == (path / "model.safetensors").string() +
                                  ": tensor \"model.decoder.final_layer_norm.bias\" has dtype I32, expected a "
                                  "floating-point dtype (F32, F16 or BF16)");
  }
  SUBCASE("no embedding under either naming scheme") {
    const auto path = edited_copy(dir, "tiny-opt-preln", [](auto& tensors) {
      for (auto& t : tensors) t.name = "transformer." + t.name;
    });
    CHECK(open_error(path) == path.string() +
                                  ": no token embedding found: expected a tensor \"model.decoder.embed_tokens.weight\" "
                                  "(transformers) or \"decoder.embed_tokens.weight\" (original OPT checkpoints)");
  }
  SUBCASE("config.json with more layers than the file holds") {
    const auto path = edited_copy(dir, "tiny-opt-preln", [](auto&) {});
    auto config = nlohmann::json::parse(testing::read_file(path / "config.json"));
    config["num_hidden_layers"] = 3;
    testing::write_file(path / "config.json", config.dump());
    CHECK(open_error(path) == path.string() +
                                  ": tensor \"model.decoder.layers.2.self_attn.q_proj.weight\" is missing (config.json "
                                  "describes 3 layers, hidden_size 64)");
  }
  SUBCASE("not a directory") {
    CHECK(open_error(dir / "nowhere") ==
          (dir / "nowhere").string() + ": not a model directory (expected config.json and model.safetensors in it)");
  }
}

TEST_CASE("one stage can be loaded without the others") {
  const auto checkpoint = model::OptCheckpoint::open(testing::model_dir("tiny-opt"));
  const auto stage = checkpoint.load_stage(4);
  CHECK(stage.name() == "layer.3");
  CHECK(stage.kind() == model::StageKind::decoder_layer);
  CHECK(stage.parameter_count() == 4 * (192 * 192 + 192) + 4 * 192 + 2 * 192 * 768 + 768 + 192);
  CHECK_THROWS_WITH_AS(checkpoint.load_stage(10),
                       (testing::model_dir("tiny-opt").string() +
                        ": stage 10 does not exist (the model has 10 stages: embedding, 8 layers, head)")
                           .c_str(),
                       Error);
}
