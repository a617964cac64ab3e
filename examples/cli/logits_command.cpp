#include <memory>

#include <fmt/format.h>

#include "commands.hpp"
#include "model_options.hpp"
#include "dilemma/io/npy.hpp"
#include "dilemma/model/opt_model.hpp"

namespace dilemma::cli {

void add_logits_command(CLI::App& app) {
  struct Options {
    ModelOptions model;
    std::string ids;
    std::string out;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand(
      "logits", "Run one forward pass over token ids and save the logits at every position as float32 .npy");
  add_model_options(*command, options->model);
  command->add_option("--ids", options->ids, "Comma-separated token ids, e.g. 2,100,7")->required();
  command->add_option("--out", options->out, "Output .npy file, shape [tokens, vocab_size]")->required();
  command->callback([options] {
    const auto ids = parse_id_list(options->ids, "--ids");
    const auto loaded = load_model(options->model);
    auto session = loaded.model.new_session();
    const auto logits = loaded.model.forward(ids, session, model::Logits::all, loaded.run_context());
    const std::int64_t shape[] = {logits.rows(), logits.cols()};
    io::write_npy<float>(options->out, shape, std::span<const float>(logits.data(), static_cast<std::size_t>(logits.size())));
    fmt::print(stderr, "wrote {} [{} x {}] float32\n", options->out, shape[0], shape[1]);
  });
}

}  // namespace dilemma::cli
