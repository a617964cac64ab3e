// Quantized checkpoints: stages saved in their formats load back bit for bit,
// a node can hold only its stages, and files whose metadata, scales or codes
// disagree are refused with the file, the tensor and what is wrong.

#include <doctest/doctest.h>

#include <cstring>
#include <functional>
#include <map>
#include <utility>

#include <nlohmann/json.hpp>

#include "dilemma/io/safetensors.hpp"
#include "dilemma/model/checkpoint.hpp"
#include "dilemma/model/opt_model.hpp"
#include "dilemma/model/quantized_checkpoint.hpp"
#include "checkpoint_editing.hpp"
#include "reference_data.hpp"

using namespace dilemma;
using quant::Format;

namespace {

// tiny-opt's widths (96, 192, 768) are multiples of 32, not of the default 64.
constexpr quant::QuantScheme scheme32{.group_size = 32};

// tiny-opt: embedding int8, layers int4/int8/f16/f32 …, head int4.
const std::vector<Format> mixed = {Format::int8, Format::int4, Format::f16, Format::f32, Format::int8,
                                   Format::int4, Format::int4, Format::int8, Format::f16, Format::int4};

model::OptModel mixed_tiny_opt(const quant::QuantScheme& scheme = scheme32) {
  auto model = model::OptModel::load(testing::model_dir("tiny-opt"));
  model.quantize(mixed, scheme);
  return model;
}

model::Matrix all_logits(const model::OptModel& model, std::span<const TokenId> ids) {
  auto session = model.new_session();
  return model.forward(ids, session, model::Logits::all);
}

using testing::open_error;
using Tensor = testing::EditableTensor;

// dir/model.safetensors's tensors and metadata, as read before the file is rewritten.
std::pair<std::vector<Tensor>, std::map<std::string, std::string>> read_checkpoint(const std::filesystem::path& dir) {
  const auto file = io::SafetensorsFile::open(dir / "model.safetensors");
  return {testing::read_tensors(file), file.metadata()};
}

// Rewrites dir/model.safetensors after `edit` changed its tensors or metadata.
void edit_checkpoint(const std::filesystem::path& dir,
                     const std::function<void(std::vector<Tensor>&, nlohmann::json& quantization)>& edit) {
  auto [tensors, metadata] = read_checkpoint(dir);
  auto quantization = nlohmann::json::parse(metadata.at("dilemma.quantization"));
  edit(tensors, quantization);
  metadata["dilemma.quantization"] = quantization.dump();
  testing::write_tensors(dir / "model.safetensors", tensors, metadata);
}

Tensor& find(std::vector<Tensor>& tensors, const std::string& name) {
  const auto it = std::ranges::find(tensors, name, &Tensor::name);
  REQUIRE(it != tensors.end());
  return *it;
}

std::string model_load_error(const std::filesystem::path& dir) {
  try {
    model::OptModel::load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("a model saved in mixed formats loads back in those formats with bit-identical logits") {
  testing::ScratchDir dir;
  const auto model = mixed_tiny_opt();
  model::save_quantized_checkpoint(dir / "q", model);
  model::copy_tokenizer_files(testing::model_dir("tiny-opt"), dir / "q");

  const auto checkpoint = model::OptCheckpoint::open(dir / "q");
  REQUIRE(checkpoint.quantization().has_value());
  CHECK(checkpoint.quantization()->scheme.group_size == 32);
  CHECK(checkpoint.quantization()->stages.size() == 10);
  CHECK(checkpoint.quantization()->stages.at(3) == Format::f32);
  CHECK(checkpoint.config().to_json() == model.config().to_json());

  const auto loaded = model::OptModel::load(dir / "q");
  for (std::size_t i = 0; i < mixed.size(); ++i) CHECK(loaded.stages()[i].format() == mixed[i]);
  CHECK(loaded.weight_bytes() == model.weight_bytes());
  for (const auto& prompt : testing::reference_prompts("tiny-opt")) {
    CHECK((all_logits(loaded, prompt.ids) - all_logits(model, prompt.ids)).cwiseAbs().maxCoeff() == 0.0f);
  }
  // Every stored matrix is the same, codes and scales.
  for (std::size_t i = 0; i < mixed.size(); ++i) {
    const auto saved = model.stages()[i].matrices();
    const auto back = loaded.stages()[i].matrices();
    REQUIRE(saved.size() == back.size());
    for (std::size_t m = 0; m < saved.size(); ++m) {
      CHECK(std::ranges::equal(saved[m].weight->data(), back[m].weight->data()));
      CHECK(std::ranges::equal(saved[m].weight->scales(), back[m].weight->scales()));
    }
  }
  // The file holds integer codes, not floats: well under the f32 model's size.
  CHECK(std::filesystem::file_size(dir / "q" / "model.safetensors") < model.weight_bytes() + 64 * 1024);
  CHECK(std::filesystem::exists(dir / "q" / "vocab.json"));
}

TEST_CASE("asymmetric int4 stores offsets and round-trips") {
  testing::ScratchDir dir;
  auto model = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
  const quant::QuantScheme asymmetric{.group_size = 32, .int4_asymmetric = true};
  model.quantize(std::vector<Format>{Format::int4, Format::int4, Format::int8, Format::int4}, asymmetric);
  model::save_quantized_checkpoint(dir.path(), model);
  const auto file = io::SafetensorsFile::open(dir / "model.safetensors");
  CHECK(file.tensor("model.decoder.layers.0.fc1.offsets").dtype == io::DType::f32);
  CHECK_FALSE(file.contains("model.decoder.layers.1.fc1.offsets"));  // int8 has none
  CHECK(file.tensor("model.decoder.layers.0.fc1.weight").dtype == io::DType::u8);
  CHECK(file.tensor("model.decoder.layers.0.fc1.weight").shape[1] == 64 / 2);
  const auto loaded = model::OptModel::load(dir.path());
  const std::vector<TokenId> ids = {2, 100, 7, 42};
  CHECK((all_logits(loaded, ids) - all_logits(model, ids)).cwiseAbs().maxCoeff() == 0.0f);
}

TEST_CASE("a node's checkpoint holds only its stages, and asking for another is a clear error") {
  testing::ScratchDir dir;
  const auto model = mixed_tiny_opt();
  const std::size_t mine[] = {4, 3, 0};
  model::save_quantized_checkpoint(dir.path(), model, mine);

  const auto checkpoint = model::OptCheckpoint::open(dir.path());
  CHECK(checkpoint.has_stage(0));
  CHECK_FALSE(checkpoint.has_stage(1));
  CHECK(checkpoint.has_stage(3));
  CHECK_FALSE(checkpoint.has_stage(9));
  const auto file = (dir / "model.safetensors").string();
  CHECK_THROWS_WITH_AS(checkpoint.load_stage(1),
                       (file + ": stage layer.0 (1) is not in this checkpoint, which holds embedding, layer.2, layer.3")
                           .c_str(),
                       Error);
  CHECK_THROWS_WITH_AS(checkpoint.load_stage(9),
                       (file + ": stage head (9) is not in this checkpoint, which holds embedding, layer.2, layer.3")
                           .c_str(),
                       Error);
  CHECK(model_load_error(dir.path()) ==
        file + ": stage layer.0 (1) is not in this checkpoint, which holds embedding, layer.2, layer.3");
  // No weights of other stages in the file.
  const auto tensors = io::SafetensorsFile::open(dir / "model.safetensors").tensor_names();
  CHECK(std::ranges::none_of(tensors, [](const std::string& name) {
    return name.starts_with("model.decoder.layers.0.") || name.starts_with("lm_head");
  }));

  // The stages it holds compute what the whole model's do.
  const auto prompt = testing::reference_prompts("tiny-opt").at(3);
  std::vector<model::StageState> states(10);
  model::StageInput message = prompt.ids;
  for (std::size_t i = 0; i < 5; ++i) message = model.stages()[i].run(message, states[i]);
  const auto expected = std::get<model::Matrix>(message);

  model::StageState s0, s1, s2, s3;
  model::StageInput local = prompt.ids;
  local = checkpoint.load_stage(0).run(local, s0);
  local = model.stages()[1].run(local, s1);
  local = model.stages()[2].run(local, s2);
  const auto layer2 = checkpoint.load_stage(3);
  const auto layer3 = checkpoint.load_stage(4);
  CHECK(layer2.format() == Format::f32);
  CHECK(layer3.format() == Format::int8);
  local = layer2.run(local, s3);
  model::StageState s4;
  local = layer3.run(local, s4);
  CHECK((std::get<model::Matrix>(local) - expected).cwiseAbs().maxCoeff() == 0.0f);
}

TEST_CASE("a tied f32 table is stored once; a head in its own format gets its own lm_head") {
  testing::ScratchDir dir;
  const auto f32 = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
  model::save_quantized_checkpoint(dir / "f32", f32);
  CHECK_FALSE(io::SafetensorsFile::open(dir / "f32" / "model.safetensors").contains("lm_head.weight"));
  const auto loaded = model::OptModel::load(dir / "f32");
  CHECK(std::get<model::Embedding>(loaded.stages().front().weights()).embed_tokens ==
        std::get<model::Head>(loaded.stages().back().weights()).lm_head);
  const auto prompt = testing::reference_prompts("tiny-opt-preln").at(0);
  CHECK((all_logits(loaded, prompt.ids) - all_logits(f32, prompt.ids)).cwiseAbs().maxCoeff() == 0.0f);

  auto head_int8 = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
  head_int8.quantize(std::vector<Format>{Format::f32, Format::f32, Format::f32, Format::int8}, scheme32);
  model::save_quantized_checkpoint(dir / "mixed", head_int8);
  const auto file = io::SafetensorsFile::open(dir / "mixed" / "model.safetensors");
  CHECK(file.tensor("lm_head.weight").dtype == io::DType::i8);
  CHECK(file.tensor("model.decoder.embed_tokens.weight").dtype == io::DType::f32);
  const auto back = model::OptModel::load(dir / "mixed");
  CHECK(back.stages().back().format() == Format::int8);
  CHECK((all_logits(back, prompt.ids) - all_logits(head_int8, prompt.ids)).cwiseAbs().maxCoeff() == 0.0f);

  // The head alone carries its table.
  const std::size_t head[] = {3};
  model::save_quantized_checkpoint(dir / "head", f32, head);
  const auto head_only = model::OptCheckpoint::open(dir / "head");
  CHECK(io::SafetensorsFile::open(dir / "head" / "model.safetensors").contains("lm_head.weight"));
  CHECK(head_only.load_stage(3).format() == Format::f32);
  edit_checkpoint(dir / "head", [](auto& tensors, auto&) {
    std::erase_if(tensors, [](auto& t) { return t.name == "lm_head.weight"; });
  });
  CHECK(open_error(dir / "head") == (dir / "head" / "model.safetensors").string() +
                                        ": tensor \"lm_head.weight\" is missing (__metadata__ lists stage head)");
}

TEST_CASE("saving refuses stages that do not fit one checkpoint") {
  testing::ScratchDir dir;
  auto model = model::OptModel::load(testing::model_dir("tiny-opt-preln"));
  model.stages()[1].quantize(Format::int8, scheme32);
  model.stages()[2].quantize(Format::int8, {.group_size = 64});
  CHECK_THROWS_WITH_AS(model::save_quantized_checkpoint(dir.path(), model),
                       (dir.path().string() +
                        ": layer.1.self_attn.q_proj has group size 64, but layer.0.self_attn.q_proj has group size 32: "
                        "a checkpoint holds one quantization scheme")
                           .c_str(),
                       Error);
  const std::size_t twice[] = {1, 1};
  CHECK_THROWS_WITH_AS(model::save_quantized_checkpoint(dir.path(), model, twice),
                       (dir.path().string() + ": stage layer.0 is given twice").c_str(), Error);
  const std::size_t missing[] = {7};
  CHECK_THROWS_WITH_AS(model::save_quantized_checkpoint(dir.path(), model, missing),
                       (dir.path().string() + ": stage 7 does not exist (the model has 4 stages)").c_str(), Error);
  const auto other = model::OptModel::load(testing::model_dir("tiny-opt"));
  const model::Stage* stages[] = {&other.stages()[5]};
  CHECK_THROWS_WITH_AS(model::save_quantized_checkpoint(dir.path(), model.config(), stages),
                       (dir.path().string() +
                        ": stage 5 (layer.4) is not a stage of the model config.json describes (embedding, layer.0 … "
                        "layer.1, head)")
                           .c_str(),
                       Error);
}

TEST_CASE("inconsistent quantized checkpoints are refused with the file, the tensor and what is wrong") {
  testing::ScratchDir dir;
  // doctest runs this body once per SUBCASE; quantizing once is enough.
  static const auto model = mixed_tiny_opt();
  const auto source = dir / "source";
  model::save_quantized_checkpoint(source, model);
  const auto file = [](const std::filesystem::path& d) { return (d / "model.safetensors").string(); };
  int copies = 0;
  auto broken = [&](const std::function<void(std::vector<Tensor>&, nlohmann::json&)>& edit) {
    const auto target = dir / fmt::format("broken{}", copies++);
    std::filesystem::create_directories(target);
    std::filesystem::copy_file(source / "config.json", target / "config.json");
    std::filesystem::copy_file(source / "model.safetensors", target / "model.safetensors");
    edit_checkpoint(target, edit);
    return target;
  };
  // Stage 1 (layer.0) is int4, stage 4 (layer.3) int8, stage 3 (layer.2) f32, stage 0 int8.
  const std::string fc1 = "model.decoder.layers.0.fc1";

  SUBCASE("scales of the wrong size") {
    const auto d = broken([&](auto& tensors, auto&) {
      auto& scales = find(tensors, fc1 + ".scales");
      scales.shape = {768, 5};
      scales.data.resize(768 * 5 * 4);
    });
    CHECK(open_error(d) == file(d) + ": tensor \"" + fc1 +
                               ".scales\" has shape [768, 5], expected [768, 6] (768 rows × 6 groups of 32)");
  }
  SUBCASE("scales missing") {
    const auto d = broken([&](auto& tensors, auto&) { std::erase_if(tensors, [&](auto& t) { return t.name == fc1 + ".scales"; }); });
    CHECK(open_error(d) == file(d) + ": tensor \"" + fc1 + ".scales\" is missing (int4 " + fc1 +
                               ".weight needs one float32 scale per group)");
  }
  SUBCASE("scales in another dtype") {
    const auto d = broken([&](auto& tensors, auto&) {
      auto& scales = find(tensors, fc1 + ".scales");
      scales.dtype = io::DType::f16;
      scales.data.resize(scales.data.size() / 2);
    });
    CHECK(open_error(d) == file(d) + ": tensor \"" + fc1 + ".scales\" has dtype F16, expected F32");
  }
  SUBCASE("codes of the wrong byte count") {
    const auto d = broken([&](auto& tensors, auto&) {
      auto& codes = find(tensors, fc1 + ".weight");
      codes.shape = {768, 192};
      codes.data.resize(768 * 192);
    });
    CHECK(open_error(d) == file(d) + ": tensor \"" + fc1 +
                               ".weight\" has shape [768, 192], expected [768, 96] for int4 weights [768 × 192] (two "
                               "codes per byte)");
  }
  SUBCASE("a format in the metadata that the tensors do not match") {
    const auto d = broken([&](auto&, auto& quantization) { quantization["stages"]["layer.3"] = "int4"; });
    CHECK(open_error(d) == file(d) +
                               ": tensor \"model.decoder.layers.3.self_attn.q_proj.weight\" has dtype I8 (int8), but "
                               "__metadata__ says stage layer.3 is int4");
  }
  SUBCASE("a weight in a dtype that stores no format") {
    const auto d = broken([&](auto& tensors, auto&) {
      auto& codes = find(tensors, "model.decoder.layers.2.fc2.weight");
      codes.dtype = io::DType::bf16;
      codes.data.resize(codes.data.size() / 2);
    });
    CHECK(open_error(d) == file(d) +
                               ": tensor \"model.decoder.layers.2.fc2.weight\" has dtype BF16, which stores no format "
                               "(F32 for f32, F16 for f16, I8 for int8, U8 for int4)");
  }
  SUBCASE("an unknown format") {
    const auto d = broken([&](auto&, auto& quantization) { quantization["stages"]["head"] = "int3"; });
    CHECK(open_error(d) == file(d) +
                               ": __metadata__ \"dilemma.quantization\": stage \"head\" has unknown format \"int3\" "
                               "(expected f32, f16, int8, int4 or mixed)");
  }
  SUBCASE("a group size that does not divide") {
    const auto d = broken([&](auto&, auto& quantization) { quantization["group_size"] = 64; });
    CHECK(open_error(d) == file(d) +
                               ": tensor \"model.decoder.embed_tokens.weight\": group size 64 does not divide its 96 "
                               "columns");
  }
  SUBCASE("a group size that is no multiple of 32") {
    const auto d = broken([&](auto&, auto& quantization) { quantization["group_size"] = 40; });
    CHECK(open_error(d) == file(d) +
                               ": __metadata__ \"dilemma.quantization\": group size 40 is not a positive multiple of 32");
  }
  SUBCASE("a group size that divides, but does not match the scales") {
    const auto d = broken([&](auto&, auto& quantization) { quantization["group_size"] = 96; });
    CHECK(open_error(d) == file(d) +
                               ": tensor \"model.decoder.embed_tokens.scales\" has shape [8264, 3], expected [8264, 1] "
                               "(8264 rows × 1 groups of 96)");
  }
  SUBCASE("offsets that a symmetric scheme does not have") {
    const auto d = broken([&](auto& tensors, auto&) {
      auto offsets = find(tensors, fc1 + ".scales");
      offsets.name = fc1 + ".offsets";
      tensors.push_back(offsets);
    });
    CHECK(open_error(d) == file(d) + ": unexpected tensor \"" + fc1 +
                               ".offsets\": not part of the stages __metadata__ lists (embedding, layer.0, layer.1, "
                               "layer.2, layer.3, layer.4, layer.5, layer.6, layer.7, head)");
  }
  SUBCASE("a head without its table, whose tied embedding is in another format") {
    const auto d = broken([&](auto& tensors, auto&) {
      std::erase_if(tensors, [](auto& t) { return t.name.starts_with("lm_head."); });
    });
    CHECK(open_error(d) == file(d) +
                               ": tensor \"model.decoder.embed_tokens.weight\" has dtype I8 (int8), but __metadata__ "
                               "says stage head is int4");
  }
  SUBCASE("a stage's tensor missing") {
    const auto d = broken([&](auto& tensors, auto&) {
      std::erase_if(tensors, [](auto& t) { return t.name == "model.decoder.layers.5.final_layer_norm.bias"; });
    });
    CHECK(open_error(d) == file(d) +
                               ": tensor \"model.decoder.layers.5.final_layer_norm.bias\" is missing (__metadata__ "
                               "lists stage layer.5)");
  }
  SUBCASE("a stage listed that the file does not hold") {
    const auto d = broken([&](auto& tensors, auto& quantization) {
      std::erase_if(tensors, [](auto& t) { return t.name.starts_with("model.decoder.layers.1."); });
      quantization["stages"]["layer.1"] = "int4";
    });
    CHECK(open_error(d) == file(d) +
                               ": tensor \"model.decoder.layers.1.self_attn.q_proj.bias\" is missing (__metadata__ "
                               "lists stage layer.1)");
  }
  SUBCASE("an unknown stage") {
    const auto d = broken([&](auto&, auto& quantization) { quantization["stages"]["layer.8"] = "int4"; });
    CHECK(open_error(d) == file(d) +
                               ": __metadata__ \"dilemma.quantization\": unknown stage \"layer.8\" (config.json "
                               "describes embedding, layer.0 … layer.7, head)");
  }
  SUBCASE("metadata that is not JSON, lacks a field, or comes from another version") {
    const auto missing = broken([&](auto&, auto& quantization) { quantization.erase("stages"); });
    CHECK(open_error(missing) == file(missing) + ": __metadata__ \"dilemma.quantization\": missing field \"stages\"");
    const auto version = broken([&](auto&, auto& quantization) { quantization["version"] = 2; });
    CHECK(open_error(version) == file(version) +
                                     ": __metadata__ \"dilemma.quantization\": version 2 is not supported (this "
                                     "library reads version 1)");
    const auto scalar = broken([&](auto&, auto& quantization) { quantization = 5; });
    CHECK(open_error(scalar) == file(scalar) + ": __metadata__ \"dilemma.quantization\": expected a JSON object, got number");
  }
  SUBCASE("a scale that is not a number, found when the stage is loaded") {
    const auto d = broken([&](auto& tensors, auto&) {
      auto& scales = find(tensors, fc1 + ".scales");
      const float nan = std::numeric_limits<float>::quiet_NaN();
      std::memcpy(scales.data.data() + 4 * 7, &nan, 4);
    });
    const auto checkpoint = model::OptCheckpoint::open(d);
    CHECK_THROWS_WITH_AS(checkpoint.load_stage(1),
                         (file(d) + ": tensor \"" + fc1 + ".weight\": scale of row 1 group 1 is nan, expected a finite "
                                                          "number ≥ 0")
                             .c_str(),
                         Error);
    CHECK(checkpoint.load_stage(2).format() == Format::f16);
  }
}

TEST_CASE("metadata that is not JSON at all") {
  testing::ScratchDir dir;
  const auto model = mixed_tiny_opt();
  model::save_quantized_checkpoint(dir.path(), model);
  auto [tensors, metadata] = read_checkpoint(dir.path());
  metadata["dilemma.quantization"] = "{\"version\": ";
  testing::write_tensors(dir / "model.safetensors", tensors, metadata);
  CHECK(open_error(dir.path()).starts_with((dir / "model.safetensors").string() +
                                           ": __metadata__ \"dilemma.quantization\" is not valid JSON: "));
}
