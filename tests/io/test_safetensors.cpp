#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "dilemma/io/safetensors.hpp"
#include "io_test_support.hpp"
#include "test_support.hpp"

using dilemma::io::DType;
using dilemma::io::SafetensorsFile;
using dilemma::io::TensorToWrite;
using dilemma::io::TensorView;
using dilemma::testing::ScratchDir;

namespace {

std::vector<float> to_f32(const TensorView& tensor) {
  std::vector<float> values(static_cast<std::size_t>(tensor.element_count()));
  dilemma::io::convert_to_f32(tensor.dtype, tensor.data, values);
  return values;
}

bool same_bytes(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

std::vector<std::int64_t> shape_of(const TensorView& tensor) { return {tensor.shape.begin(), tensor.shape.end()}; }

// The per-layer tensors of an OPT decoder layer, as listed in assets/models/README.md.
const char* const layer_tensor_suffixes[] = {
    "fc1.bias",
    "fc1.weight",
    "fc2.bias",
    "fc2.weight",
    "final_layer_norm.bias",
    "final_layer_norm.weight",
    "self_attn.k_proj.bias",
    "self_attn.k_proj.weight",
    "self_attn.out_proj.bias",
    "self_attn.out_proj.weight",
    "self_attn.q_proj.bias",
    "self_attn.q_proj.weight",
    "self_attn.v_proj.bias",
    "self_attn.v_proj.weight",
    "self_attn_layer_norm.bias",
    "self_attn_layer_norm.weight",
};

std::vector<std::string> expected_names(int layers, const std::vector<std::string>& top_level) {
  std::vector<std::string> names = top_level;
  for (int layer = 0; layer < layers; ++layer) {
    for (const char* suffix : layer_tensor_suffixes) {
      names.push_back("model.decoder.layers." + std::to_string(layer) + "." + suffix);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

struct ModelShape {
  int hidden;
  int ffn;
};

void check_layer_shapes(const SafetensorsFile& file, int layers, ModelShape model, DType dtype) {
  const std::int64_t hidden = model.hidden;
  const std::int64_t ffn = model.ffn;
  for (int layer = 0; layer < layers; ++layer) {
    const std::string prefix = "model.decoder.layers." + std::to_string(layer) + ".";
    for (const char* projection : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      CHECK(shape_of(file.tensor(prefix + "self_attn." + projection + ".weight")) ==
            std::vector<std::int64_t>{hidden, hidden});
      CHECK(shape_of(file.tensor(prefix + "self_attn." + projection + ".bias")) == std::vector<std::int64_t>{hidden});
    }
    CHECK(shape_of(file.tensor(prefix + "fc1.weight")) == std::vector<std::int64_t>{ffn, hidden});
    CHECK(shape_of(file.tensor(prefix + "fc1.bias")) == std::vector<std::int64_t>{ffn});
    CHECK(shape_of(file.tensor(prefix + "fc2.weight")) == std::vector<std::int64_t>{hidden, ffn});
    CHECK(shape_of(file.tensor(prefix + "final_layer_norm.weight")) == std::vector<std::int64_t>{hidden});
  }
  for (const std::string& name : file.tensor_names()) {
    const TensorView tensor = file.tensor(name);
    CHECK(tensor.dtype == dtype);
    CHECK(tensor.name == name);
    CHECK(tensor.data.size() == static_cast<std::size_t>(tensor.element_count()) * dilemma::io::dtype_size(dtype));
  }
}

}  // namespace

TEST_CASE("tiny-opt (F16, post-LN with projections) matches its README") {
  const SafetensorsFile file = SafetensorsFile::open(dilemma::testing::model_dir("tiny-opt") / "model.safetensors");
  CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "pt"}});
  CHECK(file.tensor_names() ==
        expected_names(8, {"model.decoder.embed_positions.weight", "model.decoder.embed_tokens.weight",
                           "model.decoder.project_in.weight", "model.decoder.project_out.weight"}));
  CHECK(shape_of(file.tensor("model.decoder.embed_tokens.weight")) == std::vector<std::int64_t>{8264, 96});
  CHECK(shape_of(file.tensor("model.decoder.embed_positions.weight")) == std::vector<std::int64_t>{258, 192});
  CHECK(shape_of(file.tensor("model.decoder.project_in.weight")) == std::vector<std::int64_t>{192, 96});
  CHECK(shape_of(file.tensor("model.decoder.project_out.weight")) == std::vector<std::int64_t>{96, 192});
  CHECK_FALSE(file.contains("lm_head.weight"));
  CHECK_FALSE(file.contains("model.decoder.final_layer_norm.weight"));
  check_layer_shapes(file, 8, {192, 768}, DType::f16);

  std::int64_t parameters = 0;
  for (const std::string& name : file.tensor_names()) parameters += file.tensor(name).element_count();
  CHECK(parameters == 4'438'656);

  // Expected values decoded from the file with Python's struct module ('<e').
  const std::vector<float> embed = to_f32(file.tensor("model.decoder.embed_tokens.weight"));
  CHECK(embed[0] == 0.1282958984375f);
  CHECK(embed[1] == 0.2239990234375f);
  CHECK(embed[2] == -0.0645751953125f);
  CHECK(embed[3] == -0.272705078125f);
  CHECK(embed.back() == -0.20654296875f);
  const std::vector<float> norm = to_f32(file.tensor("model.decoder.layers.0.self_attn_layer_norm.weight"));
  CHECK(norm[0] == 0.99169921875f);
  CHECK(norm[1] == 1.0263671875f);
  CHECK(norm[3] == 0.986328125f);
  CHECK(to_f32(file.tensor("model.decoder.layers.7.fc2.bias")).back() == -0.0153350830078125f);
}

TEST_CASE("tiny-opt-preln (F32) and tiny-opt-preln-bf16 (BF16) match their README") {
  const SafetensorsFile f32 =
      SafetensorsFile::open(dilemma::testing::model_dir("tiny-opt-preln") / "model.safetensors");
  const SafetensorsFile bf16 =
      SafetensorsFile::open(dilemma::testing::model_dir("tiny-opt-preln-bf16") / "model.safetensors");
  const std::vector<std::string> names =
      expected_names(2, {"model.decoder.embed_positions.weight", "model.decoder.embed_tokens.weight",
                         "model.decoder.final_layer_norm.bias", "model.decoder.final_layer_norm.weight"});
  CHECK(f32.tensor_names() == names);
  CHECK(bf16.tensor_names() == names);
  check_layer_shapes(f32, 2, {64, 256}, DType::f32);
  check_layer_shapes(bf16, 2, {64, 256}, DType::bf16);
  CHECK(shape_of(f32.tensor("model.decoder.embed_tokens.weight")) == std::vector<std::int64_t>{8264, 64});
  CHECK(shape_of(bf16.tensor("model.decoder.embed_positions.weight")) == std::vector<std::int64_t>{130, 64});

  // Expected values decoded with Python's struct module.
  const std::vector<float> norm32 = to_f32(f32.tensor("model.decoder.layers.0.self_attn_layer_norm.weight"));
  CHECK(norm32[0] == 0.8644734025001526f);
  CHECK(norm32[3] == 0.7706660628318787f);
  const std::vector<float> norm16 = to_f32(bf16.tensor("model.decoder.layers.0.self_attn_layer_norm.weight"));
  CHECK(norm16[0] == 0.86328125f);
  CHECK(norm16[1] == 0.87890625f);
  CHECK(norm16[2] == 0.9765625f);
  CHECK(norm16[3] == 0.76953125f);
  CHECK(to_f32(bf16.tensor("model.decoder.embed_tokens.weight"))[1] == -0.00018596649169921875f);

  // The README says the BF16 file holds the F32 weights rounded to nearest-even.
  std::size_t mismatches = 0;
  std::int64_t parameters = 0;
  for (const std::string& name : names) {
    const std::vector<float> exact = to_f32(f32.tensor(name));
    const std::vector<float> rounded = to_f32(bf16.tensor(name));
    REQUIRE(exact.size() == rounded.size());
    for (std::size_t i = 0; i < exact.size(); ++i) {
      std::uint32_t bits = std::bit_cast<std::uint32_t>(exact[i]);
      bits += 0x7fff + ((bits >> 16) & 1);
      if (std::bit_cast<float>(bits & 0xffff0000u) != rounded[i]) ++mismatches;
    }
    parameters += static_cast<std::int64_t>(exact.size());
  }
  CHECK(mismatches == 0);
  CHECK(parameters == 637'312);
}

TEST_CASE("write_safetensors reproduces a bundled file byte for byte") {
  const auto original_path = dilemma::testing::model_dir("tiny-opt-preln-bf16") / "model.safetensors";
  const SafetensorsFile original = SafetensorsFile::open(original_path);
  std::vector<TensorToWrite> tensors;
  for (const std::string& name : original.tensor_names()) {
    const TensorView view = original.tensor(name);
    tensors.push_back({name, view.dtype, shape_of(view), view.data});
  }
  const ScratchDir scratch;
  dilemma::io::write_safetensors(scratch / "copy.safetensors", tensors, original.metadata());
  CHECK(dilemma::testing::read_file(scratch / "copy.safetensors") == dilemma::testing::read_file(original_path));
}

TEST_CASE("write_safetensors round-trips every dtype, aligned, with metadata") {
  std::vector<std::vector<std::byte>> payloads;
  payloads.reserve(dilemma::io::detail::dtype_table.size());
  std::vector<TensorToWrite> tensors;
  const std::vector<std::int64_t> shape = {3, 2};
  for (const auto& info : dilemma::io::detail::dtype_table) {
    std::vector<std::byte> bytes(6 * info.size);
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i * 37 + info.size);
    payloads.push_back(std::move(bytes));
    tensors.push_back({"t." + std::string(info.name), info.dtype, shape, payloads.back()});
  }
  tensors.push_back({"scalar", DType::f32, {}, std::as_bytes(std::span(payloads[0]).first(4))});
  tensors.push_back({"empty", DType::i64, {0, 5}, {}});
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "ünïcode"}};

  const ScratchDir scratch;
  const auto path = scratch / "all.safetensors";
  dilemma::io::write_safetensors(path, tensors, metadata);
  const SafetensorsFile file = SafetensorsFile::open(path);
  CHECK(file.metadata() == metadata);
  CHECK(file.tensor_names().size() == tensors.size());
  for (const TensorToWrite& written : tensors) {
    CAPTURE(written.name);
    const TensorView read = file.tensor(written.name);
    CHECK(read.name == written.name);
    CHECK(read.dtype == written.dtype);
    CHECK(shape_of(read) == written.shape);
    CHECK(same_bytes(read.data, written.data));
    // Mappings are page-aligned, so the address shows the offset's alignment.
    CHECK(reinterpret_cast<std::uintptr_t>(read.data.data()) % dilemma::io::dtype_size(read.dtype) == 0);
  }
  CHECK(file.tensor("scalar").element_count() == 1);
  CHECK(file.tensor("empty").element_count() == 0);
  CHECK(file.tensor("empty").data.empty());

  const std::string bytes = dilemma::testing::read_file(path);
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), sizeof header_size);
  CHECK(header_size % 8 == 0);
  CHECK(bytes.substr(8, 16) == R"({"__metadata__":)");
}

TEST_CASE("write_safetensors without metadata writes no __metadata__ and allows no tensors") {
  const ScratchDir scratch;
  dilemma::io::write_safetensors(scratch / "none.safetensors", {});
  CHECK(dilemma::testing::read_file(scratch / "none.safetensors") == dilemma::testing::safetensors_bytes("{}      "));
  const SafetensorsFile file = SafetensorsFile::open(scratch / "none.safetensors");
  CHECK(file.metadata().empty());
  CHECK(file.tensor_names().empty());
}

TEST_CASE("write_safetensors rejects inconsistent tensors") {
  const ScratchDir scratch;
  const auto path = scratch / "bad.safetensors";
  const std::string prefix = path.string() + ": ";
  const std::vector<std::byte> bytes(8);

  const TensorToWrite short_data[] = {{"w", DType::f32, {2, 2}, bytes}};
  CHECK_THROWS_WITH_AS(
      dilemma::io::write_safetensors(path, short_data),
      (prefix + "cannot write tensor 'w': shape [2, 2] of F32 needs 16 bytes, but 8 were given").c_str(),
      dilemma::Error);
  const TensorToWrite negative[] = {{"w", DType::u8, {-8}, bytes}};
  CHECK_THROWS_WITH_AS(dilemma::io::write_safetensors(path, negative),
                       (prefix + "cannot write tensor 'w': invalid shape [-8]").c_str(), dilemma::Error);
  const TensorToWrite twice[] = {{"w", DType::u8, {8}, bytes}, {"w", DType::u8, {8}, bytes}};
  CHECK_THROWS_WITH_AS(dilemma::io::write_safetensors(path, twice), (prefix + "cannot write tensor 'w' twice").c_str(),
                       dilemma::Error);
  const TensorToWrite reserved[] = {{"__metadata__", DType::u8, {8}, bytes}};
  CHECK_THROWS_WITH_AS(dilemma::io::write_safetensors(path, reserved),
                       (prefix + "cannot write a tensor named '__metadata__', a name the format reserves").c_str(),
                       dilemma::Error);
  const TensorToWrite bad_utf8[] = {{"w\xff", DType::u8, {8}, bytes}};
  const auto write_bad_utf8 = [&] { dilemma::io::write_safetensors(path, bad_utf8); };
  CHECK_THROWS_WITH_AS(write_bad_utf8(), doctest::Contains((prefix + "cannot write header: ").c_str()), dilemma::Error);
  CHECK_THROWS_WITH_AS(dilemma::io::write_safetensors(scratch / "missing" / "x.safetensors", {}),
                       ((scratch / "missing" / "x.safetensors").string() + ": cannot create file").c_str(),
                       dilemma::Error);
}

TEST_CASE("SafetensorsFile names the file and the tensor when a tensor is absent") {
  const auto path = dilemma::testing::model_dir("tiny-opt-preln") / "model.safetensors";
  const SafetensorsFile file = SafetensorsFile::open(path);
  CHECK_THROWS_WITH_AS(file.tensor("lm_head.weight"), (path.string() + ": no tensor named 'lm_head.weight'").c_str(),
                       dilemma::Error);
}

TEST_CASE("views stay valid after the SafetensorsFile is moved") {
  SafetensorsFile file = SafetensorsFile::open(dilemma::testing::model_dir("tiny-opt-preln") / "model.safetensors");
  const TensorView before = file.tensor("model.decoder.final_layer_norm.bias");
  const SafetensorsFile moved = std::move(file);
  const TensorView after = moved.tensor("model.decoder.final_layer_norm.bias");
  CHECK(before.data.data() == after.data.data());
  CHECK(before.name.data() == after.name.data());
  CHECK(before.shape.data() == after.shape.data());
}
