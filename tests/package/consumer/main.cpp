// Compiled against the installed package only. Besides the library's own
// headers it calls into every dependency that has a binary or an include
// directory of its own, so that a broken link interface of dilemma::dilemma
// fails here rather than in a user's project.
#include <dilemma/dilemma.hpp>

#include <Cbc_C_Interface.h>
#include <utf8proc.h>

#include <Eigen/Core>
#include <fmt/format.h>
#include <iostream>
#include <nlohmann/json.hpp>

int main() {
  std::cout << "dilemma " << dilemma::version_string << '\n';
  std::cout << fmt::format("dependencies: Eigen {}.{}.{}, fmt {}, nlohmann_json {}.{}.{}, utf8proc {}, CBC {}\n",
                           EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION, FMT_VERSION,
                           NLOHMANN_JSON_VERSION_MAJOR, NLOHMANN_JSON_VERSION_MINOR, NLOHMANN_JSON_VERSION_PATCH,
                           utf8proc_version(), Cbc_getVersion());
  try {
    throw dilemma::Error(fmt::format("consumer check {}", 42));
  } catch (const dilemma::Error& error) {
    std::cout << "caught dilemma::Error: " << error.what() << '\n';
    return 0;
  }
}
