#pragma once
// Helpers shared by the test executables: where the bundled assets live and a
// scratch directory that is removed when the test case ends.

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace dilemma::testing {

// Sanitized builds run several times slower, so randomized tests draw fewer
// instances there; the release suite runs them all.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool sanitized_build = true;
#elif defined(__has_feature)
inline constexpr bool sanitized_build = __has_feature(address_sanitizer);
#else
inline constexpr bool sanitized_build = false;
#endif

inline constexpr int randomized_instances(int full) { return sanitized_build ? full / 3 : full; }

// Tests that spend their time in long CBC searches run in the release suite
// only: CBC is not instrumented, but its many small allocations go through
// ASan's allocator, which makes them 10–20× slower, and the code of ours they
// exercise is covered by the shorter tests. Use as `* doctest::skip(testing::cbc_search_heavy)`.
inline constexpr bool cbc_search_heavy = sanitized_build;

// Tests that run code the shorter tests already cover, only over much more
// data (the reference loss of 64 SQuAD paragraphs, a calibration of
// every stage of tiny-opt): tens of seconds each under the sanitizers, where they
// would find nothing the shorter ones do not. The release suite runs them.
// Use as `* doctest::skip(testing::long_run_of_covered_code)`.
inline constexpr bool long_run_of_covered_code = sanitized_build;

inline std::filesystem::path assets_dir() { return DILEMMA_ASSETS_DIR; }
inline std::filesystem::path model_dir(const std::string& name) { return assets_dir() / "models" / name; }
// The bundled tiny OPT model and SQuAD dev set, as command-line arguments.
inline std::string tiny_opt() { return model_dir("tiny-opt").string(); }
inline std::string squad_dev() { return (assets_dir() / "data/squad/dev-v1.1.json").string(); }

class ScratchDir {
 public:
  ScratchDir() {
    std::random_device seed;
    path_ = std::filesystem::temp_directory_path() /
            ("dilemma-test-" + std::to_string(seed()) + std::to_string(seed()));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace dilemma::testing
