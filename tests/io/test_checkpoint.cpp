#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "dilemma/io/safetensors.hpp"
#include "test_support.hpp"

using dilemma::io::SafetensorsCheckpoint;
using dilemma::io::SafetensorsFile;
using dilemma::io::TensorToWrite;
using dilemma::io::TensorView;
using dilemma::testing::ScratchDir;

namespace {

const std::string first_shard = "model-00001-of-00002.safetensors";
const std::string second_shard = "model-00002-of-00002.safetensors";

// tiny-opt-preln split in two: layer 1 and the final layer norm in the second
// shard, everything else in the first.
class ShardedModel {
 public:
  ShardedModel() : source_(SafetensorsFile::open(dilemma::testing::model_dir("tiny-opt-preln") / "model.safetensors")) {
    for (const std::string& name : source_.tensor_names()) {
      const bool second =
          name.starts_with("model.decoder.layers.1.") || name.starts_with("model.decoder.final_layer_norm.");
      (second ? second_names_ : first_names_).push_back(name);
      weight_map_[name] = second ? second_shard : first_shard;
    }
  }

  const std::filesystem::path& dir() const { return scratch_.path(); }
  std::filesystem::path index_path() const { return dir() / "model.safetensors.index.json"; }
  const SafetensorsFile& source() const { return source_; }
  const std::vector<std::string>& first_names() const { return first_names_; }
  const std::vector<std::string>& second_names() const { return second_names_; }
  nlohmann::json& weight_map() { return weight_map_; }

  void write_shard(const std::string& file, const std::vector<std::string>& names) const {
    std::vector<TensorToWrite> tensors;
    for (const std::string& name : names) {
      const TensorView view = source_.tensor(name);
      tensors.push_back({name, view.dtype, {view.shape.begin(), view.shape.end()}, view.data});
    }
    std::filesystem::create_directories((dir() / file).parent_path());
    dilemma::io::write_safetensors(dir() / file, tensors, {{"format", "pt"}});
  }

  void write_index() const {
    const nlohmann::json index = {{"metadata", {{"total_size", 2549248}}}, {"weight_map", weight_map_}};
    dilemma::testing::write_file(index_path(), index.dump(2));
  }

  void write_all() const {
    write_shard(first_shard, first_names_);
    write_shard(second_shard, second_names_);
    write_index();
  }

  // The message of the dilemma::Error that opening the directory throws.
  std::string open_error() const {
    try {
      SafetensorsCheckpoint::open(dir());
    } catch (const dilemma::Error& error) {
      return error.what();
    }
    return "(opened without error)";
  }

 private:
  ScratchDir scratch_;
  SafetensorsFile source_;
  std::vector<std::string> first_names_;
  std::vector<std::string> second_names_;
  nlohmann::json weight_map_ = nlohmann::json::object();
};

bool same_tensor(const TensorView& a, const TensorView& b) {
  return a.name == b.name && a.dtype == b.dtype &&
         std::equal(a.shape.begin(), a.shape.end(), b.shape.begin(), b.shape.end()) && a.data.size() == b.data.size() &&
         std::memcmp(a.data.data(), b.data.data(), a.data.size()) == 0;
}

}  // namespace

TEST_CASE("a single-file checkpoint directory") {
  const auto dir = dilemma::testing::model_dir("tiny-opt");
  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(dir);
  const SafetensorsFile file = SafetensorsFile::open(dir / "model.safetensors");
  CHECK(checkpoint.tensor_names() == file.tensor_names());
  CHECK(checkpoint.tensor_names().size() == 132);
  CHECK(checkpoint.contains("model.decoder.project_in.weight"));
  CHECK_FALSE(checkpoint.contains("lm_head.weight"));
  CHECK(checkpoint.file_of("model.decoder.layers.7.fc1.weight") == dir / "model.safetensors");
  CHECK(same_tensor(checkpoint.tensor("model.decoder.layers.7.fc1.weight"),
                    file.tensor("model.decoder.layers.7.fc1.weight")));
  CHECK_THROWS_WITH_AS(checkpoint.tensor("lm_head.weight"),
                       ((dir / "model.safetensors").string() + ": no tensor named 'lm_head.weight'").c_str(),
                       dilemma::Error);
}

TEST_CASE("a checkpoint split into two shards reads like the original") {
  ShardedModel model;
  model.write_all();
  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(model.dir());
  CHECK(checkpoint.tensor_names() == model.source().tensor_names());
  for (const std::string& name : model.source().tensor_names()) {
    CAPTURE(name);
    CHECK(same_tensor(checkpoint.tensor(name), model.source().tensor(name)));
  }
  CHECK(model.second_names().size() == 18);
  for (const std::string& name : model.first_names()) CHECK(checkpoint.file_of(name) == model.dir() / first_shard);
  for (const std::string& name : model.second_names()) CHECK(checkpoint.file_of(name) == model.dir() / second_shard);
  CHECK_THROWS_WITH_AS(checkpoint.file_of("lm_head.weight"),
                       (model.index_path().string() + ": no tensor named 'lm_head.weight'").c_str(), dilemma::Error);
}

TEST_CASE("shards may sit in a subdirectory or be symlinks to files elsewhere") {
  ShardedModel model;
  model.write_shard("weights/part-1.safetensors", model.first_names());
  const ScratchDir blobs;  // the Hugging Face cache links snapshot files to blobs
  const TensorView bias = model.source().tensor("model.decoder.final_layer_norm.bias");
  std::vector<TensorToWrite> tensors;
  for (const std::string& name : model.second_names()) {
    const TensorView view = model.source().tensor(name);
    tensors.push_back({name, view.dtype, {view.shape.begin(), view.shape.end()}, view.data});
  }
  dilemma::io::write_safetensors(blobs / "0123abcd", tensors);
  std::filesystem::create_symlink(blobs / "0123abcd", model.dir() / "part-2.safetensors");
  for (const std::string& name : model.first_names()) model.weight_map()[name] = "weights/part-1.safetensors";
  for (const std::string& name : model.second_names()) model.weight_map()[name] = "./part-2.safetensors";
  model.write_index();

  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(model.dir());
  CHECK(same_tensor(checkpoint.tensor(bias.name), bias));
  CHECK(checkpoint.file_of(bias.name) == model.dir() / "./part-2.safetensors");
  CHECK(checkpoint.tensor_names().size() == model.source().tensor_names().size());
}

TEST_CASE("model.safetensors wins over an index, as in transformers") {
  ShardedModel model;
  model.write_index();  // its shards do not exist
  std::filesystem::copy_file(dilemma::testing::model_dir("tiny-opt-preln") / "model.safetensors",
                             model.dir() / "model.safetensors");
  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(model.dir());
  CHECK(checkpoint.file_of("model.decoder.final_layer_norm.bias") == model.dir() / "model.safetensors");
}

TEST_CASE("a directory without a checkpoint") {
  const ScratchDir scratch;
  CHECK_THROWS_WITH_AS(SafetensorsCheckpoint::open(scratch.path()),
                       (scratch.path().string() +
                        ": no checkpoint in this directory: expected model.safetensors or model.safetensors.index.json")
                           .c_str(),
                       dilemma::Error);
  CHECK_THROWS_WITH_AS(
      SafetensorsCheckpoint::open(scratch / "nowhere"),
      ((scratch / "nowhere").string() + ": model directory does not exist or is not a directory").c_str(),
      dilemma::Error);
}

TEST_CASE("an index that is not JSON, not an object, or without a weight_map object") {
  ShardedModel model;
  const std::string index = model.index_path().string();
  dilemma::testing::write_file(model.index_path(), R"({"weight_map": {)");
  CHECK(model.open_error().rfind(index + ": the index is not valid JSON: [json.exception.parse_error.101]", 0) == 0);
  dilemma::testing::write_file(model.index_path(), "[]");
  CHECK(model.open_error() == index + ": the index must be a JSON object, got []");
  dilemma::testing::write_file(model.index_path(), R"({"metadata": {}})");
  CHECK(model.open_error() == index + ": missing field 'weight_map'");
  dilemma::testing::write_file(model.index_path(), R"({"weight_map": ["model.safetensors"]})");
  CHECK(model.open_error() ==
        index + ": weight_map must be an object mapping tensor names to shard files, got [\"model.safetensors\"]");
  dilemma::testing::write_file(model.index_path(), R"({"weight_map": {"w": 3}})");
  CHECK(model.open_error() == index + ": weight_map['w'] must be a shard file name, got 3");
}

TEST_CASE("shard names that leave the model directory") {
  ShardedModel model;
  model.write_all();
  for (const std::string shard :
       {"../model.safetensors", "weights/../../model.safetensors", "/tmp/model.safetensors", ""}) {
    CAPTURE(shard);
    model.weight_map()["model.decoder.layers.1.fc1.bias"] = shard;
    model.write_index();
    CHECK(model.open_error() == model.index_path().string() + ": weight_map['model.decoder.layers.1.fc1.bias'] is '" +
                                    shard + "', which is not a relative path inside the model directory");
  }
}

TEST_CASE("a shard that does not exist or is broken") {
  ShardedModel model;
  model.write_all();
  model.weight_map()["model.decoder.layers.1.fc1.bias"] = "model-00003-of-00002.safetensors";
  model.write_index();
  CHECK(model.open_error() ==
        model.index_path().string() + ": shard 'model-00003-of-00002.safetensors' listed in weight_map does not exist");

  dilemma::testing::write_file(model.dir() / "model-00003-of-00002.safetensors", "{}");
  CHECK(model.open_error() == (model.dir() / "model-00003-of-00002.safetensors").string() +
                                  ": file is 2 bytes, shorter than the 8-byte header length of a safetensors file");
}

TEST_CASE("an index that disagrees with its shards") {
  ShardedModel model;
  model.write_all();
  const std::string index = model.index_path().string();

  model.weight_map()["model.decoder.layers.1.fc1.bias"] = first_shard;
  model.write_index();
  CHECK(model.open_error() == index + ": weight_map puts tensor 'model.decoder.layers.1.fc1.bias' in shard '" +
                                  first_shard + "', which does not contain it");

  model.weight_map()["model.decoder.layers.1.fc1.bias"] = second_shard;
  model.weight_map().erase("model.decoder.layers.1.fc2.bias");
  model.write_index();
  CHECK(model.open_error() == index + ": shard '" + second_shard +
                                  "' holds tensor 'model.decoder.layers.1.fc2.bias', which weight_map does not list");

  model.weight_map()["model.decoder.layers.1.fc2.bias"] = second_shard;
  model.weight_map()["lm_head.weight"] = second_shard;
  model.write_index();
  CHECK(model.open_error() ==
        index + ": weight_map puts tensor 'lm_head.weight' in shard '" + second_shard + "', which does not contain it");

  model.weight_map().erase("lm_head.weight");
  model.write_index();
  std::vector<std::string> second_with_duplicate = model.second_names();
  second_with_duplicate.push_back("model.decoder.embed_positions.weight");
  model.write_shard(second_shard, second_with_duplicate);
  CHECK(model.open_error() == index + ": tensor 'model.decoder.embed_positions.weight' is stored in two shards, '" +
                                  first_shard + "' and '" + second_shard + "'");
}
